"""Figures from result tables: each returns a Figure and writes a file when asked."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from _contrast_fakes import fake_fit, small_screen  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from screenformula import plotting  # noqa: E402

SEED_FORMULA = "count ~ 1 + treatment + (1 + treatment | gene) + (1 + treatment | gene:sgrna)"


@pytest.fixture(scope="module")
def result():
    n = 300
    r_gene = np.random.default_rng(0).normal(0.0, 0.2, (n, 6, 3))
    r_gene[:, 0, 1] -= 2.0
    fit, _ = fake_fit(small_screen(), SEED_FORMULA, {"r_gene": r_gene}, n_draws=n)
    return fit.contrast()


def _check(fig, path):
    assert isinstance(fig, Figure)
    assert path.is_file() and path.stat().st_size > 1000


def test_volcano(result, tmp_path):
    _check(plotting.volcano_plot(result.genes, path=tmp_path / "v.png"), tmp_path / "v.png")
    fig = plotting.volcano_plot(result.genes, contrast="drugA vs control", y="qvalue")
    assert len(fig.axes) == 1


def test_rank_plot(result, tmp_path):
    fig = plotting.rank_plot(result.genes, highlight=["G1"], path=tmp_path / "r.pdf")
    _check(fig, tmp_path / "r.pdf")
    assert len(fig.axes) == 2  # one per contrast


def test_forest_plot(result, tmp_path):
    _check(plotting.forest_plot(result.genes, top=4, path=tmp_path / "f.png"), tmp_path / "f.png")
    fig = plotting.forest_plot(result.genes, ["G1", "G3"], contrast="drugB vs control")
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["G1", "G3"]
    with pytest.raises(ValueError, match="not in the table"):
        plotting.forest_plot(result.genes, ["NOPE"])


def test_gene_panel(result, tmp_path):
    row = result.genes[
        (result.genes["gene"] == "G1") & (result.genes["contrast"] == "drugA vs control")
    ]
    fig = plotting.gene_panel(
        result.guide_counts("G1"), result.sgrnas, row, path=tmp_path / "g.png"
    )
    _check(fig, tmp_path / "g.png")
    assert len(fig.axes) == 2


def test_group_plot(result, tmp_path):
    _check(plotting.group_plot(result.groups, path=tmp_path / "k.png"), tmp_path / "k.png")


def test_empty_tables_say_why(tmp_path):
    fit, _ = fake_fit(small_screen(n_groups=0), SEED_FORMULA)
    res = fit.contrast()
    with pytest.raises(ValueError, match="no gene groups"):
        plotting.group_plot(res.groups)
