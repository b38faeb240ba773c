"""brms's post-processing vocabulary on `ScreenFit` (issue 16), against the posterior.

No sampling. Each method is checked against a direct computation on the draws of a
hand-built posterior (`_contrast_fakes.fake_fit`: every value known) or of the saved NUTS
fit ``tests/data/fit_format1_ed30f57.nc`` (whose pointwise log-likelihood PyMC computed,
so the NumPy log-likelihood behind ``loo`` and ``posterior_epred`` is checked against it).
"""

from __future__ import annotations

from pathlib import Path

import arviz as az
import numpy as np
import pytest
import xarray as xr
from _contrast_fakes import fake_fit, small_screen
from matplotlib.figure import Figure

import screenformula as sf
from screenformula.errors import FitError
from screenformula.results import predictive
from screenformula.results.draws import LOG2E

DATA = Path(__file__).resolve().parents[1] / "data"
FORMULA = "count ~ 1 + treatment + (1 + treatment | gene) + (1 | gene:sgrna)"
N_DRAWS = 400


def _flat(fit, name: str) -> np.ndarray:
    da = fit.posterior[name]
    return da.values.reshape(-1, *da.shape[2:])


@pytest.fixture(scope="module")
def screen():
    return small_screen()


def _fake(screen, shift: float = 0.0, seed: int = 0):
    """A fit of FORMULA whose draws sit near the data's scale (a finite, usable LOO)."""
    rng = np.random.default_rng(100 + seed)
    centre = np.log(np.median(screen.counts / screen.size_factors.to_numpy()[None]))
    values = {
        "Intercept": rng.normal(centre + shift, 0.05, N_DRAWS),
        "phi": rng.normal(10.0, 0.5, N_DRAWS),
    }
    fit, _ = fake_fit(
        screen, FORMULA, values, n_draws=N_DRAWS, dispersion="shared", pool=None, seed=seed
    )
    return fit


@pytest.fixture(scope="module")
def fit(screen):
    return _fake(screen)


@pytest.fixture(scope="module")
def saved():
    return sf.load_fit(DATA / "fit_format1_ed30f57.nc")


# ------------------------------------------------------------------ summaries
def test_fixef_is_the_posterior_mean_sd_and_quantiles_of_each_coefficient(fit):
    table = fit.fixef()
    assert list(table.index) == ["Intercept", "treatmentdrugA", "treatmentdrugB"]
    assert list(table.columns) == ["Estimate", "Est.Error", "Q2.5", "Q97.5"]
    b = _flat(fit, "b")
    coefs = list(fit.posterior["b_coef"].values)
    drug_a = b[:, coefs.index("treatment[drugA]")]
    row = table.loc["treatmentdrugA"]
    assert row["Estimate"] == pytest.approx(drug_a.mean())
    assert row["Est.Error"] == pytest.approx(drug_a.std(ddof=1))
    assert row["Q2.5"] == pytest.approx(np.quantile(drug_a, 0.025))
    assert table.loc["Intercept", "Estimate"] == pytest.approx(_flat(fit, "Intercept").mean())
    draws = fit.fixef(summary=False)
    assert draws.shape == (N_DRAWS, 3)
    np.testing.assert_allclose(draws["treatmentdrugA"], drug_a)


def test_summary_tables_match_the_draws_and_print_like_brms(fit):
    s = fit.summary()
    cols = ["Estimate", "Est.Error", "l-95% CI", "u-95% CI", "Rhat", "Bulk_ESS", "Tail_ESS"]
    assert list(s.fixed.columns) == cols
    np.testing.assert_allclose(s.fixed["Estimate"], fit.fixef()["Estimate"])
    gene = s.random["gene"]
    sd = _flat(fit, "sd_gene")
    assert list(gene.index[:3]) == ["sd(Intercept)", "sd(treatmentdrugA)", "sd(treatmentdrugB)"]
    np.testing.assert_allclose(gene["Estimate"].iloc[:3], sd.mean(axis=0))
    assert gene.loc["sd(Intercept)", "u-95% CI"] == pytest.approx(np.quantile(sd[:, 0], 0.975))
    # bulk ESS as arviz computes it on the same draws
    ess = az.ess(fit.idata, var_names=["sd_gene"], method="bulk")["sd_gene"].values
    np.testing.assert_allclose(gene["Bulk_ESS"].iloc[:3], np.floor(ess))
    assert s.spec_pars.loc["phi", "Estimate"] == pytest.approx(_flat(fit, "phi").mean())
    assert set(s.random) == {"gene", "gene:sgrna"}
    text = repr(s)
    for line in (
        " Family: negbinomial",
        f"Formula: {FORMULA}",
        "Multilevel Hyperparameters:",
        "~gene (Number of levels: 6)",
        "~gene:sgrna (Number of levels: 18)",
        "Regression Coefficients:",
        "Further Distributional Parameters:",
    ):
        assert line in text, line
    assert "Estimate Est.Error l-95% CI u-95% CI Rhat Bulk_ESS Tail_ESS" in text
    assert "section" in s.to_frame().columns


