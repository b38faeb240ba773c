"""replicate_scale="condition": which replicates get an effect scale, its prior, its model."""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytest
import xarray as xr

import screenformula as sf
from screenformula.errors import FormulaError
from screenformula.results.predictive import predictor_draws
from screenformula.spec.names import REPLICATE_SCALE, scale_names

FORMULA = "count ~ 1 + treatment + (1 + treatment | gene) + (1 + treatment | gene:sgrna)"


def test_each_treated_condition_with_replicates_gets_scales_the_reference_none():
    data, _ = sf.simulate_screen(
        n_genes=8, treatments=("A", "B"), n_replicates=2, n_pool_samples=1, random_seed=1
    )
    spec = sf.ScreenModel(FORMULA, data, replicate_scale="condition").spec
    groups = spec.replicate_scale.groups
    assert [g.label for g in groups] == ["treatment[A]", "treatment[B]"]
    assert [g.names for g in groups] == [("A_1", "A_2"), ("B_1", "B_2")]
    assert [[spec.samples[i] for i in g.samples] for g in groups] == [list(g.names) for g in groups]
    assert spec.prior("log_scale") == sf.Prior("ZeroSumNormal", sigma=0.5)
    # on by default; "none" turns them off; a condition with one sample has nothing to
    # share a scale with
    assert sf.ScreenModel(FORMULA, data).spec.replicate_scale.groups == groups
    assert not sf.ScreenModel(FORMULA, data, replicate_scale="none").spec.replicate_scale.active
    lone, _ = sf.simulate_screen(n_genes=8, n_replicates=1, random_seed=1)
    assert not sf.ScreenModel(
        FORMULA, lone, replicate_scale="condition"
    ).spec.replicate_scale.active


def test_bad_settings_are_one_clear_error():
    data, _ = sf.simulate_screen(n_genes=8, n_replicates=2, random_seed=1)
    with pytest.raises(FormulaError, match="unknown replicate_scale 'sample'"):
        sf.ScreenModel(FORMULA, data, replicate_scale="sample")
    with pytest.raises(FormulaError, match="log_scale takes a ZeroSumNormal"):
        sf.ScreenModel(
            FORMULA,
            data,
            replicate_scale="condition",
            priors={"log_scale": sf.Prior("Normal", mu=0, sigma=1)},
        )
    with pytest.raises(FormulaError, match="only log_scale does"):
        sf.ScreenModel(FORMULA, data, priors={"b": sf.Prior("ZeroSumNormal", sigma=1)})
    # the prior is the user's to set, and print(model) says what the scales are
    model = sf.ScreenModel(
        FORMULA,
        data,
        replicate_scale="condition",
        priors={"log_scale": sf.Prior("ZeroSumNormal", sigma=0.25)},
    )
    assert model.spec.prior("log_scale").args == {"sigma": 0.25}
    assert "Replicate scales:" in repr(model) and "treated_1, treated_2" in repr(model)


def _at_point(model: pm.Model, values: dict) -> xr.Dataset:
    """Every free and deterministic variable at one point, as a one-draw posterior."""
    named = [*model.free_RVs, *model.deterministics]
    with model:
        f = pm.compile(
            model.value_vars, model.replace_rvs_by_values(named), on_unused_input="ignore"
        )
    out = f(**values)
    return xr.Dataset(
        {
            v.name: xr.DataArray(np.asarray(x)[None, None], dims=("chain", "draw", *_dims(x, v)))
            for v, x in zip(named, out, strict=True)
        }
    )


def _dims(x: np.ndarray, v) -> tuple[str, ...]:  # noqa: ANN001
    return tuple(f"{v.name}_{i}" for i in range(np.ndim(x)))


def test_the_model_scales_each_replicates_treatment_part_as_the_results_layer_does():
    """log p(counts) of the PyMC model at a point = the NB density of the results layer's
    linear predictor at that point (`predictive.predictor_draws`), with scales != 1."""
    from scipy import stats

    data, _ = sf.simulate_screen(n_genes=6, n_replicates=3, random_seed=2)
    model = sf.ScreenModel(
        FORMULA, data, replicate_scale="condition", pool=None, dispersion="shared"
    )
    spec, pymc_model = model.spec, model.pymc_model
    name, _ = scale_names(spec.replicate_scale.groups[0].label)
    rng = np.random.default_rng(0)
    point = pymc_model.initial_point()
    values = {k: v + 0.3 * rng.standard_normal(np.shape(v)) for k, v in point.items()}
    post = _at_point(pymc_model, values)
    # stored for the scaled replicates only: a constant 1 would give R-hat 0 / 0
    factors = post[REPLICATE_SCALE].values[0, 0]
    assert spec.replicate_scale.names == ("treated_1", "treated_2", "treated_3")
    assert factors.shape == (3,) and np.ptp(factors) > 0.05
    assert np.log(factors).sum() == pytest.approx(0.0, abs=1e-12)  # geometric mean 1
    scale = spec.replicate_scale.full(factors[None], len(spec.samples))
    treated = np.array([s.startswith("treated") for s in spec.samples])
    assert np.all(scale[0, ~treated] == 1.0)

    eta = predictor_draws(post, spec.mean, np.array([0]), data.n_sgrnas, scale=scale)[0]
    mu = np.exp(eta + spec.log_size_factors[None, :])
    phi = float(post["phi"].values.ravel()[0])
    expected = stats.nbinom.logpmf(spec.counts, phi, phi / (phi + mu)).sum()
    with pymc_model:
        logp = pm.compile(pymc_model.value_vars, pymc_model.logp(vars=pymc_model.observed_RVs))
    assert float(logp(**values)) == pytest.approx(expected, rel=1e-9)
    # and the scale matters: without it the results layer's density is another
    eta_plain = predictor_draws(post, spec.mean, np.array([0]), data.n_sgrnas)[0]
    np.testing.assert_allclose(eta_plain[:, ~treated], eta[:, ~treated])
    assert np.abs(eta_plain[:, treated] - eta[:, treated]).max() > 0.01


