"""Issue 16: "give stage 1 more draws" is advice each interface can follow.

``screenformula test --stage1-draws N``, ``fit: {stage1_draws: N}`` in a config and the
demo's ``--stage1-draws N`` reach ``ScreenModel.fit`` as ``stage1_draws`` and
``stage1_tune``; with a method that has no stage 1 they are refused in one line. No
fitting here: ``ScreenModel.fit`` is replaced, or only ``fit --check`` runs.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import screenformula as sf
from screenformula import demo
from screenformula.cli import config as config_cli
from screenformula.cli import mageck_test, main, saved
from screenformula.results.diagnostics import Convergence

DATA = Path(__file__).resolve().parents[1] / "data"
SAVED = DATA / "fit_format1_ed30f57.nc"


class Stop(Exception):
    """Raised by the fake fit once it has seen its keywords (nothing is fitted)."""


@pytest.fixture
def screen(monkeypatch, tmp_path) -> dict:
    """A small screen as a MAGeCK table and a config; ``ScreenModel.fit`` records and stops."""
    fit = sf.load_fit(SAVED)
    frame = fit.model.data.counts_frame()
    frame.columns = ["sgRNA", "Gene", *frame.columns[2:]]
    table = tmp_path / "counts.txt"
    frame.to_csv(table, sep="\t", index=False)
    columns = list(frame.columns[2:])
    treated = [c for c in columns if c.startswith("treated")]
    control = [c for c in columns if c.startswith("control")]
    calls = []

    def fake_fit(self, *args, **kwargs):
        calls.append({"method": args[0] if args else kwargs.get("method"), **kwargs})
        raise Stop

    monkeypatch.setattr(sf.ScreenModel, "fit", fake_fit)
    monkeypatch.chdir(tmp_path)
    pool = [c for c in columns if c.startswith("pool")]
    rows = [(s, "control", False) for s in control] + [(s, "treated", False) for s in treated]
    rows += [(s, "plasmid", True) for s in pool]
    sheet = pd.DataFrame(rows, columns=["sample", "treatment", "pool"])
    sheet.insert(1, "condition", sheet["treatment"])
    sheet.to_csv(tmp_path / "samples.tsv", sep="\t", index=False)
    return {
        "table": table,
        "args": ["-k", str(table), "-t", ",".join(treated), "-c", ",".join(control)],
        "calls": calls,
    }


def write_config(path: Path, fit: str) -> Path:
    path.write_text(
        "counts: counts.txt\nsamples: samples.tsv\n"
        "formula: 'count ~ 1 + treatment + (1 + treatment | gene)"
        " + (1 + treatment | gene:sgrna)'\n"
        "pool: joint\nreference: {treatment: control}\n"
        f"fit: {fit}\n"
        "contrasts: [{factor: treatment, ref: control}]\noutput: out\n"
    )
    return path


def test_the_flag_reaches_the_fit(screen):
    argv = ["test", *screen["args"], "--method", "two-stage", "--stage1-draws", "1200"]
    with pytest.raises(Stop):
        main([*argv, "-n", "scr", "--quiet", "--debug"])
    (call,) = screen["calls"]
    assert call["method"] == "two-stage"
    assert call["stage1_draws"] == 1200 and call["stage1_tune"] == 1200


def test_without_the_flag_stage1_keeps_its_defaults(screen):
    argv = ["test", *screen["args"], "--method", "two-stage", "-n", "scr", "--quiet", "--debug"]
    with pytest.raises(Stop):
        main(argv)
    (call,) = screen["calls"]
    assert "stage1_draws" not in call and "stage1_tune" not in call


@pytest.mark.parametrize("method", ["nuts", "advi", "approx"])
def test_the_flag_is_refused_without_a_stage_1(screen, method, capsys):
    argv = ["test", *screen["args"], "--method", method, "--stage1-draws", "1000", "-n", "o"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        f"screenformula: error: --stage1-draws does not apply to --method {method}"
    )
    assert not screen["calls"]


def test_auto_choosing_nuts_refuses_the_flag(screen, capsys):
    # without guide states (which auto gives one group: they need the two-stage engine)
    argv = ["test", *screen["args"], "--stage1-draws", "1000", "-n", "o", "--guide-states", "none"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("screenformula: error: --stage1-draws sets the draws of the two-stage")
    assert "auto chose nuts" in err
    assert not screen["calls"]


def test_a_bad_flag_value_is_one_line(screen, capsys):
    argv = ["test", *screen["args"], "--method", "two-stage", "--stage1-draws", "0", "-n", "o"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == "screenformula: error: --stage1-draws must be at least 1"


def test_the_config_key_passes_the_check_and_reaches_the_fit(screen, capsys):
    config = write_config(Path("analysis.yaml"), "{method: two-stage, stage1_draws: 800}")
    assert main(["fit", str(config), "--check"]) == 0
    assert "ready to fit" in capsys.readouterr().out
    with pytest.raises(Stop):
        main(["fit", str(config), "--quiet", "--debug"])
    (call,) = screen["calls"]
    assert call["stage1_draws"] == 800 and call["stage1_tune"] == 800


@pytest.mark.parametrize(
    ("fit", "expected"),
    [
        ("{method: two-stage, stage1_draws: 0}", "fit.stage1_draws: Input should be greater"),
        ("{method: two-stage, stage1_draws: many}", "fit.stage1_draws: Input should be a valid"),
        ("{method: nuts, stage1_draws: 800}", "needs method two-stage (or auto), not nuts"),
        ("{stage1_draws: 800}", "auto chose nuts"),
    ],
)
def test_a_bad_config_value_is_one_line(screen, capsys, fit, expected):
    config = write_config(Path("analysis.yaml"), fit)
    assert main(["fit", str(config), "--check"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("screenformula: error: analysis.yaml: ") and expected in err


def test_the_demo_takes_the_flag(monkeypatch):
    args = demo.build_parser().parse_args(["--stage1-draws", "1500"])
    assert args.stage1_draws == 1500
    settings = demo.Settings(stage1_draws=1500)
    assert demo._hap1_stage1(settings, 18_056) == {"stage1_draws": 1500, "stage1_tune": 1500}
    assert demo._hap1_stage1(demo.Settings(), 18_056) == {}
    with pytest.raises(SystemExit) as stop:
        demo.main(["--stage1-draws", "100", "--hap1-method", "nuts"])
    assert stop.value.code == 2


def two_stage_advice(wording) -> str:
    verdict = Convergence("two-stage", False, ("R-hat 1.2",), settings={"stage1_draws": 500})
    return verdict.advice(wording)


def test_the_advice_names_each_interfaces_own_setting():
    assert "(--stage1-draws 1000)" in two_stage_advice(mageck_test.CONVERGENCE_WORDING)
    config = two_stage_advice(config_cli.CONVERGENCE_WORDING)
    assert "fit: {stage1_draws: 1000} in the config" in config
    again = two_stage_advice(saved.REFIT_WORDING)
    assert "--stage1-draws 1000 (test)" in again and "fit: {stage1_draws: 1000} (fit)" in again
    assert "(--stage1-draws 1000)" in two_stage_advice(demo.DEMO_WORDING)
    assert "(--stage1-draws 1000)" in two_stage_advice(demo.HAP1_WORDING)
    for wording in (
        mageck_test.CONVERGENCE_WORDING,
        config_cli.CONVERGENCE_WORDING,
        saved.REFIT_WORDING,
        demo.DEMO_WORDING,
        demo.HAP1_WORDING,
    ):
        text = two_stage_advice(wording)
        assert "Python" not in text and "stage1_tune" not in text and "no flag" not in text


def test_the_help_lists_the_flag(capsys):
    with pytest.raises(SystemExit):
        main(["test", "--help"])
    assert "--stage1-draws N" in capsys.readouterr().out


def test_the_advice_asks_for_as_many_draws_as_the_mixing_needs():
    """The demo's leukemia fit had ESS 43 after 4 x 500 draws: "--draws 2000" would have
    left it near ESS 170, short of the 400 the check asks for."""
    slow = Convergence("nuts", False, ("ESS 43",), ess_min=43.0, settings={"draws": 500})
    assert "(--draws 6000 --tune 6000)" in slow.advice(demo.DEMO_WORDING)
    # chains that hardly move (ESS 3) say nothing about the draws needed: double, >= 2000
    stuck = Convergence("nuts", False, ("ESS 3",), ess_min=3.0, settings={"draws": 500})
    assert "(--draws 2000 --tune 2000)" in stuck.advice(demo.DEMO_WORDING)
    # a two-stage fit whose stage 1 stopped at its most draws, ESS 300: as many again and more
    stage1 = Convergence(
        "two-stage", False, ("ESS 300",), ess_min=300.0, settings={"stage1_draws": 10000}
    )
    assert "(--stage1-draws 20000)" in stage1.advice(mageck_test.CONVERGENCE_WORDING)
    stage1 = Convergence(
        "two-stage", False, ("ESS 100",), ess_min=100.0, settings={"stage1_draws": 10000}
    )
    assert "(--stage1-draws 50000)" in stage1.advice(mageck_test.CONVERGENCE_WORDING)
    # ... toward the ESS its check asks (Stan's 100 per chain: 200 for stage 1's two)
    stage1 = Convergence(
        "two-stage", False, ("ESS 100",), ess_min=100.0,
        settings={"stage1_draws": 10000, "ess_target": 200.0},
    )  # fmt: skip
    assert "(--stage1-draws 25000)" in stage1.advice(mageck_test.CONVERGENCE_WORDING)
