"""brms's ``conditional_effects``: each population predictor's effect, per level.

For every sample-sheet variable of the population-level formula (``treatment``), each of
its levels gets the population linear predictor of a screen sample at that level with
the other variables at their reference level (``control``; a numeric variable is shown
at each value it takes in the sheet). As brms (``re_formula = NA``), group-level effects
are left out: the result is a typical guide of a typical gene, at a reference depth (the
geometric mean of the screen samples' size factors, as `expected_counts`).

``scale="response"`` gives the expected count, ``"linear"`` the log of it, ``"lfc"`` the
log2 fold-change from the reference level. Columns follow brms: ``effect1__`` (the
level), ``estimate__`` (posterior median), ``se__`` (median absolute deviation, scaled as
R's ``mad``), ``lower__`` / ``upper__`` (equal-tailed ``prob`` interval).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from screenformula.errors import FitError
from screenformula.results.draws import LOG2E, flatten_draws, ordered_levels
from screenformula.spec import names
from screenformula.spec.formula import parse_formula, variables_of

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from screenformula.results.fit import ScreenFit

__all__ = ["ConditionalEffects", "conditional_effects", "population_variables"]

#: R's ``mad`` constant (a normal's sd from its median absolute deviation).
MAD_SCALE = 1.4826


class ConditionalEffects(dict):
    """``{variable: DataFrame}`` of `conditional_effects`; ``.plot()`` draws them.

    As brms's ``plot(conditional_effects(fit))``: ``.plot(path=None)`` returns a figure
    (`screenformula.plotting.brms.conditional_effects_plot`).
    """

    def plot(self, path: str | os.PathLike | None = None) -> Figure:
        """One panel per variable: estimate and interval at each level."""
        from screenformula.plotting.brms import conditional_effects_plot

        return conditional_effects_plot(dict(self), path=path)

    def __repr__(self) -> str:
        return "\n\n".join(
            f"{name}:\n{table.to_string(index=False)}" for name, table in self.items()
        )


def population_variables(fit: ScreenFit) -> list[str]:
    """Sample-sheet variables of the population-level formula, in formula order."""
    spec = fit.model.spec
    common = parse_formula(spec.formula).common
    found = variables_of(common)
    columns = list(spec.data.samples.columns)
    return [c for c in columns if c in found]


def _design_rows(
    fit: ScreenFit, effect: str, others: list[str]
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Levels of ``effect``, their design rows (levels x coefs) and offsets."""
    spec = fit.model.spec
    samples = spec.data.samples.loc[list(spec.samples)]
    X, offset = spec.mean.common.X, spec.mean.common.offset
    at_reference = np.ones(len(samples), bool)
    for var in others:
        column = samples[var]
        if pd.api.types.is_numeric_dtype(column) and not isinstance(
            column.dtype, pd.CategoricalDtype
        ):
            continue  # numeric: averaged over the samples below
        reference = ordered_levels(column)[0]
        at_reference &= column.astype(str).to_numpy() == reference
    column = samples[effect]
    if pd.api.types.is_numeric_dtype(column) and not isinstance(column.dtype, pd.CategoricalDtype):
        levels = [str(v) for v in np.unique(column.to_numpy())]  # numeric order
    else:
        levels = ordered_levels(column)
    labels = column.astype(str).to_numpy()
    rows, offsets = [], []
    for level in levels:
        chosen = (labels == level) & at_reference
        if not chosen.any():
            chosen = labels == level
        rows.append(X[chosen].mean(axis=0))
        offsets.append(offset[chosen].mean())
    return levels, np.asarray(rows).reshape(len(levels), X.shape[1]), np.asarray(offsets)


def conditional_effects(
    fit: ScreenFit,
    effects: str | Sequence[str] | None = None,
    *,
    scale: Literal["response", "linear", "lfc"] = "response",
    prob: float = 0.95,
    reference_depth: float | None = None,
) -> ConditionalEffects:
    """The population-level effect of each predictor, per level (brms's ``conditional_effects``).

    Parameters
    ----------
    fit : ScreenFit
    effects : str or list of str, optional
        Sample-sheet variables of the population formula (default: all of them).
    scale : {"response", "linear", "lfc"}
        Expected count of a typical guide, its log, or log2 fold-change from the level
        shown first (the reference).
    prob : float
        Interval probability (``lower__``, ``upper__``).
    reference_depth : float, optional
        Size factor of the expected count (default: geometric mean of the screen
        samples').

    Returns
    -------
    ConditionalEffects
        A dict: per variable, one row per level: ``effect1__``, ``estimate__``, ``se__``,
        ``lower__``, ``upper__``, and ``effect`` (the variable's name).
    """
    if scale not in ("response", "linear", "lfc"):
        raise FitError(f"scale must be 'response', 'linear' or 'lfc', not {scale!r}")
    if not 0 < prob < 1:
        raise FitError(f"prob must be between 0 and 1, got {prob}")
    spec = fit.model.spec
    available = population_variables(fit)
    if effects is None:
        wanted = available
    else:
        wanted = [effects] if isinstance(effects, str) else list(effects)
    for var in wanted:
        if var not in available:
            raise FitError(
                f"{var!r} is not a population-level predictor; the formula's are: "
                f"{', '.join(available) or 'none'}"
            )
    post = fit.posterior
    n = int(post.sizes.get("chain", 1) * post.sizes["draw"])
    intercept = flatten_draws(post[names.INTERCEPT]) if names.INTERCEPT in post else np.zeros(n)
    b = flatten_draws(post[names.B]) if names.B in post else np.zeros((n, 0))
    log_depth = (
        float(np.mean(spec.log_size_factors))
        if reference_depth is None
        else float(np.log(reference_depth))
    )
    pool = 0.0
    if spec.pool.mode == "offset":
        pool = float(np.mean(spec.pool.log_abundance))
    out = ConditionalEffects()
    lo, hi = (1 - prob) / 2, 1 - (1 - prob) / 2
    for var in wanted:
        levels, rows, offsets = _design_rows(fit, var, [v for v in available if v != var])
        eta = intercept[:, None] + b @ rows.T + offsets[None, :]  # (draws, levels)
        if scale == "response":
            values = np.exp(eta + log_depth + pool)
        elif scale == "linear":
            values = eta + log_depth + pool
        else:
            values = (eta - eta[:, :1]) * LOG2E
        median = np.median(values, axis=0)
        table = pd.DataFrame(
            {
                "effect": var,
                "effect1__": levels,
                "estimate__": median,
                "se__": MAD_SCALE * np.median(np.abs(values - median), axis=0),
                "lower__": np.quantile(values, lo, axis=0),
                "upper__": np.quantile(values, hi, axis=0),
            }
        )
        table.attrs.update({"scale": scale, "prob": prob, "reference_depth": np.exp(log_depth)})
        out[var] = table
    return out
