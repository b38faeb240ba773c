"""The fused negative-binomial Ops equal the PyTensor expression and PyMC's density."""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
import pytest
from _screens import FORMULA
from scipy import special

import screenformula as sf
from screenformula.backend import likelihood
from screenformula.backend.likelihood import nb_logp_elementwise
from screenformula.backend.nb_kernel import (
    NegBinLogp,
    NegBinLogpGrad,
    NegBinLogpSum,
    digamma,
    lgamma,
    lgamma_digamma,
    nb_logp,
)
from screenformula.inference.log_likelihood import add_log_likelihood

MODES = ["NUMBA", "FAST_COMPILE"]  # numba kernels; Python `perform`
PHI_SHAPES = [(), (40, 1), (40, 6), (1, 6)]


@pytest.fixture(scope="module")
def nb_data():
    rng = np.random.default_rng(1)
    counts = rng.negative_binomial(5, 0.02, size=(40, 6))
    counts[0, :] = 0  # zeros and a guide lost entirely
    counts[1, :3] = [1, 2, 3]
    log_mu = np.log(counts + 1.0) + rng.normal(0, 0.2, counts.shape)
    log_mu[2, 0] = 40.0  # far beyond phi: softplus and sigmoid in their tails
    log_mu[3, 0] = -30.0
    return counts, log_mu, rng


def _phi(rng, shape):
    return np.array(7.3) if shape == () else rng.gamma(1.5, 3, size=shape) + 0.05


def test_special_functions_match_scipy():
    x = np.concatenate([np.geomspace(1e-6, 1e8, 3000), np.linspace(0.01, 30, 3000)])
    scale = np.maximum(1.0, np.abs(special.digamma(x)))
    got = np.array([digamma(v) for v in x])
    np.testing.assert_array_less(np.abs(got - special.digamma(x)) / scale, 1e-12)
    neg = -np.linspace(0.05, 5.5, 200) + 1e-3
    np.testing.assert_allclose([digamma(v) for v in neg], special.digamma(neg), rtol=1e-11)
    assert np.isnan(digamma(0.0)) and np.isnan(digamma(-3.0))
    ref = special.gammaln(x)
    scale = np.maximum(1.0, np.abs(ref))
    np.testing.assert_array_less(np.abs([lgamma(v) for v in x] - ref) / scale, 1e-13)
    both = np.array([lgamma_digamma(v) for v in x])
    np.testing.assert_array_less(np.abs(both[:, 0] - ref) / scale, 1e-13)
    scale = np.maximum(1.0, np.abs(special.digamma(x)))
    np.testing.assert_array_less(np.abs(both[:, 1] - special.digamma(x)) / scale, 1e-12)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("phi_shape", PHI_SHAPES)
def test_value_equals_expression_and_pymc(nb_data, phi_shape, mode):
    counts, log_mu_value, rng = nb_data
    phi_value = _phi(rng, phi_shape)
    log_mu = pt.tensor("log_mu", shape=counts.shape)
    phi = pt.tensor("phi", shape=phi_value.shape)
    ours = nb_logp(counts, log_mu, phi)
    expr = nb_logp_elementwise(counts, log_mu, phi)
    ref = pm.logp(pm.NegativeBinomial.dist(mu=pt.exp(log_mu), alpha=phi), counts)
    fn = pytensor.function([log_mu, phi], [ours, expr, ref, ours.sum()], mode=mode)
    got, want, want_pymc, total = fn(log_mu_value, phi_value)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)
    finite = np.abs(log_mu_value) < 20  # PyMC's exp/log form loses precision in the tails
    np.testing.assert_allclose(got[finite], want_pymc[finite], rtol=0, atol=1e-10)
    np.testing.assert_allclose(total, want.sum(), rtol=1e-13)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("phi_shape", PHI_SHAPES)