def test_summary_lists_correlations_as_brms_names_them(saved):
    gene = saved.summary().random["gene"]
    cor = saved.posterior["cor_gene"].values.reshape(-1, 2, 2)[:, 1, 0]
    row = gene.loc["cor(Intercept,treatmenttreated)"]
    assert row["Estimate"] == pytest.approx(cor.mean())
    assert np.isnan(row["Rhat"])  # one chain: no R-hat, as fit.diagnostics()


def test_ranef_gives_each_levels_deviation_from_the_population_effect(fit):
    tables = fit.ranef()
    assert set(tables) == {"gene", "gene:sgrna"}
    gene = tables["gene"]
    assert gene.index.name == "gene" and list(gene.index) == list(fit.posterior["gene"].values)
    r = fit.posterior["r_gene"].sel(gene_coef="treatment[drugA]")
    want = r.mean(("chain", "draw")).values
    np.testing.assert_allclose(gene["treatmentdrugA"]["Estimate"], want)
    np.testing.assert_allclose(
        gene["treatmentdrugA"]["Q97.5"], np.quantile(r.values[0], 0.975, axis=0)
    )
    draws = fit.ranef(groups=["gene"], summary=False)["gene"]
    assert draws.dims == ("chain", "draw", "level", "coef")
    with pytest.raises(FitError, match="no group-level term over 'batch'"):
        fit.ranef(groups=["batch"])


def test_varcorr_gives_sds_and_correlations(saved):
    vc = saved.VarCorr()
    assert set(vc) == {"gene", "gene:sgrna"}
    sd = _flat(saved, "sd_sgrna")
    np.testing.assert_allclose(vc["gene:sgrna"]["sd"]["Estimate"], sd.mean(axis=0))
    cor = _flat(saved, "cor_gene")[:, 1, 0]
    assert vc["gene"]["cor"].loc[("Intercept", "treatmenttreated"), "Estimate"] == pytest.approx(
        cor.mean()
    )


def test_print_fit_shows_the_estimates_and_keeps_the_convergence_lines(saved):
    text = repr(saved)
    assert "cannot be trusted" in text.split("Formula:")[0]
    assert "Regression Coefficients:" in text and "treatmenttreated" in text
    assert text.index("Regression Coefficients:") > text.index("Priors:")


# ---------------------------------------------------------------- predictions
def test_log_lik_matches_the_log_likelihood_pymc_stored(saved):
    stored = saved.idata["log_likelihood"].to_dataset()
    ours = saved.log_lik()
    for name in ("count", "pool_count"):
        np.testing.assert_allclose(ours[name].values, stored[name].values, atol=1e-8)
    assert ours["count"].dims == stored["count"].dims


def test_posterior_epred_is_exp_of_the_linear_predictor(fit, screen):
    epred = fit.posterior_epred(ndraws=40)
    assert epred.dims == ("draw", "sgrna", "sample") and epred.sizes["draw"] == 40
    spec = fit.model.spec
    s, j = 7, 4  # one guide, one screen sample, rebuilt by hand
    gene = screen.gene_codes[s]
    x = spec.mean.common.X[j]
    z = spec.term("gene").Z[j]
    idx = epred["draw"].values
    log_mu = (
        _flat(fit, "Intercept")[idx]
        + _flat(fit, "b")[idx] @ x
        + _flat(fit, "r_gene")[idx, gene] @ z
        + _flat(fit, "r_sgrna")[idx, s, 0]
        + spec.log_size_factors[j]
    )
    np.testing.assert_allclose(epred.values[:, s, j], np.exp(log_mu))


