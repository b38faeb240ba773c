"""Cross-check against plain Bambi: same formula with `||`, matched priors, same posterior.

Bambi has no correlated group effects and no pool likelihood, so the check uses
independent effects, a shared dispersion and no pool sample: there both programs
fit the same model, and posterior means must agree within Monte Carlo error.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import screenformula as sf

pytestmark = pytest.mark.slow


def test_posterior_means_agree_with_bambi():
    import bambi as bmb

    full, _ = sf.simulate_screen(
        n_genes=12,
        n_sgrnas_per_gene=3,
        n_replicates=2,
        n_pool_samples=0,
        frac_hits=0.25,
        dispersion="shared",
        random_seed=21,
    )
    data = full
    intercept = sf.Prior("StudentT", nu=3, mu=5.5, sigma=2.5)
    slope = sf.Prior("StudentT", nu=5, mu=0, sigma=1)
    phi = sf.Prior("Gamma", alpha=2, beta=0.1)
    ours = sf.ScreenModel(
        "count ~ 1 + treatment + (1 + treatment || gene)",
        data,
        dispersion="shared",
        pool=None,
        priors={
            "Intercept": intercept,
            "b": slope,
            "phi": phi,
            "sd": sf.Prior("Exponential", lam=1),
        },
        parameterization=False,  # Bambi's group effects are non-centred
    )
    fit = ours.fit(draws=1000, tune=1000, chains=2, random_seed=1, progress=False)

    long = data.to_long()
    long["log_sf"] = np.log(long["size_factor"])
    long["treatment"] = long["treatment"].astype(str)
    group_prior = bmb.Prior("Normal", mu=0, sigma=bmb.Prior("Exponential", lam=1))
    bambi_model = bmb.Model(
        "count ~ 1 + treatment + (1 + treatment | gene) + offset(log_sf)",
        long,
        family="negativebinomial",
        priors={
            "Intercept": bmb.Prior("StudentT", nu=3, mu=5.5, sigma=2.5),
            "treatment": bmb.Prior("StudentT", nu=5, mu=0, sigma=1),
            "1|gene": group_prior,
            "treatment|gene": group_prior,
            "alpha": bmb.Prior("Gamma", alpha=2, beta=0.1),
        },
        center_predictors=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = bambi_model.fit(
            draws=1000,
            tune=1000,
            chains=2,
            random_seed=1,
            inference_method="nutpie",
            progressbar=False,
        )
    post, ref = fit.posterior, reference["posterior"].to_dataset()

    def agree(a, b, what):
        """Posterior means within Monte Carlo error: |difference| < 0.2 posterior sd.

        With ESS of a few hundred per run, the sd of a difference of two posterior means
        is about 0.07 posterior sd, so 0.2 is about three Monte Carlo standard errors.
        """
        a, b = np.asarray(a, float), np.asarray(b, float)
        diff = np.abs(a.mean(axis=(0, 1)) - b.mean(axis=(0, 1)))
        scale = np.maximum(b.std(axis=(0, 1)), 1e-6)
        assert np.all(diff < 0.2 * scale), f"{what}: {np.round(diff / scale, 2)}"

    agree(post["b"].values, ref["treatment"].values, "population slope")
    agree(post["Intercept"].values, ref["Intercept"].values, "intercept")
    agree(post["phi"].values, ref["alpha"].values, "dispersion")
    agree(post["sd_gene"].values[..., 0], ref["1|gene_sigma"].values, "sd of gene intercepts")
    agree(
        post["sd_gene"].values[..., 1], ref["treatment|gene_sigma"].values[..., 0], "sd of slopes"
    )
    genes = [str(g) for g in ref["gene__factor_dim"].values]
    coef = "treatment[treated]"
    ours_lfc = post["b"].sel(b_coef=coef) + post["r_gene"].sel(gene_coef=coef, gene=genes)
    ref_lfc = ref["treatment"].isel(treatment_dim=0) + ref["treatment|gene"].isel(
        treatment__expr_dim=0
    )
    agree(ours_lfc.transpose("chain", "draw", "gene").values, ref_lfc.values, "gene LFCs")
    agree(
        post["r_gene"].sel(gene_coef="Intercept", gene=genes).values,
        ref["1|gene"].values,
        "gene intercepts",
    )
