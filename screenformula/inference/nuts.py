"""NUTS through nutpie (default), PyMC or numpyro."""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import unquote

import numpy as np
import pymc as pm
import xarray as xr

from screenformula._constants import DIM_SGRNA
from screenformula.errors import FitError
from screenformula.inference.registry import FitRequest

ENGINES = ("nutpie", "pymc", "numpyro")
NUTS_TARGET_ACCEPT = 0.8  # fit(target_accept=None) with method="nuts"

#: Above this many stored numbers (guides x effects x draws), sgRNA-level draws are not kept
#: unless asked for: a genome-wide posterior of every guide would not fit in memory.
SGRNA_STORE_BUDGET = 60_000_000


def variable_shapes(model: pm.Model) -> dict[str, tuple[int, ...]]:
    """Shape of every free variable and deterministic of ``model``, by name.

    Declared dims give the shape directly; otherwise the static shape is used, and where
    that is not known the shape is evaluated at the initial point.
    """
    shapes: dict[str, tuple[int, ...]] = {}
    unknown = []
    for var in [*model.free_RVs, *model.deterministics]:
        dims = model.named_vars_to_dims.get(var.name) or ()
        if dims and all(model.coords.get(d) is not None for d in dims):
            shapes[var.name] = tuple(len(model.coords[d]) for d in dims)
        elif all(s is not None for s in var.type.shape):
            shapes[var.name] = tuple(int(s) for s in var.type.shape)
        else:
            unknown.append(var)
    if unknown:
        # every value variable an input: shapes that depend on none (a mixture's) would
        # otherwise make a function of no inputs, which refuses the point's values
        fn = model.compile_fn(
            [var.shape for var in unknown],
            inputs=model.value_vars,
            on_unused_input="ignore",
            point_fn=True,
        )
        for var, shape in zip(unknown, fn(model.initial_point()), strict=True):
            shapes[var.name] = tuple(int(s) for s in shape)
    return shapes


def sgrna_variables(model: pm.Model) -> set[str]:
    """Names of the variables with one entry (or row) per guide, whatever their names.

    A variable is per-guide when it declares the ``sgrna`` dimension or, with no declared
    dims (the raw ``t_``/``z_`` effects of a guide-level term), when one of its axes has
    as many entries as there are guides. Scalars and per-gene variables are not, unless
    a screen has exactly as many genes as guides and the variable declares no dims.
    """
    if DIM_SGRNA not in model.coords:
        return set()
    n_sgrna = len(model.coords[DIM_SGRNA])
    found = set()
    for name, shape in variable_shapes(model).items():
        dims = model.named_vars_to_dims.get(name) or ()
        if DIM_SGRNA in dims or (not dims and n_sgrna in shape):
            found.add(name)
    return found


def stored_variables(model: pm.Model, store_sgrna: bool) -> list[str]:
    """Names of the variables kept in the posterior.

    With ``store_sgrna`` every variable; otherwise every variable except raw
    (``z_``/``L_``) ones and the per-guide ones (`sgrna_variables`: declared ``sgrna``
    dimension or an axis of guide length).
    """
    names = [var.name for var in [*model.free_RVs, *model.deterministics]]
    if store_sgrna:
        return names
    per_guide = sgrna_variables(model)
    return [
        name
        for name in names
        if name not in per_guide and not (name.startswith("z_") or name.startswith("L_"))
    ]


def sgrna_draw_numbers(model: pm.Model, n_draws_total: int) -> int:
    """How many numbers every draw of every guide-level variable takes."""
    shapes = variable_shapes(model)
    size = sum(math.prod(shapes[name]) for name in sgrna_variables(model))
    return size * n_draws_total


def sgrna_store_default(model: pm.Model, n_draws_total: int) -> bool:
    """Keep sgRNA-level draws when they take at most ``SGRNA_STORE_BUDGET`` numbers."""
    return sgrna_draw_numbers(model, n_draws_total) <= SGRNA_STORE_BUDGET


