"""Errors that used to leave a command-line user stuck (issue 16).

Each is one line on stderr with exit status 2, names the file, row, column or sample, and
its advice is a flag of the command (or a key of the config), never Python. No test here
samples: a fit that must not start is replaced by one that fails the test if called.
"""

from __future__ import annotations

import errno
import gzip
import os
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from _paths import ROOT

import screenformula as sf
from screenformula.cli import main

SAMPLES = ["P0", "C1", "C2", "C3", "T1", "T2", "T3"]
ROLES = ["-t", "T1,T2,T3", "-c", "C1,C2,C3", "--pool", "P0"]
SAVED_FIT = ROOT / "tests" / "data" / "fit_format1_ed30f57.nc"


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    """A small simulated screen in MAGeCK layout."""
    data, _ = sf.simulate_screen(n_genes=10, n_sgrnas_per_gene=3, random_seed=8)
    table = data.counts_frame()
    table.columns = ["sgRNA", "Gene", *SAMPLES]
    return table


@pytest.fixture(autouse=True)
def no_fitting(monkeypatch):
    """Any fit started by these tests is a failure of the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("a fit started")

    monkeypatch.setattr(sf.ScreenModel, "fit", refuse)


def write_table(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, sep="\t", index=False)
    return path


def error_line(capsys, code: int, *fragments: str) -> str:
    """The one line on stderr of a run that ended with status 2, holding ``fragments``."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("screenformula: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def write_config(tmp_path: Path, frame: pd.DataFrame, extra: str = "") -> Path:
    """A fit config on ``frame`` (sheet: condition, treatment, pool), ``extra`` appended."""
    write_table(frame, tmp_path / "counts.tsv")
    pd.DataFrame(
        {
            "sample": SAMPLES,
            "condition": ["plasmid", *["control"] * 3, *["drug"] * 3],
            "treatment": [*["control"] * 4, *["drug"] * 3],
            "pool": [True, *[False] * 6],
        }
    ).to_csv(tmp_path / "samples.tsv", sep="\t", index=False)
    config = tmp_path / "analysis.yaml"
    config.write_text(
        "counts: counts.tsv\nsamples: samples.tsv\n"
        "formula: 'count ~ 1 + treatment + (1 + treatment | gene)'\n"
        "fit: {draws: 10, tune: 10, chains: 1}\noutput: out\n" + extra
    )
    return config


# --------------------------------------------------- a sample without reads, a NaN cell
@pytest.mark.parametrize("norm", ["median", "total", "none"])
def test_a_sample_without_reads_is_named_with_its_flag(frame, tmp_path, capsys, norm):
    table = write_table(frame.assign(C2=0), tmp_path / "zero.txt")
    code = main(["test", "-k", str(table), *ROLES, "--norm-method", norm, "-n", "x"])
    line = error_line(capsys, code, "zero.txt: sample 'C2' has no reads")
    assert line.endswith("leave it out of -c/--control-id")
    assert "size_factors" not in line


def test_a_sample_without_reads_in_a_fit_config(frame, tmp_path, capsys):
    config = write_config(tmp_path, frame.assign(T1=0), "size_factors: total\n")
    line = error_line(capsys, main(["fit", str(config)]), "sample 'T1' has no reads")
    assert line.endswith("remove 'T1' from the count table and the sample sheet")


def test_median_advice_is_a_flag(frame, tmp_path, capsys):
    zeros = frame.copy()
    zeros.loc[:, "C1"] = zeros["C1"].where(zeros.index % 2 == 0, 0)
    zeros.loc[:, "C2"] = zeros["C2"].where(zeros.index % 2 == 1, 0)
    table = write_table(zeros, tmp_path / "z.txt")
    code = main(["test", "-k", str(table), *ROLES, "-n", "x"])
    line = error_line(capsys, code, "every sgRNA has a zero count in some sample")
    assert line.endswith("(use --norm-method total)")


def test_control_normalisation_without_controls_names_the_flags(frame, tmp_path, capsys):
    table = write_table(frame, tmp_path / "c.txt")
    code = main(["test", "-k", str(table), *ROLES, "--norm-method", "control", "-n", "x"])
    error_line(capsys, code, "give --control-sgrna FILE or --control-gene FILE")


def test_a_missing_count_advises_the_nan_flag_which_exists(frame, tmp_path, capsys):
    holes = frame.astype(object)
    holes.loc[3, "T1"] = ""
    table = write_table(holes, tmp_path / "nan.txt")
    code = main(["test", "-k", str(table), *ROLES, "-n", str(tmp_path / "x")])
    error_line(capsys, code, "nan.txt line 5, column 'T1'", "(use --nan drop to drop such")
    # --nan drop reads on: the guide is dropped, said on the console, and the fit starts
    code = main(["test", "-k", str(table), *ROLES, "--nan", "drop", "-n", str(tmp_path / "x")])
    captured = capsys.readouterr()
    assert code == 1 and "a fit started" in captured.err
    assert "dropped: 1 sgRNAs with a missing count (listed in" in captured.out
    assert ".dropped" not in captured.out
    # and in a fit config
    config = write_config(tmp_path, holes)
    error_line(capsys, main(["fit", str(config)]), "(use nan: drop in the config")
    config.write_text(config.read_text() + "nan: drop\n")
    assert main(["fit", str(config), "--check"]) == 0
    assert "dropped: 1 sgRNAs" in capsys.readouterr().out


