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


def describe_storage(options: dict[str, Any]) -> list[str]:
    """Lines saying what a fit kept of its guide-level draws and log-likelihood, and why."""
    info = options.get("storage")
    if not info:
        return []
    lines = []
    size = _bytes(info["sgrna_draws_bytes"])
    budget = _bytes(info["sgrna_budget_bytes"])
    if options.get("store_sgrna"):
        lines.append(f"guide-level draws kept ({info['store_sgrna']}): {size}")
    else:
        lines.append(
            f"guide-level draws not kept ({info['store_sgrna']}: they would take {size}, "
            f"budget {budget}); guide results come from summaries kept during the fit"
        )
    ll_size = _bytes(info["log_likelihood_bytes"])
    state = "computed" if options.get("log_likelihood") else "not computed"
    lines.append(
        f"pointwise log-likelihood {state} ({info['log_likelihood']}): it takes {ll_size}, "
        f"budget {_bytes(info['log_likelihood_budget_bytes'])}"
        + ("" if options.get("store_sgrna") else ", and it needs the guide-level draws")
    )
    return lines


def _bytes(n: int) -> str:
    for unit, size in (("GB", 2**30), ("MB", 2**20), ("kB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"
