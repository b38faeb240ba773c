"""Approximate inference: ``fit(method="advi")`` and its alias ``"approx"``."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from _screens import FORMULA

import screenformula as sf
from screenformula.errors import FitError
from screenformula.inference.approx import APPROX_NOTICE, VI_GROUP, ApproximateWarning
from screenformula.results.fit import ConvergenceWarning

pytestmark = pytest.mark.slow

COEF = "treatment[treated]"


@pytest.fixture(scope="module")
def advi_fit(small_screen):
    data, truth = small_screen
    model = sf.ScreenModel(FORMULA, data)
    with pytest.warns(ApproximateWarning) as record:
        fit = model.fit(method="advi", draws=300, random_seed=2, progress=False)
    return fit, truth, record


def gene_lfc(fit):
    post = fit.posterior
    return post["b"].sel(b_coef=COEF) + post["r_gene"].sel(gene_coef=COEF)


def test_advi_posterior_has_the_nuts_names_and_dims(advi_fit):
    fit, _, _ = advi_fit
    post = fit.posterior
    assert post.sizes["chain"] == 1 and post.sizes["draw"] == 300
    assert post["r_gene"].dims == ("chain", "draw", "gene", "gene_coef")
    assert post["r_sgrna"].dims == ("chain", "draw", "sgrna", "sgrna_coef")
    assert list(post["gene_coef"].values) == ["Intercept", COEF]
    assert post["cor_gene"].dims == ("chain", "draw", "gene_cor")
    assert post["sd_sgrna"].dims == ("chain", "draw", "sgrna_coef")
    for name in ("Intercept", "b", "sd_gene", "phi_trend_slope", "phi_pool", "pool_Intercept"):
        assert name in post and np.all(np.isfinite(post[name].values))
    assert np.all(post["sd_gene"].values > 0)
    # draws differ: a distribution, not a point
    assert float(post["r_gene"].std(("chain", "draw")).min()) > 0


def test_advi_fit_says_it_is_approximate(advi_fit):
    fit, _, record = advi_fit
    messages = [str(w.message) for w in record if issubclass(w.category, ApproximateWarning)]
    assert messages == [APPROX_NOTICE]
    assert issubclass(ApproximateWarning, UserWarning)
    assert fit.method == "advi" and fit.approximate
    assert "APPROXIMATE" in repr(fit).splitlines()[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        table = fit.diagnostics()
    assert any("approximate" in p for p in table.attrs["problems"])


def test_advi_records_its_optimisation(advi_fit):
    fit, _, _ = advi_fit
    stats = fit.options["advi"]
    assert {"iterations", "converged", "final_loss", "obj_n_mc", "learning_rate"} <= set(stats)
    loss = fit.idata[VI_GROUP]["loss"].values
    assert 0 < loss.size <= stats["iterations"] <= stats["max_iterations"]
    assert np.isfinite(stats["final_loss"])
    # the ELBO improved: late losses are below the first ones
    assert loss[-50:].mean() < loss[:50].mean()
    assert {"observed_data", "log_likelihood"} <= set(fit.idata.children)


def test_advi_gene_lfcs_track_the_truth(advi_fit):
    fit, truth, _ = advi_fit
    lfc = gene_lfc(fit).mean(("chain", "draw"))
    true = truth.genes.set_index("gene").loc[lfc["gene"].values, "lfc"].to_numpy()
    assert np.corrcoef(lfc.values, true)[0, 1] > 0.9


def test_advi_fit_saves_and_loads(advi_fit, tmp_path):
    fit, _, _ = advi_fit
    back = sf.load_fit(fit.save(tmp_path / "advi.nc"))
    assert back.method == "advi" and back.approximate
    np.testing.assert_allclose(back.posterior["r_gene"].values, fit.posterior["r_gene"].values)
    assert back.options["advi"]["iterations"] == fit.options["advi"]["iterations"]


def test_approx_alias_and_guide_level_draws_left_out(small_screen):
    data, truth = small_screen
    model = sf.ScreenModel(FORMULA, data)
    with pytest.warns(ApproximateWarning):
        fit = model.fit(
            method="approx", draws=100, random_seed=5, progress=False, store_sgrna=False
        )
    assert fit.method == "advi" and fit.approximate
    post = fit.posterior
    assert "r_gene" in post and "r_sgrna" not in post
    assert not [n for n in post.data_vars if n.startswith(("t_sgrna", "z_", "L_"))]
    assert "log_likelihood" not in fit.idata.children


def test_unknown_method_is_still_an_error(small_screen):
    data, _ = small_screen
    model = sf.ScreenModel(FORMULA, data)
    with pytest.raises(FitError, match="unknown method 'vb'.*nuts.*advi.*approx"):
        model.fit(method="vb")
