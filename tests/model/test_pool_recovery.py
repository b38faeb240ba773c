"""The joint pool model on data with a true pool-latent correlation (slow; runs in CI).

Tolerance: the guide baseline/slope correlation (truth -0.6) is recovered within 0.25
with 150 genes x 4 guides (posterior sd about 0.07); gene LFCs correlate >= 0.9 with the
truth. `compare` against a fit without the pool gives one row per gene.
"""

from __future__ import annotations

import numpy as np
import pytest

import screenformula as sf

pytestmark = pytest.mark.slow

FORMULA = "count ~ 1 + treatment + (1 + treatment | gene) + (1 + treatment | gene:sgrna)"


@pytest.fixture(scope="module")
def pool_fits():
    data, truth = sf.simulate_screen(
        n_genes=150,
        gene_effects="normal",
        tau_sgrna=(1.0, 0.5),
        sgrna_correlation=-0.6,
        random_seed=99,
    )
    joint = sf.ScreenModel(FORMULA, data, pool="joint").fit(
        draws=400, tune=400, chains=2, random_seed=3, progress=False
    )
    without = sf.ScreenModel(FORMULA, data.subset(samples=list(data.screen_samples))).fit(
        draws=200, tune=300, chains=2, random_seed=3, progress=False
    )
    return joint, without, truth


def test_guide_correlation_recovered(pool_fits):
    joint, _, truth = pool_fits
    table = joint.guide_correlation()
    row = table.iloc[0]
    assert (row["effect_a"], row["effect_b"]) == ("Intercept", "treatment[treated]")
    assert abs(row["mean"] - truth.params["sgrna_correlation"][0][1]) <= 0.25
    assert row["hdi_low"] < row["mean"] < row["hdi_high"]


def test_gene_lfcs_recovered_with_the_pool(pool_fits):
    joint, _, truth = pool_fits
    genes = joint.contrast().genes
    true = truth.genes.set_index("gene").loc[genes["gene"], "lfc_log2"].to_numpy()
    assert np.corrcoef(genes["lfc"], true)[0, 1] >= 0.9


def test_compare_shows_what_the_pool_changed(pool_fits):
    joint, without, _ = pool_fits
    change = joint.compare(without)
    assert len(change) == 150
    assert {"lfc_fit", "lfc_other", "lfc_change", "sd_ratio"} <= set(change.columns)
    np.testing.assert_allclose(change["lfc_change"], change["lfc_fit"] - change["lfc_other"])
    assert change["lfc_change"].abs().is_monotonic_decreasing
