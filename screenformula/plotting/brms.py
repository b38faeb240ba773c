"""brms's post-processing figures, drawn from arrays and tables.

`pp_check_plot` overlays the distribution of the observed counts on that of counts
replicated from the posterior (brms's ``pp_check(type = "dens_overlay")``), on the
``log10(count + 1)`` scale a screen's counts need; `conditional_effects_plot` draws
`ScreenFit.conditional_effects` tables. Both take plain arrays / tables (no model) and
return a `matplotlib.figure.Figure` built without pyplot, saved when ``path`` is given.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

__all__ = ["conditional_effects_plot", "pp_check_plot"]

OBSERVED_COLOR = "#1f2d3d"
REPLICATE_COLOR = "#8fb8de"


def _finish(fig: Figure, path: str | os.PathLike | None) -> Figure:
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=150, bbox_inches="tight")
    return fig


def pp_check_plot(
    observed: np.ndarray,
    replicated: np.ndarray,
    *,
    bins: int = 60,
    path: str | os.PathLike | None = None,
) -> Figure:
    """Density of the observed counts over the densities of replicated counts.

    Parameters
    ----------
    observed : array
        The observed counts (any shape; flattened).
    replicated : array
        Replicated counts, draws first (draws x the observed shape).
    bins : int
        Histogram bins on the ``log10(count + 1)`` scale, shared by every line.
    path : path, optional
        Where to save the figure.
    """
    y = np.log10(np.asarray(observed, dtype=float).ravel() + 1)
    yrep = np.log10(np.asarray(replicated, dtype=float).reshape(len(replicated), -1) + 1)
    if yrep.shape[1] != y.size:
        raise ValueError(
            f"replicated draws have {yrep.shape[1]} values each, the observed counts {y.size}"
        )
    top = max(float(y.max(initial=0)), float(yrep.max(initial=0)))
    edges = np.linspace(0.0, top + 1e-9, bins + 1)
    mids = (edges[:-1] + edges[1:]) / 2
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for i, row in enumerate(yrep):
        density, _ = np.histogram(row, edges, density=True)
        ax.plot(mids, density, color=REPLICATE_COLOR, lw=0.8, alpha=0.7, label="y_rep" * (i == 0))
    density, _ = np.histogram(y, edges, density=True)
    ax.plot(mids, density, color=OBSERVED_COLOR, lw=2.0, label="y")
    ax.set_xlabel("log10(count + 1)")
    ax.set_ylabel("density")
    ax.set_title(f"posterior predictive check ({len(yrep)} replicated data sets)")
    ax.legend(frameon=False)
    return _finish(fig, path)


def conditional_effects_plot(
    tables: dict[str, pd.DataFrame] | pd.DataFrame, *, path: str | os.PathLike | None = None
) -> Figure:
    """One panel per predictor: estimate and interval at each level.

    ``tables`` is what `ScreenFit.conditional_effects` returns (or one of its tables).
    """
    if isinstance(tables, pd.DataFrame):
        tables = {str(tables["effect"].iloc[0]) if len(tables) else "effect": tables}
    if not tables:
        raise ValueError("nothing to plot: no conditional effects")
    fig = Figure(figsize=(4 * len(tables), 3.5))
    axes = np.atleast_1d(fig.subplots(1, len(tables)))
    for ax, (name, table) in zip(axes, tables.items(), strict=True):
        x = np.arange(len(table))
        est = table["estimate__"].to_numpy(dtype=float)
        err = np.vstack(
            [est - table["lower__"].to_numpy(dtype=float), table["upper__"].to_numpy() - est]
        )
        ax.errorbar(x, est, yerr=err, fmt="o", color=OBSERVED_COLOR, capsize=4)
        ax.set_xticks(x, [str(v) for v in table["effect1__"]], rotation=30, ha="right")
        ax.set_xlabel(name)
        scale = table.attrs.get("scale", "response")
        ax.set_ylabel(
            {"response": "expected count", "linear": "log expected count"}.get(
                scale, "log2 fold-change"
            )
        )
        if scale == "response":
            ax.set_yscale("log")
    return _finish(fig, path)
