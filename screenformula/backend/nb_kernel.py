"""A fused negative-binomial log-density and gradient: PyTensor Ops with numba kernels.

With ``r = log_mu - log(phi)``, ``softplus(r) = log(1 + exp(r))`` and
``sigmoid(r) = 1 / (1 + exp(-r))``, the density of ``nb_density.nb_logp_elementwise`` is

    logp     = lgamma(y + phi) - lgamma(phi) - lgamma(y + 1) - (y + phi) softplus(r) + y r
    d/dlogmu = y - (y + phi) sigmoid(r)
    d/dphi   = digamma(y + phi) - digamma(phi) - softplus(r) - (d/dlogmu) / phi

so one ``exp`` and one ``log1p`` per observation serve the density and both derivatives;
``lgamma(y + phi)`` and ``digamma(y + phi)`` share one ``log`` (their asymptotic series,
from ``y + phi >= 10``; ``math.lgamma`` and a recurrence below); ``log``, ``lgamma`` and
``digamma`` of ``phi`` are computed once per distinct ``phi`` (once per guide for a
per-guide column). Inputs are 2-d (guide x sample) and broadcast; derivatives are summed
over the axes an input is broadcast along inside the loop, and the data constant
``lgamma(y + 1)`` of a summed density is left to PyTensor's constant folding.

Three Ops:

- `NegBinLogp`: the elementwise log-density (what PyMC's ``CustomDist`` logp returns, so
  pointwise log-likelihoods keep working); its gradient is `NegBinLogpGrad`.
- `NegBinLogpGrad`: both derivatives, weighted by an upstream gradient, in one loop.
- `NegBinLogpSum`: the summed log-density without the data constant ``lgamma(y + 1)``
  and/or both derivatives in one loop. Graph rewrites put it in place of
  ``sum(NegBinLogp(...))`` and of `NegBinLogpGrad` with a constant upstream gradient
  (the model's total log-density), so a joint logp + gradient function, such as the one
  nutpie samples with, runs a single fused loop; a logp-only or gradient-only function
  gets the half it needs.

Each has a numba implementation registered with PyTensor's numba backend (nutpie, ADVI)
and a NumPy/SciPy ``perform`` for the C and Python backends; in JAX mode (numpyro) a
rewrite puts the PyTensor expression back in their place.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numba
import numpy as np
import pytensor.tensor as pt
from pytensor.compile import optdb
from pytensor.gradient import DisconnectedType, grad_not_implemented
from pytensor.graph.basic import Apply, Variable
from pytensor.graph.op import Op
from pytensor.graph.rewriting.basic import in2out, node_rewriter
from pytensor.link.numba.dispatch import basic as numba_basic
from pytensor.link.numba.dispatch.basic import register_funcify_and_cache_key
from pytensor.scalar.basic import Second
from pytensor.tensor.basic import Alloc
from pytensor.tensor.elemwise import Elemwise
from pytensor.tensor.math import Sum
from pytensor.tensor.rewriting.basic import register_canonicalize, register_specialize
from scipy import special

from screenformula.backend.nb_density import nb_logp_elementwise

#: Salt of the numba cache key: this file's contents, so an edited kernel is recompiled.
_SOURCE_HASH = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]

SUM_MODES = ("both", "logp", "grad")


# --------------------------------------------------------------------------- scalar math
#: From here up, `lgamma_digamma` shares one ``log`` between the asymptotic series.
SERIES_FROM = 10.0
HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


@numba.njit(cache=True)
def _digamma_series(log_x: float, inv: float) -> float:
    """Asymptotic series of digamma through ``x**-14`` (error < 2e-13 for ``x >= 6``)."""
    z = inv * inv
    series = z * (
        1.0 / 12.0
        - z
        * (
            1.0 / 120.0
            - z
            * (
                1.0 / 252.0
                - z * (1.0 / 240.0 - z * (1.0 / 132.0 - z * (691.0 / 32760.0 - z / 12.0)))
            )
        )
    )
    return log_x - 0.5 * inv - series


@numba.njit(cache=True)
def _lgamma_series(x: float, log_x: float, inv: float) -> float:
    """Stirling's series of lgamma through ``x**-9`` (error < 3e-14 for ``x >= 10``)."""
    z = inv * inv
    series = inv * (
        1.0 / 12.0 - z * (1.0 / 360.0 - z * (1.0 / 1260.0 - z * (1.0 / 1680.0 - z / 1188.0)))
    )
    return (x - 0.5) * log_x - x + HALF_LOG_2PI + series


