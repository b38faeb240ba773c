"""Approximate posterior by mean-field ADVI (PyMC's ``pm.fit``).

A fast first look at a genome-wide screen: the approximation is a product of independent
normals on the unconstrained parameters, fitted by stochastic maximisation of the ELBO.
It ranks genes much as NUTS does but its intervals are too narrow (mean-field VI ignores
posterior correlations and under-states variance); the fit says so wherever it is shown.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from typing import Any

import numpy as np
import pymc as pm
import pytensor
import xarray as xr
from pymc.pytensorf import resolve_backend_compile_kwargs
from pymc.variational.callbacks import Callback
from pytensor.graph.traversal import graph_inputs

from screenformula.errors import FitError
from screenformula.inference.registry import FitRequest
from screenformula.inference.scratch import draw_array

#: The notice every approximate fit emits (an `ApproximateWarning`, a `UserWarning`).
APPROX_NOTICE = (
    "approximate posterior (ADVI): intervals may be too narrow; confirm hits with method='nuts'"
)

#: Frames in this folder are skipped when the warning names a source line.
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep

#: Name of the DataTree group holding the optimisation trace of an ADVI fit.
VI_GROUP = "variational"


class _DropInterrupted(logging.Filter):
    """Drop PyMC's "Interrupted at ..." log line (a convergence stop is not an interrupt)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Interrupted at")


class ApproximateWarning(UserWarning):
    """The posterior comes from an approximate method (ADVI), not from NUTS."""


class ParameterConvergence(Callback):
    """Stop when the variational means have stopped moving, in units of their sds.

    Every ``every`` iterations the variational parameters (means and sd parameters) are
    averaged over the last window, which removes most of the optimiser's step-to-step
    jitter, and the window's mean parameters are compared with the previous window's:
    the fit has converged when the root-mean-square change, each divided by its current
    variational sd, is below ``tolerance`` on ``patience`` checks in a row. The last
    window's averages (``averaged``) are the Polyak-Ruppert iterate average that
    `fit_advi` keeps as the final approximation. Records ``converged_at`` (or None) and
    ``history`` (iteration, change).
    """

    def __init__(self, every: int = 100, tolerance: float = 0.15, patience: int = 2) -> None:
        self.every = every
        self.tolerance = tolerance
        self.patience = patience
        self.sums: list[np.ndarray] | None = None
        self.count = 0
        self.previous: np.ndarray | None = None
        self.averaged: tuple[np.ndarray, np.ndarray] | None = None
        self.history: list[tuple[int, float]] = []
        self.hits = 0
        self.converged_at: int | None = None
        self.last = 0

    def __call__(self, approx: Any, loss: Any, i: int) -> None:
        """Add iteration ``i``'s parameters to the window; check at the window's end."""
        self.last = i
        params = approx.groups[0].params_dict
        mu, rho = params["mu"].get_value(), params["rho"].get_value()
        if self.sums is None:
            self.sums = [mu.copy(), rho.copy()]
        else:
            self.sums[0] += mu
            self.sums[1] += rho
        self.count += 1
        if i % self.every:
            return
        mean, rho_mean = self.sums[0] / self.count, self.sums[1] / self.count
        self.sums, self.count = None, 0
        self.averaged = (mean, rho_mean)
        if self.previous is not None:
            sd = np.logaddexp(0.0, rho_mean)  # softplus(rho)
            change = float(np.sqrt(np.mean(((mean - self.previous) / sd) ** 2)))
            self.history.append((i, change))
            self.hits = self.hits + 1 if change < self.tolerance else 0
            if self.tolerance and self.hits >= self.patience:
                self.converged_at = i
                raise StopIteration(f"ADVI converged at iteration {i}")
        self.previous = mean


class LearningRateSchedule(Callback):
    """Exponential decay of the optimiser's step size, from ``start`` down to ``floor``.

    ``rate`` is a shared variable read by the optimiser's update graph; after iteration
    ``i`` it is ``max(floor, start * 0.5 ** (i / half_life))``. A decaying step size lets
    stochastic optimisation settle (Robbins-Monro) where a constant one keeps jittering
    around the optimum by about one step.
    """

    def __init__(self, rate: Any, start: float, floor: float, half_life: float) -> None:
        self.rate = rate
        self.start = start
        self.floor = floor
        self.half_life = half_life

    def __call__(self, approx: Any, loss: Any, i: int) -> None:
        """Set the step size for the iteration after ``i``."""
        value = max(self.floor, self.start * 0.5 ** (i / self.half_life))
        self.rate.set_value(np.asarray(value, dtype=self.rate.dtype))