def test_predictions_keep_memory_bounded_by_default(fit, monkeypatch):
    n_obs = fit.model.spec.counts.size
    monkeypatch.setattr(predictive, "MAX_CELLS", 25 * n_obs)
    assert fit.posterior_epred().sizes["draw"] == 25
    assert fit.posterior_epred(draw_ids=[3, 5]).sizes["draw"] == 2
    with pytest.raises(FitError, match="ndraws must be between 1 and 400"):
        fit.posterior_epred(ndraws=401)


def test_posterior_predict_draws_counts_around_epred(fit):
    one = fit.posterior_predict(ndraws=200, seed=3)
    assert one.dtype == np.int64 and (one.values >= 0).all()
    np.testing.assert_array_equal(one.values, fit.posterior_predict(ndraws=200, seed=3).values)
    epred = fit.posterior_epred(ndraws=200)
    ratio = one.values.sum() / epred.values.sum()
    assert ratio == pytest.approx(1.0, rel=0.05)


def test_pp_check_overlays_replicates_on_the_observed_counts(fit):
    figure = fit.pp_check(ndraws=5, seed=0)
    assert isinstance(figure, Figure)
    assert len(figure.axes[0].lines) == 6  # 5 replicated data sets + the observed


# ----------------------------------------------------------------------- LOO
# the hand-built draws are not a posterior of the data: Pareto k is high, and said so
PARETO_WARNING = pytest.mark.filterwarnings("ignore:Estimated shape parameter of Pareto")


@PARETO_WARNING
def test_loo_is_arviz_loo_on_the_posterior_with_its_log_likelihood(fit):
    ours = fit.loo()
    tree = fit.idata.copy()
    tree["log_likelihood"] = xr.DataTree(fit.log_lik())
    want = az.loo(tree, var_name="count")
    assert ours.elpd == pytest.approx(want.elpd)
    assert ours.se == pytest.approx(want.se)
    assert ours.n_data_points == fit.model.spec.counts.size


@PARETO_WARNING
def test_loo_compare_ranks_fits_by_elpd(fit, screen):
    worse = _fake(screen, shift=0.7, seed=1)
    table = fit.loo_compare(worse, names=["near", "off"])
    elpd = {"near": fit.loo().elpd, "off": worse.loo().elpd}
    best = max(elpd, key=elpd.get)
    assert table.index[0] == best and table.loc[best, "elpd_diff"] == 0
    other = min(elpd, key=elpd.get)
    assert table.loc[other, "elpd_diff"] == pytest.approx(elpd[other] - elpd[best])
    assert "se_diff" in table.columns


# ---------------------------------------------------------------- hypotheses
def test_hypothesis_summarises_the_draws_of_left_minus_right(fit):
    table = fit.hypothesis(["treatmentdrugA - treatmentdrugB < 0", "treatment[drugA] = 0"])
    assert list(table.columns) == [
        "Hypothesis",
        "Estimate",
        "Est.Error",
        "CI.Lower",
        "CI.Upper",
        "Evid.Ratio",
        "Post.Prob",
        "Star",
    ]
    draws = fit.fixef(summary=False)
    diff = (draws["treatmentdrugA"] - draws["treatmentdrugB"]).to_numpy()
    row = table.iloc[0]
    assert row["Hypothesis"] == "(treatmentdrugA-treatmentdrugB) < 0"
    assert row["Estimate"] == pytest.approx(diff.mean())
    assert row["Post.Prob"] == pytest.approx(np.mean(diff < 0))
    p = np.mean(diff < 0)
    assert row["Evid.Ratio"] == pytest.approx(p / (1 - p))
    assert row["CI.Lower"] == pytest.approx(np.quantile(diff, 0.05))  # one-sided: 90%
    assert row["Star"] == ("*" if p > 0.95 else "")
    point = table.iloc[1]
    a = draws["treatmentdrugA"].to_numpy()
    assert point["CI.Upper"] == pytest.approx(np.quantile(a, 0.975))
    assert np.isnan(point["Post.Prob"]) and np.isnan(point["Evid.Ratio"])


