"""``screenformula test`` on libraries of genome-wide size, and work kept when a step fails."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from _cli_run import run_cli
from _mageck_format import SGRNA_HEADER, read_gene_summary, read_sgrna_summary

import screenformula as sf
from screenformula import plotting
from screenformula.cli import main
from screenformula.cli.mageck_test import SUFFIXES

SAMPLES = ("-t", "T1,T2,T3", "-c", "C1,C2,C3", "--pool", "P0")


def write_table(path: Path, n_genes: int, seed: int) -> tuple[Path, int]:
    data, _ = sf.simulate_screen(n_genes=n_genes, random_seed=seed)
    frame = data.counts_frame()
    frame.columns = ["sgRNA", "Gene", "P0", "C1", "C2", "C3", "T1", "T2", "T3"]
    frame.to_csv(path, sep="\t", index=False)
    return path, len(frame)


def check_outputs(prefix: Path, n_guides: int, n_genes: int) -> dict:
    for suffix in SUFFIXES:
        assert prefix.with_name(prefix.name + suffix).exists(), suffix
    guides = read_sgrna_summary(prefix.with_name(prefix.name + ".sgrna_summary.txt"))
    assert len(guides) == n_guides
    assert len({g["sgrna"] for g in guides}) == n_guides
    assert list(guides[0])[: len(SGRNA_HEADER)] == SGRNA_HEADER
    genes = read_gene_summary(prefix.with_name(prefix.name + ".gene_summary.txt"))
    assert len(genes) == n_genes
    assert all(g["neg|goodsgrna"] is not None for g in genes)
    return json.loads(prefix.with_name(prefix.name + ".log").read_text())


@pytest.mark.slow
def test_genome_wide_library_with_the_approximate_method(tmp_path):
    table, n_guides = write_table(tmp_path / "counts.txt", 20_000, seed=3)
    result = run_cli(
        "test", "-k", str(table), *SAMPLES, "--method", "approx", "--draws", "300",
        "--max-iterations", "50", "-n", "gw", cwd=tmp_path, timeout=1200,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    log = check_outputs(tmp_path / "gw", n_guides, 20_000)
    assert log["options"]["store_sgrna"] is False
    assert log["options"]["advi"]["iterations"] <= 50
    assert any("guide-level draws not kept (auto: no" in line for line in log["storage"])
    assert "guide-level draws not kept" in result.stdout


@pytest.mark.slow
def test_hundreds_of_genes_with_nuts_and_no_guide_draws(tmp_path):
    # 250 genes: sampling, not the checks, made 1,000 genes cost minutes in CI
    table, n_guides = write_table(tmp_path / "counts.txt", 250, seed=4)
    result = run_cli(
        "test", "-k", str(table), *SAMPLES, "--draws", "20", "--tune", "30", "--chains", "2",
        "--keep-guide-draws", "no", "--seed", "2", "-n", "k1", cwd=tmp_path, timeout=1200,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    log = check_outputs(tmp_path / "k1", n_guides, 250)
    assert log["options"]["store_sgrna"] is False and log["method"] == "nuts"


def test_max_iterations_is_for_the_approximate_method(tmp_path):
    result = run_cli(
        "test", "-k", "x.txt", *SAMPLES, "--max-iterations", "5", "-n", "o", cwd=tmp_path
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "screenformula: error: --max-iterations does not apply to --method auto"
    )


@pytest.mark.slow
def test_a_failure_after_the_fit_keeps_the_fit(tmp_path, monkeypatch, capsys):
    table, n_guides = write_table(tmp_path / "counts.txt", 12, seed=5)
    prefix = tmp_path / "out"

    def broken(*args, **kwargs):
        raise RuntimeError("the plotting library broke")

    monkeypatch.setattr(plotting, "rank_plot", broken)
    args = ["test", "-k", str(table), *SAMPLES, "--draws", "50", "--tune", "50", "--chains", "2"]
    status = main([*args, "--seed", "1", "--quiet", "-n", str(prefix)])
    err = capsys.readouterr().err
    assert status == 1
    assert "internal error: RuntimeError: the plotting library broke" in err
    fit_path = prefix.with_name("out.fit.nc")
    assert f"{fit_path} is kept; finish with: screenformula contrast {fit_path}" in err
    assert fit_path.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("out")] == ["out.fit.nc"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".screenformula-")]

    # the hint's command finishes the job from the kept fit
    hint = shlex.split(err.split("finish with: ", 1)[1].strip())
    assert hint[:3] == ["screenformula", "contrast", str(fit_path)]
    monkeypatch.undo()
    assert main([*hint[1:], "--quiet"]) == 0
    guides = read_sgrna_summary(prefix.with_name("out.sgrna_summary.txt"))
    assert len(guides) == n_guides
    assert len(read_gene_summary(prefix.with_name("out.gene_summary.txt"))) == 12
    assert prefix.with_name("out.genes.tsv").exists()