@numba.njit(cache=True)
def digamma(x: float) -> float:
    """Digamma function, accurate to about 1e-13 (numba; callable from Python).

    Recurrence ``psi(x) = psi(x + 1) - 1 / x`` up to ``x >= 6``, then the asymptotic
    series through the ``x**-14`` term; reflection for negative non-integers; NaN at the
    poles (0 and the negative integers).
    """
    result = 0.0
    if x <= 0.0:
        if x == math.floor(x):
            return math.nan
        result = -math.pi / math.tan(math.pi * x)
        x = 1.0 - x
    while x < 6.0:
        result -= 1.0 / x
        x += 1.0
    return result + _digamma_series(math.log(x), 1.0 / x)


@numba.njit(cache=True)
def lgamma_digamma(x: float) -> tuple[float, float]:
    """``(lgamma(x), digamma(x))`` for ``x > 0``, sharing one ``log`` for ``x >= 10``.

    Below `SERIES_FROM`: ``math.lgamma`` and `digamma`.
    """
    if x < SERIES_FROM:
        return math.lgamma(x), digamma(x)
    log_x, inv = math.log(x), 1.0 / x
    return _lgamma_series(x, log_x, inv), _digamma_series(log_x, inv)


@numba.njit(cache=True)
def lgamma(x: float) -> float:
    """``lgamma(x)``: Stirling's series for ``x >= 10``, else ``math.lgamma``."""
    if x < SERIES_FROM:
        return math.lgamma(x)
    return _lgamma_series(x, math.log(x), 1.0 / x)


