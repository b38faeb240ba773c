"""A numba lowering of PyTensor's ``tri_gamma`` (the second derivative of ``gammaln``).

PyTensor 3 has none: Hessian-vector products of the negative-binomial density (whose
``d2/dphi2`` holds ``trigamma(y + phi)``) fell back to Python object mode, about 1.7 s
per product at 2,000 genes. Importing this module registers a compiled one.
"""

from __future__ import annotations

import math

import numba
from pytensor.link.numba.dispatch import basic as numba_basic
from pytensor.link.numba.dispatch.scalar import register_scalar_funcify, scalar_op_cache_key
from pytensor.scalar.math import TriGamma


@numba.njit(cache=True)
def trigamma(x: float) -> float:
    """Trigamma function (relative error about 1e-13 for ``x > 0``).

    Recurrence ``psi1(x) = psi1(x + 1) + 1 / x**2`` up to ``x >= 6``, then the asymptotic
    series through ``x**-11``; reflection for negative non-integers; NaN at the poles.
    """
    result = 0.0
    if x <= 0.0:
        if x == math.floor(x):
            return math.nan
        s = math.sin(math.pi * x)
        return -trigamma(1.0 - x) + math.pi * math.pi / (s * s)
    while x < 6.0:
        result += 1.0 / (x * x)
        x += 1.0
    inv = 1.0 / x
    z = inv * inv
    series = (
        inv
        + 0.5 * z
        + inv
        * z
        * (1.0 / 6.0 - z * (1.0 / 30.0 - z * (1.0 / 42.0 - z * (1.0 / 30.0 - z * 5.0 / 66.0))))
    )
    return result + series


@register_scalar_funcify(TriGamma)
def _numba_funcify_trigamma(op, node, **kwargs):  # noqa: ANN001, ANN202, ARG001
    @numba_basic.numba_njit
    def tri_gamma(x):  # noqa: ANN001, ANN202
        return trigamma(x)

    return tri_gamma, scalar_op_cache_key(op, cache_version="screenformula-1")