def sample_nuts(
    model: pm.Model,
    *,
    draws: int,
    tune: int,
    chains: int,
    cores: int | None,
    random_seed: int | None,
    engine: str,
    var_names: list[str],
    progress: bool,
    target_accept: float,
    zarr_dir: str | None = None,
    **kwargs: Any,
) -> Any:
    """Run NUTS and return the DataTree with posterior and sample_stats.

    With ``zarr_dir`` (nutpie only) the draws go to a zarr store in that folder as they
    are made, and the returned DataTree reads them from there lazily (variable names
    with brackets come back percent-escaped, as zarr keys).
    """
    match engine:
        case "nutpie":
            import nutpie

            compiled = nutpie.compile_pymc_model(model, var_names=var_names)
            if zarr_dir is not None:
                kwargs["zarr_store"] = nutpie.zarr_store.LocalStore(str(zarr_dir))
            return nutpie.sample(
                compiled,
                draws=draws,
                tune=tune,
                chains=chains,
                cores=cores or chains,
                seed=random_seed,
                progress_bar=progress,
                save_warmup=False,
                target_accept=target_accept,
                **kwargs,
            )
        case "pymc" | "numpyro":
            if engine == "numpyro":
                try:
                    import numpyro  # noqa: F401
                except ImportError:
                    raise FitError(
                        "engine='numpyro' needs numpyro and jax: pip install numpyro jax"
                    ) from None
            with model:
                return pm.sample(
                    draws=draws,
                    tune=tune,
                    chains=chains,
                    cores=cores,
                    random_seed=random_seed,
                    progressbar=progress,
                    var_names=var_names,
                    nuts_sampler=engine,
                    target_accept=target_accept,
                    compute_convergence_checks=False,
                    **kwargs,
                )
        case _:
            raise FitError(f"unknown NUTS engine {engine!r}: choose one of {', '.join(ENGINES)}")


def run_nuts(model: Any, request: FitRequest) -> tuple[Any, dict[str, Any]]:
    """The NUTS runner of the method registry (`screenformula.inference.registry`)."""
    target_accept = request.target_accept
    if target_accept is None:
        target_accept = NUTS_TARGET_ACCEPT
    idata = sample_nuts(
        model.pymc_model,
        draws=request.draws,
        tune=request.tune,
        chains=request.chains,
        cores=request.cores,
        random_seed=request.random_seed,
        engine=request.engine,
        var_names=request.var_names,
        progress=request.progress,
        target_accept=target_accept,
        zarr_dir=request.scratch if request.engine == "nutpie" else None,
        **request.kwargs,
    )
    return idata, {"target_accept": target_accept}


def from_zarr(idata: Any) -> None:
    """Undo what a zarr store does to names and strings, in every group of ``idata``.

    Variable names come back percent-escaped (``t_gene__treatment%5Bdrug%5D``) and text
    as NumPy's variable-width ``StringDType``, which netCDF cannot write: both are put back
    as in-memory sampling gives them (plain names, fixed-width ``str`` arrays).
    """
    for group in list(idata.children):
        ds = idata[group].to_dataset()
        fixed = from_zarr_dataset(ds)
        if fixed is not ds:
            idata[group] = xr.DataTree(fixed)


def from_zarr_dataset(ds: xr.Dataset) -> xr.Dataset:
    """`from_zarr` for one Dataset (``ds`` itself when nothing needs undoing)."""
    renames = {n: unquote(n) for n in ds.data_vars if unquote(n) != n}
    renames.update({d: unquote(d) for d in ds.dims if unquote(d) != d and d not in renames})
    text = [n for n in (*ds.coords, *ds.data_vars) if ds[n].dtype.kind == "T"]
    if not renames and not text:
        return ds
    ds = ds.assign({n: ds[n].copy(data=_fixed_width(ds[n].values)) for n in text})
    return ds.rename(renames)


def _fixed_width(values: np.ndarray) -> np.ndarray:
    """A ``StringDType`` array as a fixed-width ``str`` array."""
    return np.array(values.tolist(), dtype=str).reshape(values.shape)
