"""Fitting: tiny NUTS runs, the fit object, save/load, diagnostics."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import xarray as xr
from _screens import FORMULA

import screenformula as sf
from screenformula.errors import FitError
from screenformula.results.fit import ConvergenceWarning
from screenformula.spec.settings import SETTINGS_VERSION

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_fit(small_screen):
    data, truth = small_screen
    model = sf.ScreenModel(FORMULA, data)
    fit = model.fit(draws=200, tune=300, chains=2, random_seed=4, progress=False)
    return fit, truth


def test_fit_holds_posterior_stats_observed_and_log_likelihood(tiny_fit):
    fit, _ = tiny_fit
    assert {"posterior", "sample_stats", "observed_data", "log_likelihood"} <= set(
        fit.idata.children
    )
    post = fit.posterior
    assert post.sizes["chain"] == 2 and post.sizes["draw"] == 200
    assert post["r_gene"].dims == ("chain", "draw", "gene", "gene_coef")
    # correlations as brms stores them, the pairs only; no Cholesky factor: no entry of
    # the posterior is constant across draws (az.summary would divide 0 by 0)
    assert post["cor_gene"].dims == ("chain", "draw", "gene_cor")
    assert list(post["gene_cor"].values) == ["Intercept,treatment[treated]"]
    assert not any(name.startswith("L_") for name in post.data_vars)
    np.testing.assert_array_equal(fit.idata["observed_data"]["count"].values, fit.model.spec.counts)
    loglik = fit.idata["log_likelihood"]
    assert loglik["count"].shape == (2, 200, 120, 6)
    assert loglik["pool_count"].shape == (2, 200, 120, 1)
    assert np.all(np.isfinite(loglik["count"].values)) and np.all(loglik["count"].values <= 0)
    assert not fit.approximate and "nuts" in repr(fit)


def test_gene_lfcs_track_the_truth(tiny_fit):
    fit, truth = tiny_fit
    post = fit.posterior
    coef = "treatment[treated]"
    lfc = (post["b"].sel(b_coef=coef) + post["r_gene"].sel(gene_coef=coef)).mean(("chain", "draw"))
    true = truth.genes.set_index("gene").loc[lfc["gene"].values, "lfc"].to_numpy()
    assert np.corrcoef(lfc.values, true)[0, 1] > 0.9


def test_diagnostics_table_and_warning(tiny_fit):
    fit, _ = tiny_fit
    table = fit.diagnostics(warn=False)
    assert {"rhat_max", "ess_bulk_min", "ess_tail_min", "ok"} <= set(table.columns)
    assert "r_gene" in table.index and "Intercept" in table.index
    assert isinstance(table.attrs["divergences"], int)
    # 400 draws cannot reach ESS 10,000: the check must say so loudly
    with pytest.warns(ConvergenceWarning, match="ESS < 10000"):
        fit.diagnostics(ess_min=10_000)


def test_save_and_load_round_trip(tiny_fit, tmp_path):
    fit, _ = tiny_fit
    path = fit.save(tmp_path / "fit.nc")
    with pytest.raises(FitError, match="exists; pass overwrite=True"):
        fit.save(path)
    loaded = sf.load_fit(path)
    np.testing.assert_array_equal(loaded.posterior["r_gene"].values, fit.posterior["r_gene"].values)
    assert loaded.model.settings["formula"] == FORMULA
    assert loaded.model.spec.pool.mode == "joint"
    np.testing.assert_array_equal(loaded.model.data.counts, fit.model.data.counts)
    np.testing.assert_allclose(loaded.model.data.size_factors, fit.model.data.size_factors)
    assert list(loaded.model.data.samples.columns) == list(fit.model.data.samples.columns)
    assert loaded.options["draws"] == 200
    assert "pymc" in loaded.options["versions_at_fit"]
    assert repr(loaded.model) == repr(fit.model)
    assert not list(tmp_path.glob(".*tmp*"))
    # a fit saved by a newer screenformula is refused in one line, not misread
    tree = xr.open_datatree(path).load()
    meta = json.loads(tree.attrs["screenformula"])
    meta["settings"]["version"] = SETTINGS_VERSION + 1
    tree.attrs["screenformula"] = json.dumps(meta)
    tree.to_netcdf(tmp_path / "newer.nc")
    with pytest.raises(FitError, match="newer.nc: saved by a newer screenformula"):
        sf.load_fit(tmp_path / "newer.nc")


def test_load_errors(tmp_path):
    with pytest.raises(FitError, match="no such file"):
        sf.load_fit(tmp_path / "missing.nc")
    bad = tmp_path / "bad.nc"
    bad.write_text("not a netcdf file")
    with pytest.raises(FitError, match="cannot read as a saved fit"):
        sf.load_fit(bad)


def test_pymc_engine_and_prior_predictive(small_screen):
    data, _ = small_screen
    model = sf.ScreenModel("count ~ 1 + treatment + (1 | gene)", data, dispersion="shared")
    prior = model.sample_prior_predictive(draws=50, random_seed=1)
    counts = prior["prior_predictive"]["count"].values
    assert counts.shape[-2:] == (data.n_sgrnas, data.n_samples)
    assert np.all(counts >= 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = model.fit(draws=100, tune=100, chains=1, engine="pymc", random_seed=2, progress=False)
    assert fit.posterior.sizes["draw"] == 100
    assert fit.options["engine"] == "pymc"


def test_unknown_method_and_engine(small_screen):
    data, _ = small_screen
    model = sf.ScreenModel("count ~ 1 + treatment", data, pool="offset")
    with pytest.raises(FitError, match="unknown method 'mcmc'"):
        model.fit(method="mcmc")
    with pytest.raises(FitError, match="unknown NUTS engine 'stan'"):
        model.fit(engine="stan", draws=10, tune=10, chains=1, progress=False)