def test_gradients_equal_autodiff_of_expression(nb_data, phi_shape, mode):
    counts, log_mu_value, rng = nb_data
    phi_value = _phi(rng, phi_shape)
    weights = rng.normal(size=counts.shape)
    log_mu = pt.tensor("log_mu", shape=counts.shape)
    phi = pt.tensor("phi", shape=phi_value.shape)
    outs = []
    for density in (nb_logp, nb_logp_elementwise):
        d = density(counts, log_mu, phi)
        # summed: the fused NegBinLogpSum path; weighted: the NegBinLogpGrad path
        outs += [*pt.grad(d.sum(), [log_mu, phi]), *pt.grad((weights * d).sum(), [log_mu, phi])]
    got = pytensor.function([log_mu, phi], outs, mode=mode)(log_mu_value, phi_value)
    for a, b in zip(got[:4], got[4:], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("phi_shape", [(), (5, 1), (5, 3)])
def test_verify_grad_finite_differences(phi_shape):
    rng = np.random.default_rng(3)
    counts = rng.negative_binomial(4, 0.1, size=(5, 3))
    log_mu_value = np.log(counts + 1.0) + rng.normal(0, 0.3, counts.shape)
    phi_value = np.atleast_2d(rng.gamma(2, 2, size=phi_shape or (1, 1)) + 0.5)
    if phi_shape == ():
        phi_value = phi_value.reshape(1, 1)
    pytensor.gradient.verify_grad(
        lambda m, p: nb_logp(counts, m, p), [log_mu_value, phi_value], rng=rng, abs_tol=1e-6
    )
    pytensor.gradient.verify_grad(
        lambda m, p: nb_logp(counts, m, p).sum(), [log_mu_value, phi_value], rng=rng
    )


def _ops(fn):
    return [type(node.op) for node in fn.maker.fgraph.apply_nodes]


def test_rewrites_leave_one_fused_loop(nb_data):
    counts, log_mu_value, rng = nb_data
    log_mu = pt.tensor("log_mu", shape=counts.shape)
    phi = pt.tensor("phi", shape=(None, 1))
    total = nb_logp(counts, log_mu, phi).sum()
    grads = pt.grad(total, [log_mu, phi])
    both = pytensor.function([log_mu, phi], [total, *grads], mode="NUMBA")
    nodes = [n for n in both.maker.fgraph.apply_nodes if isinstance(n.op, NegBinLogpSum)]
    assert [n.op.mode for n in nodes] == ["both"]
    assert NegBinLogp not in _ops(both) and NegBinLogpGrad not in _ops(both)
    only_logp = pytensor.function([log_mu, phi], total, mode="NUMBA")
    assert NegBinLogpSum("logp") in [n.op for n in only_logp.maker.fgraph.apply_nodes]
    only_grad = pytensor.function([log_mu, phi], grads, mode="NUMBA")
    assert NegBinLogpSum("grad") in [n.op for n in only_grad.maker.fgraph.apply_nodes]
    phi_value = _phi(rng, (40, 1))
    a, b = both(log_mu_value, phi_value), only_grad(log_mu_value, phi_value)
    np.testing.assert_allclose(a[0], only_logp(log_mu_value, phi_value), rtol=1e-12)
    np.testing.assert_allclose(a[1], b[0], rtol=1e-12)
    np.testing.assert_allclose(a[2], b[1], rtol=1e-12)


def test_lower_dims_and_bad_kernel_name(monkeypatch):
    counts = np.array([3, 0, 12])
    log_mu = pt.vector("log_mu")
    values = {log_mu: np.log([2.0, 1.0, 9.0])}
    np.testing.assert_allclose(
        nb_logp(counts, log_mu, 2.5).eval(values),
        nb_logp_elementwise(counts, log_mu, 2.5).eval(values),
        atol=1e-12,
    )
    assert nb_logp(4, 1.0, 2.0).ndim == 0
    monkeypatch.setenv("SCREENFORMULA_NB_KERNEL", "nope")
    with pytest.raises(ValueError, match="SCREENFORMULA_NB_KERNEL"):
        likelihood.nb_kernel()


@pytest.fixture(scope="module")
def both_models(small_screen):
    """The same screen built with the fused kernel and with the expression."""
    data, _ = small_screen
    models = {}
    for kernel in likelihood.NB_KERNELS:
        mp = pytest.MonkeyPatch()
        mp.setattr(likelihood, "DEFAULT_NB_KERNEL", kernel)
        mp.delenv("SCREENFORMULA_NB_KERNEL", raising=False)
        models[kernel] = sf.ScreenModel(FORMULA, data).pymc_model
        mp.undo()
    return models


def test_models_use_the_selected_kernel(both_models):
    def ops(model):
        return {type(v.owner.op) for v in pytensor.graph.ancestors([model.logp()]) if v.owner}

    assert NegBinLogp in ops(both_models["fused"])
    assert NegBinLogp not in ops(both_models["expression"])


def test_nutpie_logp_and_gradient_unchanged(both_models):
    """nutpie's numba-compiled density of the fused kernel equals PyMC's of the expression.

    The expression side is evaluated by PyTensor's Python implementations
    (``FAST_COMPILE``): the reference needs no speed, and a second numba compile of a
    whole model costs a minute on a cold cache and checks nothing more.
    """
    nutpie = pytest.importorskip("nutpie")
    compiled = nutpie.compile_pymc_model(both_models["fused"])
    x = np.asarray(compiled.initial_point_func(0), dtype=float)
    x = x + np.random.default_rng(2).normal(0, 0.1, x.shape)
    logp_a, grad_a = compiled.logp_func(x)

    model = both_models["expression"]
    point, start = {}, 0
    for rv in model.free_RVs:  # nutpie's flat layout: the free variables in order
        value = model.rvs_to_values[rv]
        shape = compiled.shapes[value.name]
        size = int(np.prod(shape))
        point[value.name] = x[start : start + size].reshape(shape)
        start += size
    assert start == x.size
    logp_b = model.compile_logp(mode="FAST_COMPILE")(point)
    grad_b = model.compile_dlogp(mode="FAST_COMPILE")(point)
    np.testing.assert_allclose(logp_a, logp_b, rtol=1e-12)
    np.testing.assert_allclose(grad_a, grad_b, rtol=1e-8, atol=1e-8 * np.abs(grad_b).max())


def test_pointwise_log_likelihood_and_predictive(both_models):
    import xarray as xr

    model = both_models["fused"]
    with model:
        prior = pm.sample_prior_predictive(draws=3, random_seed=1)
    assert np.all(prior["prior_predictive"]["count"].values >= 0)
    # prior draws stand in for a posterior: pointwise log-likelihood of both builds
    out = {}
    for kernel, m in both_models.items():
        tree = xr.DataTree.from_dict({"posterior": prior["prior"].to_dataset()})
        add_log_likelihood(tree, m, ["count", "pool_count"])
        out[kernel] = tree["log_likelihood"]
    for name in ("count", "pool_count"):
        a, b = out["fused"][name].values, out["expression"][name].values
        assert a.shape == (1, 3, *model.rvs_to_values[model[name]].data.shape)
        assert np.all(np.isfinite(a))
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-9)


def test_jax_mode_rewrites_back_to_the_expression(nb_data):
    """JAX (numpyro) has no kernel: its rewrites put the expression back, same values."""
    from pytensor.compile.mode import JAX, Mode

    counts, log_mu_value, rng = nb_data
    log_mu = pt.tensor("log_mu", shape=counts.shape)
    phi = pt.tensor("phi", shape=(None, 1))
    d = nb_logp(counts, log_mu, phi)
    weights = rng.normal(size=counts.shape)
    outs = [d, d.sum(), *pt.grad(d.sum(), [log_mu, phi])]
    outs += pt.grad((weights * d).sum(), [log_mu, phi])
    jax_like = pytensor.function(
        [log_mu, phi], outs, mode=Mode(linker="py", optimizer=JAX.optimizer)
    )
    ops = {type(n.op) for n in jax_like.maker.fgraph.apply_nodes}
    assert not ops & {NegBinLogp, NegBinLogpGrad, NegBinLogpSum}
    fused = pytensor.function([log_mu, phi], outs, mode="NUMBA")
    phi_value = _phi(rng, (40, 1))
    for a, b in zip(jax_like(log_mu_value, phi_value), fused(log_mu_value, phi_value), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)
