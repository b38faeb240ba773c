"""``screenformula fit`` with several screens: one job each, a summary, failures kept apart.

The fit itself is replaced by reading and checking each screen (`config.prepare`) and
writing a marker: what is tested here is the running of many screens (a list or a folder
of count tables, each into its own folder, one failure not stopping the others, the
summary); one screen's fit is `screenformula fit`'s own, tested in test_cli.py.
"""

from __future__ import annotations

import pandas as pd
import pytest

import screenformula as sf
from screenformula.cli import config as fit_command
from screenformula.cli import main

CONFIG = """\
formula: "count ~ 1 + condition + (1 | gene)"
samples: samples.tsv
screens: {screens}
contrasts: [{{factor: condition, ref: control}}]
output: out/
"""
SHEET = "sample\tcondition\tpool\nP0\tplasmid\ttrue\nC1\tcontrol\tfalse\nT1\tdrug\tfalse\n"


def write_table(path, seed):
    data, _ = sf.simulate_screen(n_genes=6, n_replicates=1, random_seed=seed)
    frame = data.counts_frame()
    frame.columns = ["sgRNA", "Gene", "P0", "C1", "T1"]
    frame.to_csv(path, sep="\t", index=False)


@pytest.fixture
def fake_fit(monkeypatch):
    """Each screen read, its model built and checked, a marker written: no sampling."""

    def fit_one(one, args, say, client):
        data, _ = fit_command.prepare(one, args.config, say, one.output / "log.json")
        one.output.mkdir(parents=True)
        (one.output / "fitted").write_text(str(one.counts))
        return {"genes": data.n_genes, "hits": 2}

    monkeypatch.setattr(fit_command, "fit_one", fit_one)


def test_a_list_of_screens_with_a_broken_one(tmp_path, fake_fit, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_table(tmp_path / "a.txt", 1)
    write_table(tmp_path / "b.txt", 2)
    (tmp_path / "broken.txt").write_text("sgRNA\tGene\tP0\tC1\tT1\nsg1\tA\t1\n")
    (tmp_path / "samples.tsv").write_text(SHEET)
    screens = "[a.txt, broken.txt, {counts: b.txt, name: second}]"
    (tmp_path / "many.yaml").write_text(CONFIG.format(screens=screens))
    assert main(["fit", "many.yaml"]) == 1
    out, err = capsys.readouterr()
    summary = pd.read_csv(tmp_path / "out" / "summary.tsv", sep="\t")
    assert list(summary.columns) == ["screen", "status", "genes", "hits", "seconds", "error"]
    assert list(summary["screen"]) == ["a", "broken", "second"]
    assert list(summary["status"]) == ["ok", "failed", "ok"]
    assert list(summary["genes"].fillna(-1)) == [6, -1, 6]
    assert "broken.txt" in summary["error"][1] and summary["error"].isna()[[0, 2]].all()
    assert "\n" not in summary["error"][1]
    for line in ("screen 1/3: a: ok", "screen 2/3: broken: failed", "screen 3/3: second: ok"):
        assert line in out
    assert err.strip().splitlines()[-1] == (
        "screenformula: 1 of 3 screens failed (see out/summary.tsv)"
    )
    assert (tmp_path / "out" / "a" / "fitted").read_text().endswith("a.txt")
    assert (tmp_path / "out" / "second" / "fitted").read_text().endswith("b.txt")


def test_a_folder_of_count_tables(tmp_path, fake_fit, capsys):
    (tmp_path / "tables").mkdir()
    for i, name in enumerate(["s2.txt.gz", "s1.tsv", ".hidden.txt", "notes.md"]):
        write_table(tmp_path / "tables" / name, i)
    (tmp_path / "samples.tsv").write_text(SHEET)
    (tmp_path / "many.yaml").write_text(CONFIG.format(screens="tables/"))
    assert main(["fit", str(tmp_path / "many.yaml"), "--quiet"]) == 0
    summary = pd.read_csv(tmp_path / "out" / "summary.tsv", sep="\t")
    assert list(summary["screen"]) == ["s1", "s2"] and (summary["status"] == "ok").all()
    assert capsys.readouterr().err == ""


def test_counts_and_screens_are_one_or_the_other(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text('formula: "count ~ 1"\ncounts: a.txt\nscreens: [b.txt]\n')
    assert main(["fit", str(tmp_path / "c.yaml")]) == 2
    assert "give counts: (one screen) or screens:" in capsys.readouterr().err
    (tmp_path / "d.yaml").write_text('formula: "count ~ 1"\nscreens: nowhere/\n')
    assert main(["fit", str(tmp_path / "d.yaml")]) == 2
    assert "screens: " in capsys.readouterr().err


def test_an_unreachable_scheduler_in_the_config_stops_before_any_screen(tmp_path, capsys):
    pytest.importorskip("distributed")
    from screenformula.inference import executors

    executors.connect.__defaults__ = (1.0,)
    try:
        (tmp_path / "s.yaml").write_text(
            'formula: "count ~ 1"\nscreens: [a.txt]\nscheduler: tcp://127.0.0.1:9\n'
        )
        assert main(["fit", str(tmp_path / "s.yaml")]) == 2
    finally:
        executors.connect.__defaults__ = (executors.CONNECT_TIMEOUT,)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in err[0]
