"""The PyMC model built from a spec: structure, shapes, gradients (no sampling)."""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor
import pytest
from _screens import FORMULA

import screenformula as sf

#: Structural checks need no optimised C code: compile fast.
FAST = "FAST_COMPILE"


def value_function(model, outs):
    """A function of the model's value variables (free RVs replaced by their values)."""
    outs = model.replace_rvs_by_values(outs)
    return pytensor.function(model.value_vars, outs, mode=FAST, on_unused_input="ignore")


def free_names(model):
    return {v.name for v in model.free_RVs}


def test_structure_of_the_seed_model(small_screen):
    data, _ = small_screen
    model = sf.ScreenModel(FORMULA, data, dispersion="sgrna").pymc_model
    names = free_names(model)
    assert {
        "Intercept",
        "b",
        "sd_gene",
        "L_gene",
        "sd_sgrna",
        "L_sgrna",
        "phi",
        "phi_rate",
    } <= names
    assert {"pool_shift", "phi_pool"} <= names
    assert isinstance(model["L_gene"].owner.op, type(pm.LKJCorr.dist(n=2, eta=1.0).owner.op))
    assert model.named_vars_to_dims["r_gene"] == ("gene", "gene_coef")
    assert model.named_vars_to_dims["r_sgrna"] == ("sgrna", "sgrna_coef")
    assert model.named_vars_to_dims["count"] == ("sgrna", "sample")
    assert model.named_vars_to_dims["pool_count"] == ("sgrna", "pool_sample")
    assert model.named_vars_to_dims["phi"] == ("sgrna",)
    assert list(model.coords["gene_coef"]) == ["Intercept", "treatment[treated]"]
    # the correlations as brms stores them: one entry per pair, no constant diagonal
    assert model.named_vars_to_dims["cor_gene"] == ("gene_cor",)
    assert list(model.coords["gene_cor"]) == ["Intercept,treatment[treated]"]
    point = model.initial_point()
    assert point["b"].shape == (1,)
    (r_gene,) = value_function(model, [model["r_gene"]])(*[point[v.name] for v in model.value_vars])
    assert r_gene.shape == (30, 2)


def test_no_lkj_for_independent_effects(small_screen):
    data, _ = small_screen
    f = "count ~ 1 + treatment + (1 + treatment || gene) + (1 + treatment || gene:sgrna)"
    model = sf.ScreenModel(f, data).pymc_model
    assert not any(name.startswith(("L_", "cor_")) for name in model.named_vars)


def test_gradient_finite_at_initial_point(small_screen):
    data, _ = small_screen
    for kwargs in (
        {},
        {"dispersion": "shared"},
        {"dispersion": "alpha ~ 1 + (1 | sgrna)"},
        {"pool": "offset"},
        {"pool": "covariate"},
        {"pool": None},
        {"parameterization": False},
        {"parameterization": True},
        {"family": "poisson"},
    ):
        model = sf.ScreenModel(FORMULA, data, **kwargs).pymc_model
        point = model.initial_point()
        assert np.isfinite(model.compile_logp(mode=FAST)(point)), kwargs
        assert np.all(np.isfinite(model.compile_dlogp(mode=FAST)(point))), kwargs


def test_pool_modes_build_their_components(small_screen):
    data, _ = small_screen
    joint = sf.ScreenModel(FORMULA, data, pool="joint").pymc_model
    offset = sf.ScreenModel(FORMULA, data, pool="offset").pymc_model
    cov = sf.ScreenModel(FORMULA, data, pool="covariate").pymc_model
    assert "pool_count" in joint.named_vars and "pool_Intercept" in joint.named_vars
    assert "pool_count" not in offset.named_vars and "b_pool" not in offset.named_vars
    assert "b_pool" in cov.named_vars and "pool_count" not in cov.named_vars