def test_hypothesis_per_gene_uses_population_plus_gene_deviation(fit):
    table = fit.hypothesis("treatmentdrugA > 0.1", group="gene", scope="coef")
    genes = list(fit.posterior["gene"].values)
    assert list(table["Group"]) == genes
    b = fit.fixef(summary=False)["treatmentdrugA"].to_numpy()
    r = fit.posterior["r_gene"].sel(gene_coef="treatment[drugA]").values[0]
    coef = b[:, None] + r
    np.testing.assert_allclose(table["Estimate"], coef.mean(axis=0) - 0.1)
    np.testing.assert_allclose(table["Post.Prob"], np.mean(coef > 0.1, axis=0))
    ranef = fit.hypothesis("treatmentdrugA > 0", group="gene", scope="ranef")
    np.testing.assert_allclose(ranef["Post.Prob"], np.mean(r > 0, axis=0))


def test_hypothesis_errors_name_what_to_write(fit):
    with pytest.raises(FitError, match="'treatmentdrugC' in hypothesis .* not a parameter"):
        fit.hypothesis("treatmentdrugC < 0")
    with pytest.raises(FitError, match="must be of the form"):
        fit.hypothesis("treatmentdrugA")
    with pytest.raises(FitError, match="cannot read"):
        fit.hypothesis("__import__('os') < 0")
    with pytest.raises(FitError, match="needs group="):
        fit.hypothesis("treatmentdrugA < 0", scope="coef")


# -------------------------------------------------------- conditional effects
def test_conditional_effects_are_the_population_predictor_per_level(fit):
    ce = fit.conditional_effects()
    table = ce["treatment"]
    assert list(table["effect1__"]) == ["control", "drugA", "drugB"]
    draws = fit.fixef(summary=False)
    depth = np.mean(fit.model.spec.log_size_factors)
    drug_a = np.exp(draws["Intercept"] + draws["treatmentdrugA"] + depth)
    assert table.loc[1, "estimate__"] == pytest.approx(np.median(drug_a))
    assert table.loc[1, "lower__"] == pytest.approx(np.quantile(drug_a, 0.025))
    lfc = fit.conditional_effects("treatment", scale="lfc")["treatment"]
    assert lfc.loc[0, "estimate__"] == 0
    assert lfc.loc[2, "estimate__"] == pytest.approx(np.median(draws["treatmentdrugB"] * LOG2E))
    assert isinstance(ce.plot(), Figure)
    with pytest.raises(FitError, match="not a population-level predictor"):
        fit.conditional_effects("gene")


# --------------------------------------------------------------------- ArviZ
def test_arviz_functions_given_a_fit_say_to_pass_fit_idata(saved):
    for function in (az.summary, az.ess, az.plot_trace):
        with pytest.raises(TypeError, match=r"pass fit\.idata"):
            function(saved)
    assert len(az.summary(saved.idata, var_names=["Intercept"])) == 1  # what works


def test_correlations_read_alike_as_pairs_or_as_a_saved_matrix(saved):
    """A fit stores ``cor_<term>`` as pairs (``<term>_cor``); older saved fits, a matrix."""
    from screenformula.results.draws import correlation_matrices
    from screenformula.results.pool import guide_correlation

    post = saved.posterior
    new = post.drop_vars(["cor_gene", "cor_sgrna", "L_gene", "L_sgrna"])
    for term in ("gene", "sgrna"):
        pair = post[f"cor_{term}"].isel({f"{term}_coef": 0, f"{term}_coef_": 1}, drop=True)
        new[f"cor_{term}"] = pair.expand_dims({f"{term}_cor": ["Intercept,x"]}, axis=-1)
    idata = saved.idata.copy()
    idata["posterior"] = xr.DataTree(new)
    pairs = sf.ScreenFit(saved.model, idata, saved.method, saved.options)
    assert pairs.summary().random["gene"].equals(saved.summary().random["gene"])
    for group in ("gene", "gene:sgrna"):
        assert pairs.VarCorr()[group]["cor"].equals(saved.VarCorr()[group]["cor"])
    assert guide_correlation(pairs).equals(guide_correlation(saved))
    for term in saved.model.spec.groups:  # the matrices expected_counts' guide variance uses
        np.testing.assert_allclose(  # the saved diagonal is 1 up to rounding
            correlation_matrices(pairs.posterior, term), _flat(saved, term.names.cor), atol=1e-12
        )
