"""The command line: one-line errors, no overwrites, complete outputs."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from _cli_run import run_cli
from _mageck_format import read_gene_summary, read_sgrna_summary

import screenformula as sf
from screenformula.cli import main


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    """A small simulated screen written as a MAGeCK count table."""
    data, _ = sf.simulate_screen(n_genes=15, n_sgrnas_per_gene=3, random_seed=8)
    frame = data.counts_frame()
    frame.columns = ["sgRNA", "Gene", "P0", "C1", "C2", "C3", "T1", "T2", "T3"]
    path = tmp_path_factory.mktemp("cli") / "counts.txt"
    frame.to_csv(path, sep="\t", index=False)
    return path


def one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("screenformula: error: ")
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_missing_file(tmp_path):
    result = run_cli("test", "-k", "nope.txt", "-t", "T1", "-c", "C1", "-n", "out", cwd=tmp_path)
    one_line_error(result, "nope.txt")
    assert not list(tmp_path.iterdir())


def test_unknown_sample_name(table, tmp_path):
    result = run_cli("test", "-k", str(table), "-t", "T9", "-c", "C1", "-n", "out", cwd=tmp_path)
    one_line_error(result, "'T9'", "no such sample")


def test_negative_count_names_line_and_column(table, tmp_path):
    bad = tmp_path / "bad.txt"
    lines = table.read_text().splitlines()
    fields = lines[4].split("\t")
    fields[5] = "-3"
    lines[4] = "\t".join(fields)
    bad.write_text("\n".join(lines) + "\n")
    result = run_cli("test", "-k", str(bad), "-t", "T1", "-c", "C1", "-n", "out", cwd=tmp_path)
    one_line_error(result, "bad.txt line 5", "'C3'", "negative")


def test_empty_table(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("sgRNA\tGene\tC1\tT1\n")
    result = run_cli("test", "-k", str(empty), "-t", "T1", "-c", "C1", "-n", "out", cwd=tmp_path)
    one_line_error(result, "empty")


def test_existing_outputs_are_kept_without_force(table, tmp_path):
    keep = tmp_path / "out.gene_summary.txt"
    keep.write_text("my precious results\n")
    code = main(["test", "-k", str(table), "-t", "T1", "-c", "C1", "-n", str(tmp_path / "out")])
    assert code == 2
    assert keep.read_text() == "my precious results\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.gene_summary.txt"]


def test_indices_resolve_like_mageck(table):
    from screenformula.cli.mageck_test import resolve_samples

    columns = ["P0", "C1", "C2", "C3", "T1", "T2", "T3"]
    assert resolve_samples("4,5,T3", columns, "-t") == ["T1", "T2", "T3"]
    with pytest.raises(sf.ScreenDataError, match="no such sample"):
        resolve_samples("7", columns, "-t")


def test_config_errors_name_the_setting(tmp_path):
    config = tmp_path / "analysis.yaml"
    config.write_text("counts: counts.txt\nformula: 'count ~ 1'\nfit: {draws: -5}\n")
    code = main(["fit", str(config)])
    assert code == 2
    config.write_text("counts: counts.txt\nformula: 'count ~ 1'\ncolour: blue\n")
    result = run_cli("fit", str(config), cwd=tmp_path)
    one_line_error(result, "analysis.yaml", "colour")


@pytest.mark.slow
def test_full_run_then_contrast_and_plot_from_the_saved_fit(table, tmp_path):
    prefix = tmp_path / "screen"
    result = run_cli(
        "test",
        "-k",
        str(table),
        "-t",
        "T1,T2,T3",
        "-c",
        "C1,C2,C3",
        "--pool",
        "P0",
        "-n",
        str(prefix),
        "--draws",
        "100",
        "--tune",
        "150",
        "--chains",
        "2",
        "--seed",
        "1",
        "--replicate-scale",
        "condition",
        "--quiet",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "screen.log").read_text())["replicate_scale"] == "condition"
    scaled = sf.load_fit(tmp_path / "screen.fit.nc").model.spec.replicate_scale.groups
    assert [g.names for g in scaled] == [("T1", "T2", "T3")]
    names = {p.name for p in tmp_path.iterdir()}
    for suffix in (
        ".gene_summary.txt",
        ".sgrna_summary.txt",
        ".genes.tsv",
        ".fit.nc",
        ".volcano.png",
        ".rank.png",
        ".log",
    ):
        assert "screen" + suffix in names
    assert not any(n.startswith(".screenformula-") for n in names)  # no staging left behind
    genes = read_gene_summary(tmp_path / "screen.gene_summary.txt")
    assert len(genes) == 15
    guides = read_sgrna_summary(tmp_path / "screen.sgrna_summary.txt")
    assert len(guides) == 45
    ours = pd.read_csv(tmp_path / "screen.genes.tsv", sep="\t")
    assert {"gene", "lfc", "lfsr", "qvalue", "hit"} <= set(ours.columns)
    # a rerun refuses to overwrite; --force replaces
    again = run_cli(
        "test", "-k", str(table), "-t", "T1", "-c", "C1", "-n", str(prefix), cwd=tmp_path
    )
    one_line_error(again, "output exists", "--force")
    # --force replaces every output (a short refit)
    before = (tmp_path / "screen.genes.tsv").read_text()
    forced = run_cli(
        "test",
        "-k",
        str(table),
        "-t",
        "T1,T2,T3",
        "-c",
        "C1,C2,C3",
        "--pool",  # the first run's model: its compiled parts are reused
        "P0",
        "-n",
        str(prefix),
        "--draws",
        "30",
        "--tune",
        "30",
        "--chains",
        "1",
        "--seed",
        "2",
        "--force",
        "--quiet",
        cwd=tmp_path,
    )
    assert forced.returncode == 0, forced.stderr
    # 1 chain x 30 draws cannot pass the checks: said on stderr even with --quiet (issue 16)
    assert "screenformula: WARNING: this posterior cannot be trusted yet" in forced.stderr
    assert "--draws 2000 --tune 2000" in forced.stderr and "--chains 4" in forced.stderr
    assert (tmp_path / "screen.genes.tsv").read_text() != before
    assert json.loads((tmp_path / "screen.log").read_text())["options"]["draws"] == 30
    # contrast and plot from the saved fit, without refitting, each in a subprocess
    fit_file = str(prefix) + ".fit.nc"
    done = run_cli(
        "contrast", fit_file, "-n", str(tmp_path / "again"), "--mageck", "--quiet", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    redo = pd.read_csv(tmp_path / "again.genes.tsv", sep="\t")
    assert len(redo) == 15 and {"lfc", "qvalue"} <= set(redo.columns)
    assert len(read_gene_summary(tmp_path / "again.gene_summary.txt")) == 15
    refused = run_cli("contrast", fit_file, "-n", str(tmp_path / "again"), cwd=tmp_path)
    one_line_error(refused, "output exists")
    again = run_cli(
        "contrast", fit_file, "-n", str(tmp_path / "again"), "--force", "--quiet", cwd=tmp_path
    )
    assert again.returncode == 0, again.stderr
    plot = run_cli(
        "plot", fit_file, "--kind", "forest", "-o", str(tmp_path / "f.png"), "--quiet", cwd=tmp_path
    )
    assert plot.returncode == 0, plot.stderr
    assert (tmp_path / "f.png").stat().st_size > 1000
    bad_level = run_cli(
        "contrast", fit_file, "--ref", "placebo", "-n", str(tmp_path / "x"), cwd=tmp_path
    )
    one_line_error(bad_level, "placebo")
    missing = run_cli(
        "plot", str(tmp_path / "nope.nc"), "-o", str(tmp_path / "g.png"), cwd=tmp_path
    )
    one_line_error(missing, "nope.nc")


@pytest.mark.slow
def test_fit_from_config(table, tmp_path):
    sheet = tmp_path / "samples.tsv"
    pd.DataFrame(
        {
            "sample": ["P0", "C1", "C2", "C3", "T1", "T2", "T3"],
            "condition": ["plasmid", "ctrl", "ctrl", "ctrl", "drug", "drug", "drug"],
            "treatment": ["none", "control", "control", "control", "drug", "drug", "drug"],
            "pool": [True, False, False, False, False, False, False],
        }
    ).to_csv(sheet, sep="\t", index=False)
    config = tmp_path / "analysis.yaml"
    config.write_text(
        f"counts: {table}\nsamples: samples.tsv\n"
        "formula: 'count ~ 1 + treatment + (1 + treatment | gene) + (1 | gene:sgrna)'\n"
        "dispersion: shared\npool: joint\nreplicate_scale: condition\n"
        "priors: {b: {name: Normal, args: {mu: 0, sigma: 1}}}\n"
        "fit: {draws: 100, tune: 150, chains: 2, seed: 3}\n"
        "contrasts: [{factor: treatment, ref: control, delta: 0.2}]\noutput: out\n"
    )
    done = run_cli("fit", str(config), "--quiet", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "cannot be trusted" in done.stderr and re.search(r"fit: \{draws: \d+", done.stderr)
    out = tmp_path / "out"
    assert {p.name for p in out.iterdir()} >= {
        "fit.nc",
        "log.json",
        "treatment_vs_control.genes.tsv",
        "treatment_vs_control.volcano.png",
    }
    fit = sf.load_fit(out / "fit.nc")
    assert fit.model.spec.pool.mode == "joint"
    assert fit.model.spec.prior("b_treatment[drug]") == sf.Prior("Normal", mu=0, sigma=1)
    # the saved fit rebuilds the replicate scales of the config: one per drug replicate
    (group,) = fit.model.spec.replicate_scale.groups
    assert group.names == ("T1", "T2", "T3")
    assert list(fit.posterior["replicate_scale"]["replicate"].values) == ["T1", "T2", "T3"]


@pytest.fixture(scope="module")
def two_lines(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    """Two treated groups (cell lines) against one plasmid, as a MAGeCK count table."""
    data, truth = sf.simulate_screen(
        n_genes=12,
        n_sgrnas_per_gene=3,
        treatments=("A", "B"),
        n_replicates=2,
        n_pool_samples=0,
        frac_hits=0.25,
        hit_direction="negative",
        random_seed=4,
    )
    frame = data.counts_frame()
    path = tmp_path_factory.mktemp("lines") / "counts.txt"
    frame.to_csv(path, sep="\t", index=False)
    return path, truth.lfc_table()


def test_several_named_groups_fit_jacks_design_with_outputs_per_group(two_lines, tmp_path):
    table, _ = two_lines
    columns = pd.read_csv(table, sep="\t", nrows=0).columns[2:]
    controls = ",".join(c for c in columns if c.startswith("control"))
    a = ",".join(c for c in columns if c.startswith("A"))
    b = ",".join(c for c in columns if c.startswith("B"))
    prefix = tmp_path / "lines"
    common = ["-k", str(table), "-c", controls, "-n", str(prefix)]
    fast = ["--draws", "100", "--tune", "150", "--chains", "2", "--seed", "1", "--quiet"]
    result = run_cli("test", *common, "-t", f"A={a}", "-t", f"B={b}", *fast, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    names = {p.name for p in tmp_path.iterdir()}
    for group in ("A", "B"):
        for kind in ("gene", "sgrna"):
            assert f"lines.{group}_vs_control.{kind}_summary.txt" in names
        genes = read_gene_summary(tmp_path / f"lines.{group}_vs_control.gene_summary.txt")
        assert len(genes) == 12
    assert "lines.gene_summary.txt" not in names
    ours = pd.read_csv(tmp_path / "lines.genes.tsv", sep="\t")
    assert sorted(ours["contrast"].unique()) == ["A vs control", "B vs control"]
    log = json.loads((tmp_path / "lines.log").read_text())
    assert log["formula"].endswith("(1 + treated | gene:sgrna)")
    assert log["treatment"] == {"A": a.split(","), "B": b.split(",")}
    fit = sf.load_fit(str(prefix) + ".fit.nc")
    assert "(1 + treated | gene:sgrna)" in repr(fit.model)  # the saved model rebuilds
    # one -t keeps MAGeCK's single comparison and the seed's formula
    single = run_cli(
        "test",
        "-k",
        str(table),
        "-c",
        controls,
        "-t",
        a,
        "-n",
        str(tmp_path / "one"),
        *fast,
        cwd=tmp_path,
    )
    assert single.returncode == 0, single.stderr
    assert (tmp_path / "one.gene_summary.txt").exists()
    assert (
        "(1 + treatment | gene:sgrna)" in json.loads((tmp_path / "one.log").read_text())["formula"]
    )


def test_several_groups_refuse_unnamed_reserved_or_repeated(two_lines, tmp_path):
    table, _ = two_lines
    base = ["test", "-k", str(table), "-c", "control_1", "-n", "out"]
    unnamed = run_cli(*base, "-t", "A_1", "-t", "B=B_1", cwd=tmp_path)
    one_line_error(unnamed, "'A_1'", "NAME=IDS")
    reserved = run_cli(*base, "-t", "control=A_1", "-t", "B=B_1", cwd=tmp_path)
    one_line_error(reserved, "'control'", "reserved")
    repeated = run_cli(*base, "-t", "A=A_1", "-t", "A=B_1", cwd=tmp_path)
    one_line_error(repeated, "'A'", "twice")
    shared = run_cli(*base, "-t", "A=A_1", "-t", "B=A_1,B_1", cwd=tmp_path)
    one_line_error(shared, "'A_1'", "twice")
    assert not (tmp_path / "out.log").exists()
