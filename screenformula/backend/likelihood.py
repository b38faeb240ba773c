"""The negative-binomial likelihood on the guide x sample matrix, written for speed.

Same density as ``pm.NegativeBinomial(mu=exp(log_mu), alpha=phi)`` (checked to 1e-10
in the tests), but:

- it takes ``log mu`` (no ``exp`` then ``log``) and uses ``logaddexp`` for
  ``log(mu + phi)``;
- ``lgamma(phi)`` is computed once per guide, not once per observation;
- ``lgamma(y + 1)`` is a constant of the data.

Together these halve the cost of the log-density and its gradient (measured in the
model benchmark). Computing ``lgamma(y + phi)`` once per distinct count for a shared
``phi`` was measured too and was slower: gathering back to, and the gradient's
scatter-add over, every observation cost more than the lgamma it saves.

Models are built with the fused Ops of `screenformula.backend.nb_kernel` by default
(``NB_KERNELS``; ``SCREENFORMULA_NB_KERNEL=expression`` selects the PyTensor expression
`nb_logp_elementwise` instead): the same density, with the summed log-density and both
derivatives computed in one numba loop. The numba log-density + gradient that nutpie
samples with fell from 3.17 to 2.06 ms (57 to 37 ns per observation, 1.54x) at 2,000
genes and from 33.95 to 22.67 ms (61 to 40 ns, 1.50x) at 20,000 genes / 560,000 counts
(``benchmarks/bench_model.py --grad-only``, both in one process, 2 shared cores).
"""

from __future__ import annotations

import os

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from screenformula.backend.nb_density import nb_logp_elementwise
from screenformula.backend.nb_kernel import nb_logp

#: Predictive draws clip log mu here (exp(35) ~ 1.6e15 reads: far beyond any screen).
MAX_LOG_MU = 35.0
#: Implementations of the log-density: the fused Ops of `nb_kernel`, or the PyTensor
#: expression `nb_logp_elementwise` (kept for comparison, e.g. by the model benchmark).
NB_KERNELS = ("fused", "expression")
#: The default; the environment variable ``SCREENFORMULA_NB_KERNEL`` overrides it.
DEFAULT_NB_KERNEL = "fused"


def nb_kernel() -> str:
    """The log-density implementation models are built with (``NB_KERNELS``)."""
    kernel = os.environ.get("SCREENFORMULA_NB_KERNEL", DEFAULT_NB_KERNEL)
    if kernel not in NB_KERNELS:
        raise ValueError(f"SCREENFORMULA_NB_KERNEL={kernel!r}: choose one of {NB_KERNELS}")
    return kernel


def negative_binomial(
    name: str,
    log_mu: pt.TensorVariable,
    phi: pt.TensorVariable,
    observed: np.ndarray,
    dims: tuple[str, str],
    kernel: str | None = None,
) -> pt.TensorVariable:
    """An observed negative-binomial variable on the guide x sample matrix.

    A ``pm.CustomDist`` with the fast log-density (``kernel``: one of ``NB_KERNELS``,
    default `nb_kernel()`) and NumPy draws for prior and posterior predictive checks, so
    log-likelihood, LOO and predictive checks keep working as with
    ``pm.NegativeBinomial``.
    """
    observed = np.asarray(observed)
    log_mu = pt.broadcast_to(log_mu, observed.shape)
    density = nb_logp if (kernel or nb_kernel()) == "fused" else nb_logp_elementwise

    def logp(value, log_mu_, phi_):  # noqa: ANN001, ANN202 - PyMC's callback signature
        return density(value, log_mu_, phi_)

    def random(log_mu_, phi_, rng=None, size=None):  # noqa: ANN001, ANN202
        # gamma-Poisson mixture; extreme prior draws are clipped so numpy can draw them
        mu = np.exp(np.minimum(log_mu_, MAX_LOG_MU))
        phi_ = np.clip(phi_, 1e-8, 1e12)
        lam = rng.gamma(phi_, mu / phi_, size=size)
        return rng.poisson(np.minimum(lam, 1e15))

    return pm.CustomDist(
        name, log_mu, phi, logp=logp, random=random, observed=observed, dims=dims, dtype="int64"
    )
