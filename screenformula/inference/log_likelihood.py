"""Pointwise log-likelihood of the observed counts, for LOO.

PyMC's ``compute_log_likelihood`` looks free variables up by the names of their
untransformed value variables, which for ``LKJCorr`` differ from the variable's own
name (``L_gene`` vs ``L_gene_cholesky``); this does the same work keyed by the
random variables themselves.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pymc as pm
import xarray as xr
from pymc.model.transform.conditioning import remove_value_transforms


def add_log_likelihood(idata: Any, model: pm.Model, observed: list[str]) -> None:
    """Add a ``log_likelihood`` group with one entry per observed count."""
    umodel = remove_value_transforms(model)
    free = list(umodel.free_RVs)
    values = [umodel.rvs_to_values[rv] for rv in free]
    outs = umodel.logp(vars=[umodel[name] for name in observed], sum=False)
    fn = umodel.compile_fn(inputs=values, outs=outs, on_unused_input="ignore", point_fn=False)
    post = idata["posterior"].to_dataset()
    n_chain, n_draw = post.sizes["chain"], post.sizes["draw"]
    arrays = [post[rv.name].values for rv in free]
    shapes = [model.rvs_to_values[model[name]].data.shape for name in observed]
    results = [np.empty((n_chain, n_draw, *shape), dtype=float) for shape in shapes]
    for c in range(n_chain):
        for d in range(n_draw):
            point = [a[c, d].astype(v.type.dtype) for a, v in zip(arrays, values, strict=True)]
            for out, value in zip(results, fn(*point), strict=True):
                out[c, d] = value
    data = {}
    coords = {"chain": post["chain"].values, "draw": post["draw"].values}
    for name, out in zip(observed, results, strict=True):
        dims = model.named_vars_to_dims[name]
        data[name] = (("chain", "draw", *dims), out)
        coords.update({dim: list(model.coords[dim]) for dim in dims})
    idata["log_likelihood"] = xr.DataTree(xr.Dataset(data, coords=coords))
