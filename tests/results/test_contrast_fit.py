"""End to end on one tiny real fit: contrasts, real counts, MAGeCK files, plots."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from _mageck_format import read_gene_summary, read_sgrna_summary  # noqa: E402

import screenformula as sf  # noqa: E402
from screenformula import plotting  # noqa: E402

pytestmark = pytest.mark.slow

FORMULA = "count ~ 1 + treatment + (1 + treatment | gene) + (1 + treatment | gene:sgrna)"


@pytest.fixture(scope="module")
def fitted():
    data, truth = sf.simulate_screen(n_genes=30, random_seed=1)
    fit = sf.ScreenModel(FORMULA, data).fit(
        draws=200, tune=200, chains=2, progress=False, random_seed=1
    )
    return fit, truth


@pytest.fixture(scope="module")
def result(fitted):
    fit, _ = fitted
    return fit.contrast()


def test_gene_table_recovers_the_truth(fitted, result):
    fit, truth = fitted
    genes = result.genes
    assert len(genes) == 30 and list(genes["contrast"].unique()) == ["treated vs control"]
    true = truth.lfc_table(log2=True)["treated"].reindex(genes["gene"]).to_numpy()
    assert np.corrcoef(genes["lfc"], true)[0, 1] > 0.9
    true_hits = set(truth.hits["gene"])
    assert true_hits <= set(result.hits()["gene"])
    assert (genes.set_index("gene").loc[sorted(true_hits), "lfsr"] < 0.05).all()
    inside = (genes["hdi_low"] <= true) & (true <= genes["hdi_high"])
    assert inside.mean() >= 0.8


def test_guides_and_groups(result):
    assert len(result.sgrnas) == 120 and result.sgrna_message is None
    assert result.groups.empty and result.group_message  # the screen has no gene groups


def test_expected_counts_match_the_data(fitted):
    fit, _ = fitted
    table = fit.expected_counts()
    assert len(table) == 30 * 2 and set(table["condition"]) == {"control", "treated"}
    assert (table["hdi_low"] <= table["mean"]).all() and (table["mean"] <= table["hdi_high"]).all()
    logs = np.log(table[["mean", "observed"]].to_numpy() + 1)
    assert np.corrcoef(logs.T)[0, 1] > 0.97
    assert np.median(table["mean"] / table["observed"]) == pytest.approx(1.0, abs=0.15)


def test_mageck_files_and_plots_from_a_real_fit(fitted, result, tmp_path):
    paths = result.to_mageck(tmp_path / "tiny")
    genes = read_gene_summary(paths[0])
    guides = read_sgrna_summary(paths[1])
    assert len(genes) == 30 and len(guides) == 120
    assert all(len(g["control_count"]) == 3 for g in guides)
    top = result.genes.sort_values("rank").iloc[0]
    plotting.volcano_plot(result.genes, path=tmp_path / "v.png")
    plotting.rank_plot(result.genes, path=tmp_path / "r.png")
    plotting.forest_plot(result.genes, path=tmp_path / "f.png")
    plotting.gene_panel(
        result.guide_counts(top["gene"]), result.sgrnas, top, path=tmp_path / "g.png"
    )
    assert all((tmp_path / f"{k}.png").is_file() for k in "vrfg")


def test_contrasts_survive_save_and_load(fitted, result, tmp_path):
    fit, _ = fitted
    loaded = sf.load_fit(fit.save(tmp_path / "fit.nc"))
    again = loaded.contrast()
    assert np.allclose(again.genes["lfc"], result.genes["lfc"])
    assert np.allclose(again.genes["qvalue"], result.genes["qvalue"])
