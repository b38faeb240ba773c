"""A two-stage fit's posterior Dataset, with the names, dims and coords NUTS gives."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

__all__ = ["posterior_dataset"]


def posterior_dataset(pm_model: Any, values: dict[str, np.ndarray], shapes: dict) -> xr.Dataset:
    """A posterior Dataset with the dims and coords a NUTS fit gives these variables.

    ``values`` maps each variable to its draws, ``(chain, draw, ...)``.
    """
    data_vars, coords = {}, {}
    for name, arr in values.items():
        dims = pm_model.named_vars_to_dims.get(name)
        if not dims:
            dims = tuple(f"{name}_dim_{i}" for i in range(arr.ndim - 2))
        for d in dims:
            if d in pm_model.coords and pm_model.coords[d] is not None:
                coords[d] = list(pm_model.coords[d])
        data_vars[name] = (("chain", "draw", *dims), arr)
    n_draws = next(iter(values.values())).shape[1]
    coords.update({"chain": [0], "draw": np.arange(n_draws)})
    return xr.Dataset(data_vars, coords=coords)
