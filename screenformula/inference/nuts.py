"""NUTS through nutpie (default), PyMC or numpyro."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pymc as pm

from screenformula._constants import DIM_SGRNA
from screenformula.errors import FitError

ENGINES = ("nutpie", "pymc", "numpyro")

#: Above this many stored numbers (guides x effects x draws), sgRNA-level draws are not kept
#: unless asked for: a genome-wide posterior of every guide would not fit in memory.
SGRNA_STORE_BUDGET = 60_000_000


def stored_variables(model: pm.Model, store_sgrna: bool) -> list[str]:
    """Names of the variables kept in the posterior.

    Every variable except raw (``z_``/``L_``) ones and, unless ``store_sgrna``, those with
    an sgRNA dimension.
    """
    names = []
    for var in [*model.free_RVs, *model.deterministics]:
        name = var.name
        if not store_sgrna and DIM_SGRNA in model.named_vars_to_dims.get(name, ()):
            continue
        if store_sgrna or not (name.startswith("z_") or name.startswith("L_")):
            names.append(name)
    return names


def sgrna_store_default(model: pm.Model, n_draws_total: int) -> bool:
    """Keep sgRNA-level draws when they take at most ``SGRNA_STORE_BUDGET`` numbers."""
    size = 0
    for var in [*model.free_RVs, *model.deterministics]:
        dims: Iterable[str] = model.named_vars_to_dims.get(var.name, ()) or ()
        if DIM_SGRNA in dims:
            shape = [len(model.coords[d]) for d in dims if d in model.coords]
            n = 1
            for s in shape:
                n *= s
            size += n
    return size * n_draws_total <= SGRNA_STORE_BUDGET


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
    **kwargs: Any,
) -> Any:
    """Run NUTS and return the DataTree with posterior and sample_stats."""
    match engine:
        case "nutpie":
            import nutpie

            compiled = nutpie.compile_pymc_model(model, var_names=var_names)
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