# ------------------------------------------------------------------ a count of 2^31
def test_a_count_of_two_to_the_31_is_rejected_before_the_fit(frame, tmp_path, capsys):
    big = frame.copy()
    big.loc[5, "T2"] = 2**31
    table = write_table(big, tmp_path / "big.txt")
    code = main(["test", "-k", str(table), *ROLES, "-n", "x"])
    error_line(capsys, code, "big.txt line 7, column 'T2': count 2147483648 is too large")


# ------------------------------------------------- a fit config checked before the fit
def test_a_bad_contrast_level_is_found_before_fitting(frame, tmp_path, capsys):
    config = write_config(tmp_path, frame, "contrasts: [{factor: treatment, ref: placebo}]\n")
    code = main(["fit", str(config)])
    error_line(capsys, code, "analysis.yaml: contrasts.0: ref='placebo' is not a level")
    assert not (tmp_path / "out").exists()


def test_other_contrast_mistakes_are_found_before_fitting(frame, tmp_path, capsys):
    config = write_config(tmp_path, frame, "contrasts: [{factor: dose}]\n")
    error_line(capsys, main(["fit", str(config)]), "contrasts.0: the formula has no coefficient")
    config = write_config(tmp_path, frame, "contrasts: [{factor: treatment, a: drug, b: ctrl}]\n")
    error_line(capsys, main(["fit", str(config)]), "b='ctrl' is not a level of 'treatment'")
    config = write_config(
        tmp_path, frame, "contrasts: [{ref: control, name: x}, {ref: control, name: x}]\n"
    )
    error_line(capsys, main(["fit", str(config)]), "contrasts.1: its outputs would be named 'x'")
    config = write_config(tmp_path, frame, "contrasts: [{ref: control, name: ../x}]\n")
    error_line(capsys, main(["fit", str(config)]), "'../x' cannot name output files")
    config = write_config(tmp_path, frame, "contrasts: [{ref: control, call_rule: lfdr}]\n")
    error_line(capsys, main(["fit", str(config)]), "contrasts.0.call_rule", "'local' or 'qvalue'")
    config = write_config(tmp_path, frame, "contrasts: [{ref: control, call_rule: qvalue}]\n")
    assert main(["fit", str(config), "--check"]) == 0
    # the default contrast (treatment) on a formula without it says how to choose one
    config = write_config(tmp_path, frame)
    config.write_text(config.read_text().replace("treatment", "condition"))
    line = error_line(capsys, main(["fit", str(config)]), "the default contrast")
    assert line.endswith("set contrasts: in the config")
    assert not (tmp_path / "out").exists()


def test_a_bad_formula_names_the_config(frame, tmp_path, capsys):
    config = write_config(tmp_path, frame)
    config.write_text(config.read_text().replace("(1 + treatment | gene)", "(1 | dose)"))
    error_line(capsys, main(["fit", str(config), "--check"]), "analysis.yaml: unknown variable")


