"""Issue 16, "Honest output": a fit says when it cannot be trusted, and calls agree.

No sampling: ``tests/data/fit_format1_ed30f57.nc`` is a real NUTS fit that fails the
convergence checks (1 chain x 20 draws: bulk ESS 3), and hand-built posteriors
(`_contrast_fakes`) give a fit that passes them and genes whose calls are known.
"""

from __future__ import annotations

import inspect
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from _contrast_fakes import fake_fit, small_screen

import screenformula as sf
from screenformula.cli import build_parser
from screenformula.cli.config import ContrastConfig
from screenformula.errors import FitError
from screenformula.results.contrasts import compute_contrasts
from screenformula.results.diagnostics import variable_labels
from screenformula.results.fit import ConvergenceWarning, ScreenFit

DATA = Path(__file__).resolve().parents[1] / "data"
#: Posterior variable names that must not reach a user-facing sentence or label.
RAW = re.compile(r"\b(z|L|t|r|sd|cor)_(gene|sgrna)\w*")


@pytest.fixture
def unconverged() -> ScreenFit:
    """A real NUTS fit (6 genes) that fails its checks; loaded afresh (warnings once)."""
    return sf.load_fit(DATA / "fit_format1_ed30f57.nc")


def test_an_unconverged_fit_says_so_in_words_in_its_repr(unconverged):
    text = repr(unconverged)
    head = text.split("Formula:")[0]
    assert "cannot be trusted" in head and "PROVISIONAL" in head
    # which quantity, in a biologist's words, and what to do
    assert "too few independent draws" in head and "gene baselines and LFCs" in head
    assert "draws=2000, tune=2000" in head and "target_accept=0.95" in head
    assert "chains=4" in head  # one chain: R-hat cannot even be computed
    assert not RAW.search(head), head


def test_its_contrast_warns_once_and_marks_the_hits_provisional(unconverged):
    with pytest.warns(ConvergenceWarning, match="cannot be trusted") as record:
        result = unconverged.contrast()
    assert record[0].filename == __file__  # points at the user's line, not ours
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        again = unconverged.contrast()  # said once per fit
    assert result.provisional and again.provisional
    genes = result.genes
    assert genes["hit"].any()
    assert (genes["provisional"] == genes["hit"]).all()
    assert genes.attrs["provisional"] is True
    text = repr(result)
    assert "PROVISIONAL hits" in text and "NOT CONVERGED" in text


def test_the_diagnostics_table_names_quantities_and_keeps_raw_names(unconverged):
    table = unconverged.diagnostics(warn=False)
    assert {"z_gene", "r_gene", "L_sgrna", "t_sgrna__Intercept", "phi"} <= set(table.index)
    label = table["quantity"]
    assert label["z_gene"] == label["r_gene"] == "gene baselines and LFCs (treatment[treated])"
    assert label["t_sgrna__Intercept"] == "guide baselines"
    want = "correlation of guide baselines and LFCs (treatment[treated])"
    assert label["L_sgrna"] == label["cor_sgrna"] == want
    assert label["sd_gene"].startswith("sd of gene") and label["phi"] == "guide dispersion"
    assert not any(RAW.search(q) for q in label)
    for problem in table.attrs["problems"]:
        assert not RAW.search(problem), problem


def test_labels_cover_every_variable_of_the_model(unconverged):
    labels = variable_labels(unconverged.model.spec)
    for name in unconverged.posterior.data_vars:
        assert name in labels, name


def test_a_fit_that_passes_its_checks_is_not_flagged():
    fit, _ = fake_fit(
        small_screen(), "count ~ 1 + treatment + (1 + treatment | gene)", n_draws=2000
    )
    verdict = fit.convergence()
    assert verdict.trusted and verdict.message() == ""
    assert "Convergence: checks passed" in repr(fit)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        result = fit.contrast()
    assert not result.provisional and not result.genes["provisional"].any()
    assert "PROVISIONAL" not in repr(result)


# --------------------------------------------------------- calls that agree
def test_default_delta_is_half_a_log2_unit_everywhere():
    python = inspect.signature(ScreenFit.contrast).parameters["delta"].default
    direct = inspect.signature(compute_contrasts).parameters["delta"].default
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices  # noqa: SLF001 - argparse has no API
    flags = {
        name: next(a.default for a in sub[name]._actions if a.dest == "delta")  # noqa: SLF001
        for name in ("test", "contrast")
    }
    assert python == direct == ContrastConfig().delta == flags["test"] == flags["contrast"] == 0.5
    rules = {
        name: next(a.default for a in sub[name]._actions if a.dest == "call_rule")  # noqa: SLF001
        for name in ("test", "contrast")
    }
    python = inspect.signature(ScreenFit.contrast).parameters["call_rule"].default
    direct = inspect.signature(compute_contrasts).parameters["call_rule"].default
    assert python == direct == ContrastConfig().call_rule == rules["test"] == rules["contrast"]
    assert python == "local"


