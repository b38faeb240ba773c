"""The fast negative-binomial log-density equals PyMC's NegativeBinomial."""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import pytest

from screenformula.backend.likelihood import nb_logp_elementwise


@pytest.mark.parametrize("shared", [True, False])
def test_same_density_and_gradient_as_pymc(shared):
    rng = np.random.default_rng(1)
    counts = rng.negative_binomial(5, 0.02, size=(40, 6))
    counts[0, :] = 0  # zeros and a guide lost entirely
    log_mu_value = np.log(counts + 1.0) + rng.normal(0, 0.2, counts.shape)
    phi_value = np.array(7.3) if shared else rng.gamma(3, 3, size=(40, 1))
    log_mu = pt.tensor("log_mu", shape=counts.shape)
    phi = pt.tensor("phi", shape=phi_value.shape)
    ours = nb_logp_elementwise(counts, log_mu, phi)
    ref = pm.logp(pm.NegativeBinomial.dist(mu=pt.exp(log_mu), alpha=phi), counts)
    values = {log_mu: log_mu_value, phi: phi_value}
    np.testing.assert_allclose(ours.eval(values), ref.eval(values), atol=1e-10)
    grads = pt.grad(ours.sum(), [log_mu, phi]), pt.grad(ref.sum(), [log_mu, phi])
    for a, b in zip(*grads, strict=True):
        np.testing.assert_allclose(a.eval(values), b.eval(values), rtol=1e-8, atol=1e-10)