# ------------------------------------------------------------------- NumPy (perform) path
def _reduce_to(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum ``x`` over the axes that ``shape`` broadcasts along."""
    axes = tuple(k for k, (n, s) in enumerate(zip(x.shape, shape, strict=True)) if s == 1 != n)
    return x.sum(axis=axes, keepdims=True) if axes else x


def _np_terms(
    value: np.ndarray, log_mu: np.ndarray, phi: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = np.asarray(value, dtype=np.float64)
    r = log_mu - np.log(phi)
    return y, r, np.logaddexp(0.0, r)


def _np_logp(value: np.ndarray, log_mu: np.ndarray, phi: np.ndarray, constant: bool) -> np.ndarray:
    y, r, sp = _np_terms(value, log_mu, phi)
    out = special.gammaln(y + phi) - special.gammaln(phi) - (y + phi) * sp + y * r
    return out - special.gammaln(y + 1.0) if constant else out


def _np_grad(
    value: np.ndarray, log_mu: np.ndarray, phi: np.ndarray, g: np.ndarray | float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    y, r, sp = _np_terms(value, log_mu, phi)
    dm = y - (y + phi) * special.expit(r)
    dp = special.digamma(y + phi) - special.digamma(phi) - sp - dm / phi
    shape = np.broadcast_shapes(np.shape(value), log_mu.shape, phi.shape)
    dm, dp = np.broadcast_to(dm * g, shape), np.broadcast_to(dp * g, shape)
    return _reduce_to(dm, log_mu.shape), _reduce_to(dp, phi.shape)


# ---------------------------------------------------------------------------------- Ops
def _as_2d_float(x: Variable) -> Variable:
    x = pt.as_tensor_variable(x)
    return x if x.dtype == "float64" else pt.cast(x, "float64")


def _check_2d(*inputs: Variable) -> None:
    for x in inputs:
        if x.ndim != 2:
            raise ValueError(f"negative-binomial kernel inputs must be 2-d, got {x.type}")


def _out_type(*inputs: Variable) -> pt.TensorType:
    """The broadcast 2-d float64 type of ``inputs``."""
    shape = []
    for dims in zip(*(x.type.shape for x in inputs), strict=True):
        known = {d for d in dims if d is not None and d != 1}
        shape.append(known.pop() if known else (1 if all(d == 1 for d in dims) else None))
    return pt.TensorType("float64", shape=tuple(shape))


class NegBinLogp(Op):
    """Elementwise NB log-probability of ``value`` given ``log_mu`` and ``phi`` (2-d)."""

    __props__ = ()

    def make_node(self, value, log_mu, phi) -> Apply:
        """Check the inputs (2-d; ``log_mu``, ``phi`` cast to float64); build the node."""
        value = pt.as_tensor_variable(value)
        log_mu, phi = _as_2d_float(log_mu), _as_2d_float(phi)
        _check_2d(value, log_mu, phi)
        return Apply(self, [value, log_mu, phi], [_out_type(value, log_mu, phi)()])

    def perform(self, node, inputs, output_storage) -> None:
        """NumPy/SciPy implementation (backends without the numba kernel)."""
        output_storage[0][0] = np.asarray(_np_logp(*inputs, constant=True), dtype=np.float64)

    def infer_shape(self, node, shapes):
        """Output shapes from input shapes."""
        return [tuple(pt.maximum(pt.maximum(a, b), c) for a, b, c in zip(*shapes, strict=True))]

    def connection_pattern(self, node) -> list[list[bool]]:
        """``value`` (the counts) has no gradient."""
        return [[False], [True], [True]]

    def pullback(self, inputs, outputs, cotangents):
        """Both derivatives in one `NegBinLogpGrad` node."""
        value, log_mu, phi = inputs
        dlog_mu, dphi = NegBinLogpGrad()(value, log_mu, phi, cotangents[0])
        return [DisconnectedType()(), dlog_mu, dphi]


class NegBinLogpGrad(Op):
    """Derivatives of ``sum(g * NegBinLogp(value, log_mu, phi))`` by ``log_mu`` and ``phi``."""

    __props__ = ()

    def make_node(self, value, log_mu, phi, g) -> Apply:
        """Check the inputs (2-d; ``log_mu``, ``phi`` cast to float64); build the node."""
        value = pt.as_tensor_variable(value)
        log_mu, phi, g = _as_2d_float(log_mu), _as_2d_float(phi), _as_2d_float(g)
        _check_2d(value, log_mu, phi, g)
        return Apply(self, [value, log_mu, phi, g], [log_mu.type(), phi.type()])

    def perform(self, node, inputs, output_storage) -> None:
        """NumPy/SciPy implementation (backends without the numba kernel)."""
        value, log_mu, phi, g = inputs
        for storage, out in zip(output_storage, _np_grad(value, log_mu, phi, g), strict=True):
            storage[0] = np.ascontiguousarray(out, dtype=np.float64)

    def infer_shape(self, node, shapes):
        """Output shapes from input shapes."""
        return [shapes[1], shapes[2]]

    def pullback(self, inputs, outputs, cotangents):
        """Not differentiable (second derivatives are not implemented)."""
        return [grad_not_implemented(self, k, x) for k, x in enumerate(inputs)]


class NegBinLogpSum(Op):
    """``sum(logp + lgamma(y + 1))`` and/or its derivatives by ``log_mu`` and ``phi``.

    Parameters
    ----------
    mode : {"both", "logp", "grad"}
        Outputs: ``(logp_sum, dlog_mu, dphi)``, ``(logp_sum,)`` or ``(dlog_mu, dphi)``.
        ``logp_sum`` leaves out the data constant ``sum(lgamma(y + 1))``.
    """

    __props__ = ("mode",)

    def __init__(self, mode: str = "both") -> None:
        if mode not in SUM_MODES:
            raise ValueError(f"mode must be one of {SUM_MODES}, got {mode!r}")
        self.mode = mode

    def make_node(self, value, log_mu, phi) -> Apply:
        """Check the inputs (2-d; ``log_mu``, ``phi`` cast to float64); build the node."""
        value = pt.as_tensor_variable(value)
        log_mu, phi = _as_2d_float(log_mu), _as_2d_float(phi)
        _check_2d(value, log_mu, phi)
        outs = []
        if self.mode != "grad":
            outs.append(pt.TensorType("float64", shape=())())
        if self.mode != "logp":
            outs += [log_mu.type(), phi.type()]
        return Apply(self, [value, log_mu, phi], outs)

    def perform(self, node, inputs, output_storage) -> None:
        """NumPy/SciPy implementation (backends without the numba kernel)."""
        outs = []
        if self.mode != "grad":
            outs.append(np.asarray(_np_logp(*inputs, constant=False).sum(), dtype=np.float64))
        if self.mode != "logp":
            outs += [np.ascontiguousarray(d, dtype=np.float64) for d in _np_grad(*inputs)]
        for storage, out in zip(output_storage, outs, strict=True):
            storage[0] = out

    def infer_shape(self, node, shapes):
        """Output shapes from input shapes."""
        out = [()] if self.mode != "grad" else []
        return out + ([shapes[1], shapes[2]] if self.mode != "logp" else [])

    def connection_pattern(self, node) -> list[list[bool]]:
        """``value`` (the counts) has no gradient."""
        n_out = len(node.outputs)
        return [[False] * n_out, [True] * n_out, [True] * n_out]

    def pullback(self, inputs, outputs, cotangents):
        """The derivative outputs times the upstream gradient of the summed density."""
        value, log_mu, phi = inputs
        if self.mode == "grad" or not all(
            isinstance(g.type, DisconnectedType) for g in cotangents[1:]
        ):
            # second derivatives are not implemented
            return [DisconnectedType()()] + [
                grad_not_implemented(self, k, inputs[k]) for k in (1, 2)
            ]
        g = cotangents[0]
        _, dlog_mu, dphi = outputs if self.mode == "both" else NegBinLogpSum("both")(*inputs)
        return [DisconnectedType()(), g * dlog_mu, g * dphi]


def nb_logp(value, log_mu, phi) -> Variable:
    """Elementwise NB log-probability through `NegBinLogp` (inputs of up to 2 dims)."""
    value, log_mu, phi = (pt.as_tensor_variable(x) for x in (value, log_mu, phi))
    ndim = max(value.ndim, log_mu.ndim, phi.ndim)
    if ndim > 2:
        raise ValueError("the fused negative-binomial kernel takes inputs of up to 2 dims")
    out = NegBinLogp()(*(pt.shape_padleft(x, 2 - x.ndim) for x in (value, log_mu, phi)))
    if ndim == 2:
        return out
    return out[0] if ndim == 1 else out[0, 0]


# ------------------------------------------------------------------------------ rewrites
def _scalar_broadcast(g: Variable) -> Variable | None:
    """The scalar that ``g`` broadcasts, when ``g`` is a constant-over-entries fill."""

    def scalar(x: Variable) -> Variable | None:
        return pt.squeeze(x) if all(x.type.broadcastable) else None

    if all(g.type.broadcastable):
        return scalar(g)
    owner = g.owner
    if owner is None:
        return None
    if isinstance(owner.op, Elemwise) and isinstance(owner.op.scalar_op, Second):
        return scalar(owner.inputs[1])
    if isinstance(owner.op, Alloc):
        return scalar(owner.inputs[0])
    return None


@register_canonicalize
@node_rewriter([Sum])
def local_sum_negbin_logp(fgraph, node):
    """``sum(NegBinLogp(y, m, phi))`` -> ``NegBinLogpSum(y, m, phi) - sum(lgamma(y + 1))``."""
    (x,) = node.inputs
    if x.owner is None or not isinstance(x.owner.op, NegBinLogp):
        return None
    if node.op.axis is not None and set(node.op.axis) != set(range(x.ndim)):
        return None
    value, log_mu, phi = x.owner.inputs
    (total,) = node.outputs
    constant = pt.sum(pt.gammaln(pt.cast(value, "float64") + 1.0))
    logp = NegBinLogpSum("both")(value, log_mu, phi)[0] - constant
    return [pt.cast(logp, total.dtype) if total.dtype != "float64" else logp]


@register_canonicalize
@register_specialize
@node_rewriter([NegBinLogpGrad])
def local_negbin_grad_constant(fgraph, node):
    """`NegBinLogpGrad` with a constant-over-entries upstream gradient -> `NegBinLogpSum`."""
    value, log_mu, phi, g = node.inputs
    c = _scalar_broadcast(g)
    if c is None:
        return None
    _, dlog_mu, dphi = NegBinLogpSum("both")(value, log_mu, phi)
    return [c * dlog_mu, c * dphi]


def _siblings(fgraph, node) -> list[Apply]:
    """Other `NegBinLogpSum` nodes on the same inputs."""
    return [
        client
        for client, _ in fgraph.clients[node.inputs[1]]
        if client is not node
        and isinstance(client.op, NegBinLogpSum)
        and client.inputs == node.inputs
    ]


@register_specialize
@node_rewriter([NegBinLogpSum])
def local_negbin_sum_outputs(fgraph, node):
    """Compute only the outputs that are used; one node where two modes meet."""
    mode = node.op.mode
    used = [bool(fgraph.clients[out]) for out in node.outputs]
    siblings = _siblings(fgraph, node)
    if mode != "both":
        if not siblings:
            return None
        both = NegBinLogpSum("both")(*node.inputs)
        return both[:1] if mode == "logp" else both[1:]
    if siblings:
        return None
    if not used[1] and not used[2]:
        return {node.outputs[0]: NegBinLogpSum("logp")(*node.inputs)}
    if not used[0]:
        dlog_mu, dphi = NegBinLogpSum("grad")(*node.inputs)
        return {node.outputs[1]: dlog_mu, node.outputs[2]: dphi}
    return None


def _expression_outputs(node: Apply) -> list[Variable]:
    """The outputs of a negative-binomial Op node, as the PyTensor expression."""
    value, log_mu, phi = node.inputs[:3]
    density = nb_logp_elementwise(value, log_mu, phi)
    op = node.op
    if isinstance(op, NegBinLogp):
        return [density]
    if isinstance(op, NegBinLogpGrad):
        return list(pt.grad((node.inputs[3] * density).sum(), [log_mu, phi]))
    outs = []
    if op.mode != "grad":
        outs.append(density.sum() + pt.sum(pt.gammaln(pt.cast(value, "float64") + 1.0)))
    if op.mode != "logp":
        outs += pt.grad(density.sum(), [log_mu, phi])
    return outs


@node_rewriter([NegBinLogp, NegBinLogpGrad, NegBinLogpSum])
def local_negbin_to_expression(fgraph, node):
    """Replace the fused Ops by the PyTensor expression (backends without a kernel)."""
    return [
        pt.specify_shape(new, old.type.shape) if new.type != old.type else new
        for old, new in zip(node.outputs, _expression_outputs(node), strict=True)
    ]


# JAX (numpyro through PyMC) has no kernel for the Ops: compiled in JAX mode, the graph
# uses the expression, replaced before any other rewrite (canonicalize is at 1).
optdb.register(
    "local_negbin_to_expression",
    in2out(local_negbin_to_expression),
    "jax",
    position=0.5,
)


# --------------------------------------------------------------------------------- numba
def _kernel(node: Apply, want_logp: bool, want_grad: bool, elementwise: bool, with_g: bool):
    """A numba loop over the guide x sample matrix.

    ``loop(value, log_mu, phi, g, out, dlog_mu, dphi) -> logp_sum`` writes the elementwise
    log-density into ``out`` (``elementwise``), adds the derivatives into ``dlog_mu`` and
    ``dphi`` (``want_grad``, weighted by ``g`` when ``with_g``) and returns the summed
    log-density without ``lgamma(y + 1)`` (``want_logp``). Static broadcast patterns decide
    whether ``phi``'s special functions are computed once per row and whether ``dlog_mu``
    is written or accumulated.
    """
    log_mu_t, phi_t = node.inputs[1].type, node.inputs[2].type
    phi_per_row = bool(phi_t.broadcastable[1])
    log_mu_full = not any(log_mu_t.broadcastable)

    @numba_basic.numba_njit
    def loop(value, log_mu, phi, g, out, dlog_mu, dphi):
        n = max(value.shape[0], log_mu.shape[0], phi.shape[0])
        m = max(value.shape[1], log_mu.shape[1], phi.shape[1])
        for s0, s1 in (value.shape, log_mu.shape, phi.shape, g.shape):
            if (s0 != n and s0 != 1) or (s1 != m and s1 != 1):
                raise ValueError("negative-binomial kernel: shapes do not broadcast")
        vi, vj = int(value.shape[0] != 1), int(value.shape[1] != 1)
        mi, mj = int(log_mu.shape[0] != 1), int(log_mu.shape[1] != 1)
        pi, pj = int(phi.shape[0] != 1), int(phi.shape[1] != 1)
        gi, gj = int(g.shape[0] != 1), int(g.shape[1] != 1)
        total = 0.0
        ph = log_ph = lg_ph = dg_ph = inv_ph = 1.0
        lg_yp = dg_yp = 0.0
        for i in range(n):
            acc = 0.0
            if phi_per_row:
                ph = phi[i * pi, 0]
                log_ph, inv_ph = math.log(ph), 1.0 / ph
                lg_ph, dg_ph = lgamma_digamma(ph)
            for j in range(m):
                if not phi_per_row:
                    ph = phi[i * pi, j * pj]
                    log_ph, inv_ph = math.log(ph), 1.0 / ph
                    lg_ph, dg_ph = lgamma_digamma(ph)
                y = float(value[i * vi, j * vj])
                r = log_mu[i * mi, j * mj] - log_ph
                e = math.exp(-abs(r))
                softplus = max(r, 0.0) + math.log1p(e)
                yp = y + ph
                if (want_logp or elementwise) and want_grad:
                    lg_yp, dg_yp = lgamma_digamma(yp)
                elif want_logp or elementwise:
                    lg_yp = lgamma(yp)
                elif want_grad:
                    dg_yp = digamma(yp)
                if want_logp or elementwise:
                    lp = lg_yp - lg_ph - yp * softplus + y * r
                    if want_logp:
                        total += lp
                    if elementwise:
                        out[i, j] = lp - math.lgamma(y + 1.0)
                if want_grad:
                    sigmoid = (1.0 if r > 0.0 else e) / (1.0 + e)
                    dm = y - yp * sigmoid
                    dp = dg_yp - dg_ph - softplus - dm * inv_ph
                    if with_g:
                        w = g[i * gi, j * gj]
                        dm *= w
                        dp *= w
                    if log_mu_full:
                        dlog_mu[i, j] = dm
                    else:
                        dlog_mu[i * mi, j * mj] += dm
                    if phi_per_row:
                        acc += dp
                    else:
                        dphi[i * pi, j * pj] += dp
            if want_grad and phi_per_row:
                dphi[i * pi, 0] += acc
        return total

    return loop


def _cache_key(op: Op, node: Apply) -> str:
    types = tuple(str(x.type.broadcastable) + x.type.dtype for x in node.inputs)
    text = f"screenformula.{type(op).__name__}{op._props_dict()}{types}{_SOURCE_HASH}"
    return hashlib.sha256(text.encode()).hexdigest()


@register_funcify_and_cache_key(NegBinLogp)
def _numba_negbin_logp(op, node, **kwargs):
    loop = _kernel(node, want_logp=False, want_grad=False, elementwise=True, with_g=False)

    @numba_basic.numba_njit
    def negbin_logp(value, log_mu, phi):
        n = max(value.shape[0], log_mu.shape[0], phi.shape[0])
        m = max(value.shape[1], log_mu.shape[1], phi.shape[1])
        out = np.empty((n, m))
        empty = np.zeros((1, 1))
        loop(value, log_mu, phi, empty, out, empty, empty)
        return out

    return negbin_logp, _cache_key(op, node)


@register_funcify_and_cache_key(NegBinLogpGrad)
def _numba_negbin_logp_grad(op, node, **kwargs):
    loop = _kernel(node, want_logp=False, want_grad=True, elementwise=False, with_g=True)

    @numba_basic.numba_njit
    def negbin_logp_grad(value, log_mu, phi, g):
        dlog_mu = np.zeros(log_mu.shape)
        dphi = np.zeros(phi.shape)
        empty = np.zeros((1, 1))
        loop(value, log_mu, phi, g, empty, dlog_mu, dphi)
        return dlog_mu, dphi

    return negbin_logp_grad, _cache_key(op, node)


@register_funcify_and_cache_key(NegBinLogpSum)
def _numba_negbin_logp_sum(op, node, **kwargs):
    mode = op.mode
    loop = _kernel(
        node, want_logp=mode != "grad", want_grad=mode != "logp", elementwise=False, with_g=False
    )
    log_mu_full = not any(node.inputs[1].type.broadcastable)

    if mode == "logp":

        @numba_basic.numba_njit
        def negbin_logp_sum(value, log_mu, phi):
            empty = np.zeros((1, 1))
            return np.array(loop(value, log_mu, phi, empty, empty, empty, empty))

        return negbin_logp_sum, _cache_key(op, node)

    @numba_basic.numba_njit
    def negbin_grads(value, log_mu, phi):
        dlog_mu = np.empty(log_mu.shape) if log_mu_full else np.zeros(log_mu.shape)
        dphi = np.zeros(phi.shape)
        empty = np.zeros((1, 1))
        total = loop(value, log_mu, phi, empty, empty, dlog_mu, dphi)
        return total, dlog_mu, dphi

    if mode == "grad":

        @numba_basic.numba_njit
        def negbin_logp_sum_grad(value, log_mu, phi):
            _, dlog_mu, dphi = negbin_grads(value, log_mu, phi)
            return dlog_mu, dphi

        return negbin_logp_sum_grad, _cache_key(op, node)

    @numba_basic.numba_njit
    def negbin_logp_sum_both(value, log_mu, phi):
        total, dlog_mu, dphi = negbin_grads(value, log_mu, phi)
        return np.array(total), dlog_mu, dphi

    return negbin_logp_sum_both, _cache_key(op, node)