def test_linear_predictor_matches_a_per_observation_computation(grouped_screen):
    """The guide x sample layout gives the same log mean as a row-by-row sum."""
    data, _ = grouped_screen
    f = "count ~ 1 + treatment + (1 + treatment | group/gene/sgrna)"
    m = sf.ScreenModel(f, data, pool="offset", family="poisson")
    model = m.pymc_model
    rng = np.random.default_rng(0)
    values = {}
    for rv in model.free_RVs:
        value = model.rvs_to_values[rv]
        shape = model.initial_point()[value.name].shape
        values[value] = rng.normal(0, 0.3, size=shape)
    mu_var = model["count"].owner.inputs[2]  # Poisson(rng, size, mu)
    (mu,) = value_function(model, [mu_var])(*[values[v] for v in model.value_vars])
    # recompute by hand from the deterministics
    names = ["Intercept", "b", "r_group", "r_gene", "r_sgrna", "replicate_scale"]
    det = value_function(model, [model[n] for n in names])(*[values[v] for v in model.value_vars])
    intercept, b, r_group, r_gene, r_sgrna, scale = det
    spec = m.spec
    X = spec.mean.common.X
    # the default replicate scales multiply each treated replicate's treatment part
    treated = X.any(axis=1)
    assert scale.shape == (treated.sum(),) and np.ptp(scale) > 0
    scale = spec.replicate_scale.full(scale, len(spec.samples))
    assert np.all(scale[~treated] == 1.0)
    gene = data.gene_codes
    group = np.asarray(data.group_codes)[gene]
    r = r_group[group] + r_gene[gene] + r_sgrna
    eta = intercept + r[:, :1] + (X @ b + r[:, 1:] @ X.T) * scale
    log_mu = eta + spec.log_size_factors + spec.pool.log_abundance
    np.testing.assert_allclose(np.log(mu), log_mu, rtol=1e-10)


@pytest.mark.parametrize("centered", [False, True, ["treatment[treated]"], ["Intercept"]])
def test_every_parameterisation_gives_the_same_effect_distribution(small_screen, centered):
    """With sd and the LKJ factor held fixed, r has covariance diag(sd) R diag(sd)."""
    data, _ = small_screen
    m = sf.ScreenModel(
        "count ~ 1 + treatment + (1 + treatment | gene)",
        data,
        pool="offset",
        parameterization={"gene": centered},
    )
    model = m.pymc_model
    sd = np.array([0.7, 1.3])
    rho = -0.6
    chol = np.linalg.cholesky(np.array([[1.0, rho], [rho, 1.0]]))
    fixed = pm.do(model, {"sd_gene": sd, "L_gene": chol, "Intercept": 0.0, "b": np.zeros(1)})
    draws = pm.draw(fixed["r_gene"], draws=1500, random_seed=3, mode=FAST).reshape(-1, 2)
    cov = np.cov(draws.T)
    expected = np.diag(sd) @ np.array([[1.0, rho], [rho, 1.0]]) @ np.diag(sd)
    np.testing.assert_allclose(cov, expected, atol=0.05)
    np.testing.assert_allclose(draws.mean(axis=0), 0.0, atol=0.03)


def test_correlations_are_stored_as_pairs_in_brms_order():
    """cor_gene holds R[0,1], R[0,2], R[1,2] of the reported order, whatever is centred."""
    data, _ = sf.simulate_screen(n_genes=5, treatments=("drugA", "drugB"), random_seed=1)
    m = sf.ScreenModel(
        "count ~ 1 + treatment + (1 + treatment | gene)",
        data,
        pool="offset",
        parameterization={"gene": ["treatment[drugB]"]},  # sampled first: a permuted factor
    )
    model = m.pymc_model
    coefs = list(model.coords["gene_coef"])
    assert coefs == ["Intercept", "treatment[drugA]", "treatment[drugB]"]
    assert model.named_vars_to_dims["cor_gene"] == ("gene_cor",)
    assert list(model.coords["gene_cor"]) == [
        "Intercept,treatment[drugA]",
        "Intercept,treatment[drugB]",
        "treatment[drugA],treatment[drugB]",
    ]
    R = np.array([[1.0, 0.3, -0.5], [0.3, 1.0, 0.2], [-0.5, 0.2, 1.0]])
    perm = [2, 0, 1]  # centred components first
    chol = np.linalg.cholesky(R[perm][:, perm])
    fixed = pm.do(model, {"L_gene": chol})
    cor = pm.draw(fixed["cor_gene"], draws=1, random_seed=1, mode=FAST)
    np.testing.assert_allclose(cor, [R[0, 1], R[0, 2], R[1, 2]], atol=1e-12)
