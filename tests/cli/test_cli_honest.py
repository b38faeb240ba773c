"""Issue 16, "Honest output", on the command line: a fit that failed its checks says so.

``screenformula test`` and ``fit`` printed "45 hits at q <= 0.05" and exited 0 while R-hat
was 1.83 and bulk ESS 3; only PREFIX.log knew. Here the sampler is replaced by a real
NUTS fit that fails its checks (``tests/data/fit_format1_ed30f57.nc``, 1 chain x 20
draws: bulk ESS 3) so that the console is checked without sampling.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from _mageck_format import read_gene_summary

import screenformula as sf
from screenformula.cli import main

DATA = Path(__file__).resolve().parents[1] / "data"
SAVED = DATA / "fit_format1_ed30f57.nc"


@pytest.fixture
def unconverged_sampler(monkeypatch, tmp_path) -> Path:
    """``ScreenModel.fit`` returns the saved unconverged fit; its counts as a MAGeCK table."""
    fit = sf.load_fit(SAVED)
    frame = fit.model.data.counts_frame()
    frame.columns = ["sgRNA", "Gene", *frame.columns[2:]]
    table = tmp_path / "counts.txt"
    frame.to_csv(table, sep="\t", index=False)
    calls = []

    def fake_fit(self, *args, **kwargs):
        calls.append(kwargs)
        return sf.load_fit(SAVED)

    monkeypatch.setattr(sf.ScreenModel, "fit", fake_fit)
    monkeypatch.chdir(tmp_path)
    fake_fit.calls = calls
    return table


def _samples(table: Path) -> tuple[str, str, str]:
    columns = pd.read_csv(table, sep="\t", nrows=0).columns[2:]
    treated = ",".join(c for c in columns if c.startswith("treated"))
    control = ",".join(c for c in columns if c.startswith("control"))
    pool = ",".join(c for c in columns if c.startswith("pool"))
    return treated, control, pool


def test_test_says_the_posterior_cannot_be_trusted(unconverged_sampler, capsys):
    t, c, pool = _samples(unconverged_sampler)
    code = main(
        ["test", "-k", str(unconverged_sampler), "-t", t, "-c", c, "--pool", pool, "-n", "scr"]
    )
    out, err = capsys.readouterr()
    assert code == 0
    # stderr: what failed, in words, and the flags that fix it
    assert "screenformula: WARNING: this posterior cannot be trusted yet" in err
    assert "too few independent draws" in err and "gene baselines and LFCs" in err
    assert "--draws 2000 --tune 2000" in err and "--target-accept 0.95" in err
    assert "--chains 4" in err
    assert "draws=" not in err and "z_gene" not in err and "ConvergenceWarning" not in err
    # stdout: the hit count says PROVISIONAL, with its delta
    line = [x for x in out.splitlines() if x.startswith("treatment vs control:")]
    assert len(line) == 1, out
    assert "hits (" in line[0] and "|log2 LFC| > 0.5" in line[0]
    assert "PROVISIONAL" in line[0]
    # the tables mark the hits, and the log says so
    genes = pd.read_csv("scr.genes.tsv", sep="\t")
    assert genes["provisional"].equals(genes["hit"]) and genes["hit"].any()
    assert len(read_gene_summary(Path("scr.gene_summary.txt"))) == len(genes)  # still MAGeCK's
    summary = pd.read_csv("scr.gene_summary.txt", sep="\t")
    assert summary["provisional"].equals(summary["hit"])
    assert set(summary.loc[summary["hit"], "direction"]) <= {"down", "up"}
    log = json.loads(Path("scr.log").read_text())
    assert log["provisional"] is True and log["delta"] == 0.5
    assert any("too few independent draws" in p for p in log["convergence_problems"])


def test_quiet_still_warns(unconverged_sampler, capsys):
    t, c, pool = _samples(unconverged_sampler)
    code = main(
        ["test", "-k", str(unconverged_sampler), "-t", t, "-c", c, "-n", "q", "--quiet"]
        + ["--target-accept", "0.9"]
    )
    out, err = capsys.readouterr()
    assert code == 0 and out == ""
    assert "cannot be trusted" in err and "--target-accept 0.95" in err


def test_fit_config_says_so_in_config_keys(unconverged_sampler, capsys):
    t, c, pool = _samples(unconverged_sampler)
    sheet = Path("samples.tsv")
    rows = [(s, "control", False) for s in c.split(",")] + [
        (s, "treated", False) for s in t.split(",")
    ]
    rows.append((pool, "plasmid", True))
    frame = pd.DataFrame(rows, columns=["sample", "treatment", "pool"])
    frame.insert(1, "condition", frame["treatment"])
    frame.to_csv(sheet, sep="\t", index=False)
    Path("analysis.yaml").write_text(
        f"counts: {unconverged_sampler.name}\nsamples: samples.tsv\n"
        "formula: 'count ~ 1 + treatment + (1 + treatment | gene) + (1 + treatment | gene:sgrna)'\n"
        "pool: joint\nreference: {treatment: control}\n"
        "contrasts: [{factor: treatment, ref: control}]\noutput: out\n"
    )
    code = main(["fit", "analysis.yaml"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "cannot be trusted" in err
    assert "fit: {draws: 2000, tune: 2000} in the config" in err
    assert "fit: {target_accept: 0.95} in the config" in err
    line = [x for x in out.splitlines() if x.startswith("treatment_vs_control:")]
    assert line and "PROVISIONAL" in line[0] and "|log2 LFC| > 0.5" in line[0], out


def test_contrast_from_a_saved_fit_warns_too(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(["contrast", str(SAVED), "-n", "again"])
    out, err = capsys.readouterr()
    assert code == 0
    assert "cannot be trusted" in err and "--draws 2000 --tune 2000 (test)" in err
    line = "treated vs control: 1 hits (0 down, 1 up) at local error <= 0.05, |log2 LFC| > 0.5"
    assert line in out
    # the q-value rule, asked for, is named in the line
    assert main(["contrast", str(SAVED), "-n", "q", "--call-rule", "qvalue"]) == 0
    assert "up) at q <= 0.05, |log2 LFC| > 0.5" in capsys.readouterr().out
    assert "PROVISIONAL" in out
