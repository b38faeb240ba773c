"""Parameter recovery on data drawn from the model itself (slow; runs in CI).

Tolerances (NUTS, 2 chains x 500 draws, 200 genes x 4 guides, pool + 3 + 3 samples):
- gene LFCs: correlation with the truth >= 0.95 and mean absolute error <= 0.15 (ln);
- gene-level sds within 35% of the truth, the gene intercept/slope correlation within
  0.3 of the truth (its posterior sd with 200 genes is about 0.1);
- per-guide dispersion: the posterior median of phi within 35% of the true median;
- at most 1% divergent transitions, R-hat <= 1.05 for the gene effects.
"""

from __future__ import annotations

import numpy as np
import pytest

import screenformula as sf

pytestmark = pytest.mark.slow

FORMULA = "count ~ 1 + treatment + (1 + treatment | gene) + (1 + treatment | gene:sgrna)"


@pytest.fixture(scope="module")
def recovery_fit():
    data, truth = sf.simulate_screen(
        n_genes=200,
        gene_effects="normal",
        tau_gene=(0.4, 0.6),
        gene_correlation=-0.5,
        random_seed=2024,
    )
    # the simulation draws per-guide dispersions: the model that made the data is the
    # per-guide one ("sgrna"), not the default abundance trend
    fit = sf.ScreenModel(FORMULA, data, dispersion="sgrna").fit(
        draws=500, tune=500, chains=2, random_seed=7, progress=False
    )
    return fit, truth


def test_gene_lfcs_recovered(recovery_fit):
    fit, truth = recovery_fit
    post = fit.posterior
    coef = "treatment[treated]"
    lfc = (post["b"].sel(b_coef=coef) + post["r_gene"].sel(gene_coef=coef)).mean(("chain", "draw"))
    true = truth.genes.set_index("gene").loc[lfc["gene"].values, "lfc"].to_numpy()
    assert np.corrcoef(lfc.values, true)[0, 1] >= 0.95
    assert np.mean(np.abs(lfc.values - true)) <= 0.15


def test_lkj_correlation_and_sds_recovered(recovery_fit):
    fit, truth = recovery_fit
    post = fit.posterior
    cor = float(post["cor_gene"].sel(gene_cor="Intercept,treatment[treated]").mean())
    true_cor = truth.params["gene_correlation"][0][1]
    assert abs(cor - true_cor) <= 0.3, (cor, true_cor)
    sd = post["sd_gene"].mean(("chain", "draw")).values
    true_sd = np.array([truth.params["tau_gene"]["intercept"], truth.params["tau_gene"]["treated"]])
    np.testing.assert_allclose(sd, true_sd, rtol=0.35)


def test_dispersion_recovered(recovery_fit):
    fit, truth = recovery_fit
    phi = fit.posterior["phi"].median(("chain", "draw")).values
    true_phi = truth.sgrnas["phi"].to_numpy()
    assert abs(np.median(phi) / np.median(true_phi) - 1) <= 0.35


def test_sampler_healthy_on_default_settings(recovery_fit):
    fit, _ = recovery_fit
    table = fit.diagnostics(warn=False)
    n = fit.posterior.sizes["chain"] * fit.posterior.sizes["draw"]
    assert table.attrs["divergences"] <= 0.01 * n
    assert table.loc["r_gene", "rhat_max"] <= 1.05
