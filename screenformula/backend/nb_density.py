"""The negative-binomial log-density as a PyTensor expression (the reference form).

`screenformula.backend.likelihood` builds models with it or with the fused Ops of
`screenformula.backend.nb_kernel`, whose rewrites also fall back to it (JAX mode); it
lives here, below both, so that neither imports the other for it.
"""

from __future__ import annotations

import numpy as np
import pytensor.tensor as pt

__all__ = ["nb_logp_elementwise"]


def nb_logp_elementwise(
    value: pt.TensorVariable | np.ndarray, log_mu: pt.TensorVariable, phi: pt.TensorVariable
) -> pt.TensorVariable:
    """Elementwise NB log-probability of ``value`` (``Var = mu + mu^2 / phi``)."""
    log_phi = pt.log(phi)
    # log(mu + phi), written elementwise: PyTensor's `logaddexp` is an OpFromGraph with
    # fixed input types, which pins the data's sizes into graphs that lift them to inputs
    # (`inference.two_stage.density.lift_constants`)
    log_mu_phi = pt.maximum(log_mu, log_phi) + pt.log1p(pt.exp(-pt.abs(log_mu - log_phi)))
    return (
        pt.gammaln(value + phi)
        - pt.gammaln(phi)
        - pt.gammaln(value + 1.0)
        + phi * (log_phi - log_mu_phi)
        + value * (log_mu - log_mu_phi)
    )