@pytest.mark.slow
def test_a_fit_recovers_each_replicates_scale_and_the_typical_effect():
    """Simulated replicates selecting 2x and 0.5x as hard: NUTS finds both factors, and the
    gene effects are the geometric mean's (the simulation's truth)."""
    data, truth = sf.simulate_screen(
        n_genes=60,
        n_replicates=2,
        replicate_scale=(2.0, 0.5),
        gene_effects="normal",
        random_seed=4,
    )
    assert truth.params["replicate_scale"] == [2.0, 0.5]
    model = sf.ScreenModel(FORMULA, data, replicate_scale="condition")
    fit = model.fit("nuts", draws=300, tune=300, chains=2, random_seed=1, progress=False)
    draws = fit.posterior[REPLICATE_SCALE].sel(replicate=["treated_1", "treated_2"])
    low, high = draws.quantile([0.025, 0.975], ("chain", "draw")).values
    assert np.all(low < [2.0, 0.5]) and np.all(high > [2.0, 0.5])
    assert np.all(high / low < 1.5)  # and pinned down: 60 genes' worth of effects
    # brms's summary lists each scaled replicate's factor with the dispersion
    further = fit.summary().spec_pars
    estimates = further.loc[["replicate_scale[treated_1]", "replicate_scale[treated_2]"]]
    np.testing.assert_allclose(estimates["Estimate"], [2.0, 0.5], rtol=0.15)
    genes = fit.contrast(delta=0.5).genes
    true = truth.lfc_table(log2=True)["treated"].reindex(genes["gene"]).to_numpy()
    slope = np.polyfit(true, genes["lfc"].to_numpy(), 1)[0]
    assert 0.85 < slope < 1.1 and np.corrcoef(true, genes["lfc"])[0, 1] > 0.95
    # the posterior predictive uses the scales: each replicate's predicted depletion of
    # the most depleted genes follows its own factor
    assert (
        fit.posterior["log_scale__treatment[treated]"].sizes["replicate__treatment[treated]"] == 2
    )


@pytest.mark.slow
def test_the_two_stage_engine_fixes_the_scales_from_stage_one():
    """Stage 1 estimates the scales with the other globals; stage 2 and the posterior
    predictive use them."""
    data, truth = sf.simulate_screen(
        n_genes=40, n_replicates=2, replicate_scale=(2.0, 0.5), random_seed=3
    )
    model = sf.ScreenModel(FORMULA, data, replicate_scale="condition")
    fit = model.fit(
        "two-stage",
        draws=100,
        random_seed=1,
        progress=False,
        stage1_genes=30,
        stage1_draws=200,
        stage1_tune=200,
    )
    stage1 = fit.idata["stage1_posterior"].to_dataset()
    name, dim = scale_names("treatment[treated]")
    assert stage1[name].sizes[dim] == 2
    scale = fit.posterior[REPLICATE_SCALE]
    ratio = float((scale.sel(replicate="treated_1") / scale.sel(replicate="treated_2")).mean())
    assert 2.5 < ratio < 6.5  # truth: 4
    genes = fit.contrast(delta=0.5).genes
    true = truth.lfc_table(log2=True)["treated"].reindex(genes["gene"]).to_numpy()
    assert np.corrcoef(true, genes["lfc"])[0, 1] > 0.9
    # the expected counts of the posterior predictive follow each replicate's own factor:
    # treated_1's log ratios to the controls are about 4 times treated_2's
    mu = np.log(fit.posterior_epred(ndraws=20).mean("draw"))
    base = mu.sel(sample=["control_1", "control_2"]).mean("sample")
    first = (mu.sel(sample="treated_1") - base).values
    second = (mu.sel(sample="treated_2") - base).values
    assert 2.5 < np.polyfit(second, first, 1)[0] < 6.5