def fit_advi(
    model: pm.Model,
    var_names: list[str],
    *,
    draws: int,
    random_seed: int | None,
    progress: bool,
    n: int = 10_000,
    obj_n_mc: int = 1,
    learning_rate: float = 0.1,
    lr_floor: float = 0.01,
    lr_half_life: float = 200.0,
    optimizer: str = "adam",
    tolerance: float = 0.15,
    check_every: int = 100,
    average: bool = True,
    start_sigma: float | None = 0.1,
    backend: str | None = None,
    callbacks: list[Any] | None = None,
    on_disk: tuple[str, ...] = (),
    scratch: str | None = None,
) -> tuple[xr.DataTree, dict[str, Any]]:
    """Fit mean-field ADVI and draw ``draws`` samples of ``var_names`` from it.

    Parameters
    ----------
    model : pymc.Model
        The model to approximate.
    var_names : list of str
        Variables (free or deterministic) to keep in the posterior.
    draws : int
        Draws taken from the fitted approximation (one chain).
    random_seed : int, optional
        Seeds the optimisation and the draws.
    progress : bool
        Show PyMC's progress bar.
    n : int
        Maximum number of iterations (each one stochastic gradient step).
    obj_n_mc : int
        Monte Carlo draws per gradient estimate.
    learning_rate, lr_floor, lr_half_life : float
        Adam's step size starts at ``learning_rate`` and halves every ``lr_half_life``
        iterations down to ``lr_floor`` (`LearningRateSchedule`).
    optimizer : {"adam", "adagrad_window"}
        PyMC's optimiser.
    tolerance, check_every : float, int
        `ParameterConvergence`: stop when the window-averaged means move less than
        ``tolerance`` variational sds (root mean square) on two checks in a row, checking
        every ``check_every`` iterations; ``tolerance=0`` runs all ``n`` iterations.
    average : bool
        Keep the average of the variational parameters over the last check window
        (Polyak-Ruppert averaging) instead of the last, jittering, iterate.
    start_sigma : float, optional
        Initial sd of every factor (PyMC's default, None, is softplus(0) = 0.69); the
        means start at the model's initial point.
    backend : str, optional
        PyTensor backend (``"numba"``, ``"c"``; default: PyTensor's default mode) of the
        step function and of the function that maps draws to the stored variables.
    callbacks : list, optional
        More `pm.fit` callbacks, called after each iteration.
    on_disk, scratch : tuple of str, str
        Variables whose draws are written to memory-mapped files in folder ``scratch``
        rather than held in memory (the guide-level ones of a genome-wide screen).

    Returns
    -------
    idata : DataTree
        ``posterior`` (one chain of ``draws`` draws, the same names and dims as NUTS
        gives) and ``variational``: ``loss`` (the negative ELBO) per iteration and
        ``change`` (the convergence measure) per check, the settings in its attrs.
    stats : dict
        ``iterations`` (steps taken), ``converged``, ``final_loss`` (mean loss over the last 10 % of
        the iterations), the settings and the seconds spent optimising and drawing.
    """
    rate = pytensor.shared(np.asarray(learning_rate, dtype=pytensor.config.floatX), "lr")
    match optimizer:
        case "adam":
            obj_optimizer = pm.adam(learning_rate=rate)
        case "adagrad_window":
            obj_optimizer = pm.adagrad_window(learning_rate=rate)
        case _:
            raise FitError(f"unknown ADVI optimizer {optimizer!r}: choose adam or adagrad_window")
    rng = np.random.default_rng(random_seed)
    seed = int(rng.integers(2**31))
    convergence = ParameterConvergence(every=check_every, tolerance=tolerance)
    steps: list[Any] = [convergence]
    if lr_floor < learning_rate:
        steps.append(LearningRateSchedule(rate, learning_rate, lr_floor, lr_half_life))
    steps += callbacks or []
    sigma = None
    if start_sigma is not None:
        point = model.initial_point()
        sigma = {name: np.full(np.size(value), start_sigma) for name, value in point.items()}
    start = time.perf_counter()
    # pm.fit logs a stop by a callback as "Interrupted at ..."; ours is a convergence stop
    log = logging.getLogger("pymc.variational.inference")
    quiet = _DropInterrupted()
    log.addFilter(quiet)
    try:
        with model, np.errstate(all="ignore"):
            approx = pm.fit(
                n=n,
                method="advi",
                random_seed=seed,
                start_sigma=sigma,
                obj_optimizer=obj_optimizer,
                obj_n_mc=obj_n_mc,
                callbacks=steps,
                progressbar=progress,
                backend=backend,
            )
    finally:
        log.removeFilter(quiet)
    if average and convergence.averaged is not None:
        params = approx.groups[0].params_dict
        params["mu"].set_value(convergence.averaged[0])
        params["rho"].set_value(convergence.averaged[1])
    fit_seconds = time.perf_counter() - start
    loss = np.asarray(approx.hist, dtype=float)
    start = time.perf_counter()
    mode = resolve_backend_compile_kwargs(backend, None).get("mode")
    posterior = draw_from_meanfield(
        model, approx, var_names, draws, rng, mode=mode, on_disk=on_disk, scratch=scratch
    )
    draw_seconds = time.perf_counter() - start
    tail = loss[-max(1, len(loss) // 10) :]
    stats = {
        "iterations": max(convergence.last, len(loss)),
        "converged": convergence.converged_at is not None,
        "final_loss": float(np.nanmean(tail)) if len(tail) else float("nan"),
        "obj_n_mc": obj_n_mc,
        "optimizer": optimizer,
        "learning_rate": learning_rate,
        "max_iterations": n,
        "tolerance": tolerance,
        "start_sigma": start_sigma,
        "fit_seconds": round(fit_seconds, 2),
        "draw_seconds": round(draw_seconds, 2),
        "lr_floor": lr_floor,
        "lr_half_life": lr_half_life,
        "averaged": bool(average and convergence.averaged is not None),
        "last_change": convergence.history[-1][1] if convergence.history else None,
    }
    checks = np.asarray(convergence.history, dtype=float).reshape(-1, 2)
    trace = xr.Dataset(
        {"loss": ("iteration", loss), "change": ("check", checks[:, 1])},
        coords={"iteration": np.arange(1, len(loss) + 1), "check": checks[:, 0].astype(int)},
        attrs={k: int(v) if isinstance(v, bool) else v for k, v in stats.items() if v is not None},
    )
    idata = xr.DataTree.from_dict({"posterior": posterior, VI_GROUP: trace})
    idata["posterior"].attrs.update({"inference": "ADVI (mean-field)", "approximate": 1})
    return idata, stats


def draw_from_meanfield(
    model: pm.Model,
    approx: Any,
    var_names: list[str],
    draws: int,
    rng: np.random.Generator,
    mode: Any = None,
    on_disk: tuple[str, ...] = (),
    scratch: str | None = None,
) -> xr.Dataset:
    """``draws`` draws of ``var_names`` from a fitted mean-field approximation.

    The draws are taken in the unconstrained space with NumPy, only for the value
    variables that ``var_names`` depend on, and mapped through one compiled function of
    them, one draw at a time: nothing but the stored variables is held for all draws,
    and those named in ``on_disk`` go to memory-mapped ``.npy`` files in ``scratch``.
    """
    group = approx.groups[0]
    mu = np.asarray(group.params_dict["mu"].get_value())
    sd = np.logaddexp(0.0, np.asarray(group.params_dict["rho"].get_value()))
    outputs = model.replace_rvs_by_values([model[name] for name in var_names])
    needed = set(graph_inputs(outputs))
    by_name = {v.name: v for v in model.value_vars}
    layout = [
        (by_name[name], slc, shape, dtype)
        for name, (_, slc, shape, dtype) in group.ordering.items()
        if by_name[name] in needed
    ]
    fn = pytensor.function([item[0] for item in layout], outputs, mode=mode)
    values: list[np.ndarray] | None = None
    for d in range(draws):
        args = [
            (mu[slc] + sd[slc] * rng.standard_normal(mu[slc].size)).reshape(shape).astype(dtype)
            for _, slc, shape, dtype in layout
        ]
        out = fn(*args)
        if values is None:
            values = [
                draw_array(name, (1, draws, *np.shape(o)), scratch if name in on_disk else None)
                for name, o in zip(var_names, out, strict=True)
            ]
        for store, o in zip(values, out, strict=True):
            store[0, d] = o
    assert values is not None
    data = {}
    coords: dict[str, Any] = {}
    for name, value in zip(var_names, values, strict=True):
        dims = list(model.named_vars_to_dims.get(name) or ())
        if len(dims) != value.ndim - 2:
            dims = [f"{name}_dim_{i}" for i in range(value.ndim - 2)]
        for dim, size in zip(dims, value.shape[2:], strict=True):
            if dim in model.coords and model.coords[dim] is not None:
                coords[dim] = list(model.coords[dim])
            else:
                coords[dim] = np.arange(size)
        data[name] = (["chain", "draw", *dims], value)
    coords.update({"chain": [0], "draw": np.arange(draws)})
    return xr.Dataset(data, coords=coords)


def run_advi(model: Any, request: FitRequest) -> tuple[xr.DataTree, dict[str, Any]]:
    """The ADVI runner of the method registry (`screenformula.inference.registry`)."""
    idata, stats = fit_advi(
        model.pymc_model,
        request.var_names,
        draws=request.draws,
        random_seed=request.random_seed,
        progress=request.progress,
        on_disk=request.on_disk,
        scratch=request.scratch,
        **request.kwargs,
    )
    # at the user's line (the first frame outside this package), not at a frame in here
    warnings.warn(APPROX_NOTICE, ApproximateWarning, skip_file_prefixes=(_PACKAGE_DIR,))
    return idata, {"tune": None, "engine": "pymc.fit", "target_accept": None, "advi": stats}
