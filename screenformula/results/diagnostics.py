"""Convergence checks (R-hat, ESS, divergences) via arviz-stats."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def convergence_table(
    idata: Any,
    var_names: list[str] | None = None,
    *,
    rhat_max: float = 1.01,
    ess_min: float = 400.0,
) -> pd.DataFrame:
    """Worst R-hat and smallest bulk/tail ESS of each posterior variable.

    Entries that are constant across draws (the diagonal of a correlation matrix)
    are skipped. The number of divergent transitions is in ``attrs["divergences"]``.
    """
    import arviz_stats  # noqa: F401 - registers the .azstats accessor

    post = idata["posterior"].to_dataset()
    names = var_names or [v for v in post.data_vars]
    rows = []
    for name in names:
        da = post[name]
        varying = da.std(("chain", "draw")) > 1e-12
        if not bool(varying.any()):
            continue
        da = da.where(varying)
        rhat = da.azstats.rhat(sample_dims=["chain", "draw"]) if da.sizes["chain"] > 1 else None
        bulk = da.azstats.ess(sample_dims=["chain", "draw"], method="bulk")
        tail = da.azstats.ess(sample_dims=["chain", "draw"], method="tail")
        row = {
            "variable": name,
            "size": int(np.prod([da.sizes[d] for d in da.dims if d not in ("chain", "draw")])),
            "rhat_max": float(rhat.max()) if rhat is not None else np.nan,
            "ess_bulk_min": float(bulk.min()),
            "ess_tail_min": float(tail.min()),
        }
        rows.append(row)
    table = pd.DataFrame(rows).set_index("variable")
    if not table.empty:
        table["ok"] = (table["rhat_max"].fillna(1.0) <= rhat_max) & (
            table[["ess_bulk_min", "ess_tail_min"]].min(axis=1) >= ess_min
        )
    divergences = 0
    if "sample_stats" in idata.children and "diverging" in idata["sample_stats"]:
        divergences = int(idata["sample_stats"]["diverging"].sum())
    table.attrs["divergences"] = divergences
    return table
