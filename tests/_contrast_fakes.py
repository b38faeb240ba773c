"""Fits with hand-built posteriors, for testing contrasts without sampling.

`fake_fit` builds the real `ScreenModel` (formula, data, spec) and a posterior whose
variables carry the backend's names and dims (``Intercept``, ``b`` over ``b_coef``,
``r_<term>`` over ``(<level>, <term>_coef)``, ``sd_<term>``, ``phi``), with values given
by the test or drawn at random, so every contrast formula can be checked exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

import screenformula as sf
from screenformula.results.fit import ScreenFit
from screenformula.spec.names import PHI, population_names


def small_screen(**kwargs: Any) -> sf.ScreenData:
    """Six genes x three guides, control + drugA + drugB, two groups, no pool sample."""
    options = {
        "n_genes": 6,
        "n_sgrnas_per_gene": 3,
        "treatments": ("drugA", "drugB"),
        "n_replicates": 2,
        "n_pool_samples": 0,
        "n_groups": 2,
        "random_seed": 0,
    }
    options.update(kwargs)
    data, _ = sf.simulate_screen(**options)
    return data


def fake_fit(
    data: sf.ScreenData,
    formula: str,
    values: dict[str, np.ndarray] | None = None,
    *,
    n_draws: int = 400,
    store_sgrna: bool = True,
    seed: int = 0,
    **model_kwargs: Any,
) -> tuple[ScreenFit, dict[str, np.ndarray]]:
    """A `ScreenFit` whose posterior holds ``values`` (arrays with draws first).

    Variables not in ``values`` are drawn from N(0, 0.3^2) (sds from |N|); the model has no
    replicate scales unless ``replicate_scale`` is given. Returns the fit
    and every array used (without the chain dimension).
    """
    rng = np.random.default_rng(seed)
    # the fakes hold no replicate scales: a model without them, unless asked
    model_kwargs.setdefault("replicate_scale", "none")
    model = sf.ScreenModel(formula, data, **model_kwargs)
    spec = model.spec
    values = dict(values or {})
    arrays: dict[str, np.ndarray] = {}
    variables: dict[str, tuple[tuple[str, ...], np.ndarray]] = {}
    coords: dict[str, Any] = {"chain": [0], "draw": np.arange(n_draws)}

    def put(name: str, dims: tuple[str, ...], shape: tuple[int, ...], positive: bool = False):
        if name in values:
            arr = np.broadcast_to(np.asarray(values[name], dtype=float), (n_draws, *shape))
        else:
            arr = rng.normal(0.0, 0.3, (n_draws, *shape))
            arr = np.abs(arr) + 0.05 if positive else arr
        arrays[name] = np.array(arr)
        variables[name] = (("chain", "draw", *dims), arr[None])

    population = population_names()
    if spec.mean.common.intercept:
        put(population.intercept, (), ())
    if spec.mean.common.names:
        coords[population.b_coef_dim] = list(spec.mean.common.names)
        put(population.b, (population.b_coef_dim,), (len(spec.mean.common.names),))
    for term in spec.groups:
        names = term.names
        coords[names.level_dim] = list(term.level_names)
        coords[names.coef_dim] = list(term.coef_names)
        put(names.sd, (names.coef_dim,), (term.n_coefs,), positive=True)
        if term.level == "sgrna" and not store_sgrna:
            arrays[names.effects] = values.get(names.effects)
            continue
        put(names.effects, (names.level_dim, names.coef_dim), (term.n_levels, term.n_coefs))
    if spec.dispersion.mode == "shared":
        put(PHI, (), (), positive=True)
    elif spec.dispersion.mode == "sgrna" and store_sgrna:
        coords["sgrna"] = list(map(str, data.sgrnas))
        put(PHI, ("sgrna",), (data.n_sgrnas,), positive=True)
    posterior = xr.Dataset(
        {k: xr.Variable(dims, v) for k, (dims, v) in variables.items()}, coords=coords
    )
    idata = xr.DataTree.from_dict({"posterior": posterior})
    fit = ScreenFit(model, idata, "nuts", {"store_sgrna": store_sgrna, "draws": n_draws})
    return fit, arrays