@pytest.fixture(scope="module")
def screen_with_noise():
    """40 genes surely down by 2 log2, and one null gene, "OC90", whose mean is +0.014.

    Gene LFC = b + r_gene[treatment]; b = 0. OC90's draws are N(0.014, 0.3).
    """
    data = small_screen(n_genes=41, n_sgrnas_per_gene=2, treatments=("drug",), n_groups=0)
    rng = np.random.default_rng(3)
    n = 2000
    r_gene = rng.normal(0.0, 0.05, (n, 41, 2))
    r_gene[:, :40, 1] = rng.normal(-2.0 / np.log2(np.e), 0.1, (n, 40))
    r_gene[:, 40, 1] = rng.normal(0.014 / np.log2(np.e), 0.3, n)
    r_gene[:, 40, 1] += 0.014 / np.log2(np.e) - r_gene[:, 40, 1].mean()  # mean exactly +0.014
    fit, _ = fake_fit(
        data,
        "count ~ 1 + treatment + (1 + treatment | gene)",
        {"b": np.zeros((n, 1)), "r_gene": r_gene},
        n_draws=n,
    )
    null = str(data.gene_names[40])
    return fit, null


def test_down_calls_never_have_a_positive_lfc(screen_with_noise):
    """RT112: hits(direction="down") returned OC90 with LFC +0.014 (delta=0, qvalue_down)."""
    fit, null = screen_with_noise
    for delta in (0.0, 0.5):
        result = fit.contrast(ref="control", delta=delta)
        genes = result.genes.set_index("gene")
        assert genes.loc[null, "lfc"] == pytest.approx(0.014, abs=1e-9)
        # the one-sided q-value over all genes would list it as depleted: 40 sure genes
        # dilute its error of about 0.5 (delta 0), which is what the old filter used
        if delta == 0.0:
            assert genes.loc[null, "qvalue_down"] <= 0.05
        down = result.hits(direction="down")
        assert null not in set(down["gene"])
        assert (down["lfc"] < 0).all()
        assert (result.hits(direction="up")["lfc"] > 0).all()


def test_the_local_rule_keeps_a_null_gene_out_behind_sure_hits(screen_with_noise):
    """A q-value is a running mean: behind 40 sure hits it calls a gene that is 87 % likely
    not changed beyond delta. The default rule asks each call's own error to be small."""
    fit, null = screen_with_noise
    local = fit.contrast(ref="control")
    assert local.settings["call_rule"] == "local"
    by_q = fit.contrast(ref="control", call_rule="qvalue")
    genes = by_q.genes.set_index("gene")
    assert genes.loc[null, "qvalue"] <= 0.05 and genes.loc[null, "hit"]
    assert min(genes.loc[null, "error_down"], genes.loc[null, "error_up"]) > 0.8
    assert null not in set(local.hits()["gene"])
    assert set(local.hits()["gene"]) == set(by_q.hits()["gene"]) - {null}
    assert len(local.hits()) == 40
    # a looser bound by hand follows the result's rule: error <= 0.9 lets the null in
    assert null in set(local.hits(q=0.9)["gene"])
    assert "40 hits (40 down, 0 up) at local error <= 0.05" in repr(local)
    assert "41 hits (40 down, 1 up) at q <= 0.05" in repr(by_q)
    with pytest.raises(FitError, match="call_rule must be one of local, qvalue"):
        fit.contrast(ref="control", call_rule="lfdr")


def test_counts_filter_and_summary_agree(screen_with_noise):
    """RT112 printed "69 hits (50 down, 2 up)": the parts must add up to the whole."""
    fit, _ = screen_with_noise
    result = fit.contrast(ref="control")
    assert result.settings["delta"] == 0.5
    both, down, up = (result.hits(direction=d) for d in ("both", "down", "up"))
    assert len(both) == len(down) + len(up) == int(result.genes["hit"].sum())
    assert set(both["gene"]) == set(down["gene"]) | set(up["gene"])
    line = repr(result).splitlines()[1]
    assert f"{len(both)} hits ({len(down)} down, {len(up)} up)" in line
    assert "|log2 LFC| > 0.5" in line
    genes = result.genes
    assert (genes["direction"] == np.where(genes["lfc"] < 0, "down", "up")).all()