def test_the_fit_is_kept_when_writing_a_contrast_fails(tmp_path, capsys, monkeypatch):
    from screenformula import plotting

    saved = sf.load_fit(SAVED_FIT)
    data = saved.model.data
    write_table(data.counts_frame(), tmp_path / "counts.tsv")
    data.samples.reset_index().to_csv(tmp_path / "samples.tsv", sep="\t", index=False)
    config = tmp_path / "analysis.yaml"
    config.write_text(
        f"counts: counts.tsv\nsamples: samples.tsv\nformula: '{saved.model.settings.formula}'\n"
        "dispersion: sgrna\npool: joint\ncontrasts: [{factor: treatment, ref: control}]\n"
        "output: results/run1\n"
    )
    monkeypatch.setattr(sf.ScreenModel, "fit", lambda self, *a, **k: saved)

    def broken(*args, **kwargs):
        raise RuntimeError("the plotting library broke")

    monkeypatch.setattr(plotting, "volcano_plot", broken)
    code = main(["fit", str(config), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and "the plotting library broke" in err
    kept = tmp_path / "results" / "run1" / "fit.nc"
    assert f"{kept} is kept; finish with: screenformula contrast {kept}" in err
    assert [p.name for p in kept.parent.iterdir()] == ["fit.nc"]
    assert len(sf.load_fit(kept).model.data.gene_names) == 6


def test_several_groups_name_the_kept_fit_in_the_finish_hint(tmp_path, capsys, monkeypatch):
    # with several -t groups the outputs list grows by a MAGeCK pair per group: the hint
    # must still name the fit file, not whatever sits at its old place in that list
    from screenformula import plotting

    saved = sf.load_fit(SAVED_FIT)
    table = write_table(saved.model.data.counts_frame(), tmp_path / "counts.tsv")
    monkeypatch.setattr(sf.ScreenModel, "fit", lambda self, *a, **k: saved)

    def broken(*args, **kwargs):
        raise RuntimeError("the plotting library broke")

    monkeypatch.setattr(plotting, "volcano_plot", broken)
    prefix = tmp_path / "lines"
    code = main(
        ["test", "-k", str(table), "-t", "A=treated_1", "-t", "B=treated_2,treated_3"]
        + ["-c", "control_1,control_2,control_3", "-n", str(prefix), "--quiet"]
    )
    err = capsys.readouterr().err
    assert code == 1 and "the plotting library broke" in err
    kept = tmp_path / "lines.fit.nc"
    assert f"{kept} is kept; finish with: screenformula contrast {kept}" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counts.tsv", "lines.fit.nc"]


# ------------------------------------------------- user errors that were "internal"
def test_a_read_only_output_folder(frame, tmp_path, capsys, monkeypatch):
    table = write_table(frame, tmp_path / "c.txt")

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "out"))

    with monkeypatch.context() as patch:
        patch.setattr(tempfile, "mkdtemp", read_only)
        code = main(["test", "-k", str(table), *ROLES, "-n", str(tmp_path / "out" / "x")])
    error_line(capsys, code, f"cannot write the outputs to the folder {tmp_path / 'out'}")
    assert not (tmp_path / "out").exists()
    code = main(["test", "-k", str(table), *ROLES, "-n", str(table / "x")])
    error_line(capsys, code, "c.txt is a file")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes anywhere")
def test_a_folder_without_write_permission(frame, tmp_path, capsys):
    table = write_table(frame, tmp_path / "c.txt")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    code = main(["test", "-k", str(table), *ROLES, "-n", str(locked / "x")])
    error_line(capsys, code, "cannot write the outputs", "locked")


def test_a_damaged_gz_count_table_is_named(frame, tmp_path, capsys):
    good = gzip.compress(frame.to_csv(sep="\t", index=False).encode())
    bad = tmp_path / "counts.txt.gz"
    bad.write_bytes(good[:20] + bytes(b ^ 0xFF for b in good[20:60]) + good[60:])
    code = main(["test", "-k", str(bad), *ROLES, "-n", str(tmp_path / "x")])
    error_line(capsys, code, "counts.txt.gz: the compressed file is damaged")


def test_plot_genes_unknown_to_the_fit(tmp_path, capsys):
    out = tmp_path / "figures" / "forest.png"
    args = ["plot", str(SAVED_FIT), "--kind", "forest", "-o", str(out)]
    code = main([*args, "--genes", "G1,NOPE"])
    error_line(capsys, code, "--genes: 'NOPE' is not a gene of this fit (6 genes, e.g. G")
    code = main(["plot", str(SAVED_FIT), "--genes", "G1", "-o", str(out)])
    error_line(capsys, code, "--genes is for --kind forest, not --kind volcano")
    assert not (tmp_path / "figures").exists()


def test_debug_after_the_subcommand(frame, tmp_path, capsys):
    bad = write_table(frame.assign(C2=-1), tmp_path / "neg.txt")
    args = ["test", "-k", str(bad), *ROLES, "-n", "x"]
    error_line(capsys, main(args), "negative")
    for argv in (["--debug", *args], [*args, "--debug"]):
        with pytest.raises(sf.ScreenDataError, match="negative"):
            main(argv)


# ------------------------------------------------------- no empty folders left behind
def test_a_failed_run_leaves_no_folder_it_made_and_keeps_the_users(frame, tmp_path, capsys):
    bad = write_table(frame.assign(C2=-1), tmp_path / "neg.txt")
    code = main(["test", "-k", str(bad), *ROLES, "-n", str(tmp_path / "new" / "deeper" / "x")])
    error_line(capsys, code, "negative")
    assert not (tmp_path / "new").exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    code = main(["test", "-k", str(bad), *ROLES, "-n", str(mine / "sub" / "x")])
    error_line(capsys, code, "negative")
    assert mine.is_dir() and not list(mine.iterdir())
    config = write_config(tmp_path, frame.assign(C2=-1))
    error_line(capsys, main(["fit", str(config)]), "negative")
    assert not (tmp_path / "out").exists()


def test_guide_states_with_a_pool_is_one_line(frame, tmp_path, capsys):
    table = write_table(frame, tmp_path / "pool.txt")
    argv = ["test", "-k", str(table), *ROLES, "-n", str(tmp_path / "o")]
    argv += ["--guide-states", "majority"]
    code = main(argv)
    error_line(capsys, code, "guide_states needs", "not pool='joint'")
