"""Guide-level contrast summaries kept in a fit instead of every guide-level draw.

A genome-wide posterior of every guide (80,000 guides x 4,000 draws x each guide-level
effect) does not fit in memory, yet ``sgrna_summary.txt`` and the guide table need only,
per guide and contrast, the numbers that `contrast_core.item_statistics` keeps: mean,
sd, counts of draws above / below 0 and +-delta, and HDI bounds. They are computed
while the draws exist (on disk, a block of guides at a time: `compute_guide_summaries`)
for every contrast of every factor that has a guide-level coefficient, at a grid of
``delta`` values and HDI probabilities, and stored in the fit's ``sgrna_summary`` group
(saved and loaded with it). `guide_statistics` then gives exactly what the draws would
have given for any of those contrasts (either way round) at any delta and HDI
probability on the grid; off the grid, the columns that depend on the missing one are
NaN and a warning says why.
"""

from __future__ import annotations

import itertools
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

from screenformula._constants import SGRNA
from screenformula.io.memmap import release_dataset
from screenformula.results import contrast_core as core
from screenformula.results.draws import (
    LOG2E,
    Contrast,
    PosteriorEffects,
    factor_levels,
    reference_class,
    resolve_contrasts,
)
from screenformula.spec.names import PHI

if TYPE_CHECKING:
    from screenformula.results.fit import ScreenFit

__all__ = [
    "GUIDE_DELTAS",
    "GUIDE_HDI_PROBS",
    "SUMMARY_GROUP",
    "compute_guide_summaries",
    "guide_statistics",
    "summary_factors",
]

#: Name of the fit's DataTree group holding the guide summaries.
SUMMARY_GROUP = "sgrna_summary"
#: Minimum effects (log2) at which guide draws beyond +-delta are counted.
GUIDE_DELTAS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
#: HDI probabilities kept for guides.
GUIDE_HDI_PROBS = (0.5, 0.8, 0.89, 0.9, 0.94, 0.95, 0.99)
#: Most levels of a factor for which every pair of levels is kept (else: each level
#: against the reference only).
MAX_PAIRWISE_LEVELS = 8
#: Memory for the blocks of guide draws summarised at a time (guides per block = this /
#: (threads x draws x 16 bytes)).
BLOCK_BYTES = 256 * 2**20
#: Threads summarising blocks of guides at once (at most one per core). Genome-wide HAP1
#: (71,090 guides x 1,000 draws, memory-mapped): 4.0 s in one thread.
SUMMARY_THREADS = 2


def summary_factors(fit: ScreenFit) -> list[str]:
    """Factors (sample-sheet columns) with a coefficient in a guide-level term."""
    factors = []
    for term in fit.model.spec.groups:
        if term.level != SGRNA:
            continue
        for coef in term.coef_names:
            if coef == "Intercept":
                continue
            factor = coef.split("[", 1)[0]
            if factor not in factors:
                factors.append(factor)
    return factors


def _contrasts_of(fit: ScreenFit, factor: str) -> list[tuple[str, Contrast]]:
    """The contrasts of ``factor`` kept: every pair of levels (or each against the reference)."""
    info = factor_levels(fit, factor)
    if info.numeric:
        return [(factor, c) for c in resolve_contrasts(fit, factor)[1]]
    levels = list(info.levels)
    if len(levels) > MAX_PAIRWISE_LEVELS and info.reference is not None:
        pairs = [(lv, info.reference) for lv in levels if lv != info.reference]
    else:
        pairs = [(a, b) for b, a in itertools.combinations(levels, 2)]
    out = []
    for a, b in pairs:
        out += [(factor, c) for c in resolve_contrasts(fit, factor, a=a, b=b)[1]]
    return out


def compute_guide_summaries(
    fit: ScreenFit,
    *,
    deltas: tuple[float, ...] = GUIDE_DELTAS,
    hdi_probs: tuple[float, ...] = GUIDE_HDI_PROBS,
    block_bytes: int = BLOCK_BYTES,
) -> xr.Dataset | None:
    """Guide statistics of every kept contrast, a block of guides at a time.

    ``fit.posterior`` may hold the guide-level variables lazily (a zarr store or a
    memory-mapped file): only one block of guides is read at a time. Returns None when
    the formula has no guide-level coefficient (guide effects then come from gene draws).

    Returns
    -------
    Dataset
        Dims ``contrast``, ``sgrna``, ``delta`` (log2), ``hdi_prob``: ``mean``, ``sd``,
        ``n_pos``, ``n_neg`` (contrast, sgrna), ``n_above``, ``n_below`` (contrast, delta,
        sgrna), ``hdi_low``, ``hdi_high`` (contrast, hdi_prob, sgrna), all natural log;
        ``factor`` per contrast; ``phi_mean`` (sgrna), the posterior mean per-guide
        dispersion, when the model has one; ``attrs["n_draws"]``.
    """
    contrasts = [item for f in summary_factors(fit) for item in _contrasts_of(fit, f)]
    if not contrasts:
        return None
    ex = PosteriorEffects(fit)
    n_sgrna = ex.data.n_sgrnas
    deltas_ln = tuple(float(d) / LOG2E for d in deltas)
    n_draws = ex.n_draws
    threads = max(1, min(SUMMARY_THREADS, os.cpu_count() or 1))
    # the same memory in all: each thread's block is a share of ``block_bytes``
    block = max(64, int(block_bytes // (8 * n_draws * 2 * threads)))

    def block_statistics(start: int) -> list[dict[str, np.ndarray]]:
        rows = slice(start, min(start + block, n_sgrna))
        return [
            core.item_statistics(
                ex.effect(c.weights, SGRNA, rows), deltas=deltas_ln, hdi_probs=hdi_probs
            )
            for _, c in contrasts
        ]

    per_contrast: list[dict[str, list[np.ndarray]]] = [{} for _ in contrasts]
    with ThreadPoolExecutor(threads) as pool:  # NumPy's sorts and copies release the GIL
        for block_stats in pool.map(block_statistics, range(0, n_sgrna, block)):
            for k, stats in enumerate(block_stats):
                for key, value in stats.items():
                    if key != "n_draws":
                        per_contrast[k].setdefault(key, []).append(value)
            release_dataset(fit.posterior)  # the blocks' pages of draws kept on disk
    joined = [{k: np.concatenate(v, axis=-1) for k, v in d.items()} for d in per_contrast]
    stack = {k: np.stack([d[k] for d in joined]) for k in joined[0]}
    ds = xr.Dataset(
        {
            "mean": (("contrast", SGRNA), stack["mean"]),
            "sd": (("contrast", SGRNA), stack["sd"]),
            "n_pos": (("contrast", SGRNA), stack["n_pos"].astype(np.int32)),
            "n_neg": (("contrast", SGRNA), stack["n_neg"].astype(np.int32)),
            "n_above": (("contrast", "delta", SGRNA), stack["n_above"].astype(np.int32)),
            "n_below": (("contrast", "delta", SGRNA), stack["n_below"].astype(np.int32)),
            "hdi_low": (("contrast", "hdi_prob", SGRNA), stack["hdi_low"]),
            "hdi_high": (("contrast", "hdi_prob", SGRNA), stack["hdi_high"]),
            "factor": ("contrast", np.array([f for f, _ in contrasts], dtype=str)),
        },
        coords={
            "contrast": np.array([c.label for _, c in contrasts], dtype=str),
            SGRNA: np.asarray(ex.data.sgrnas, dtype=str),
            "delta": np.asarray(deltas, dtype=float),
            "hdi_prob": np.asarray(hdi_probs, dtype=float),
        },
        attrs={"n_draws": int(n_draws), "scale": "natural log"},
    )
    phi = _phi_mean(fit, n_sgrna, block)
    if phi is not None:
        ds["phi_mean"] = (SGRNA, phi)
    return ds


def _phi_mean(fit: ScreenFit, n_sgrna: int, block: int) -> np.ndarray | None:
    post = fit.posterior
    if PHI not in post:
        return None
    phi = reference_class(post[PHI])
    if phi.dims[-1:] != (SGRNA,):
        return None
    out = np.empty(n_sgrna)
    for start in range(0, n_sgrna, block):
        rows = slice(start, min(start + block, n_sgrna))
        out[rows] = phi.isel({SGRNA: rows}).mean(dim=["chain", "draw"]).values
        release_dataset(post)
    return out


def guide_statistics(
    summary: xr.Dataset, factor: str, contrast: Contrast, delta: float, hdi_prob: float
) -> tuple[dict[str, np.ndarray], int | None, int | None] | None:
    """The kept statistics of ``contrast`` of ``factor`` (either way round), with grid indices.

    Returns None when the contrast was not kept; otherwise ``(stats, delta_index,
    hdi_index)`` for `contrast_core.summary_from_statistics`, an index being None (with
    a warning) when ``delta`` (log2) or ``hdi_prob`` is not on the kept grid.
    """
    kept = list(zip(summary["factor"].values, summary["contrast"].values, strict=True))
    reverse = None
    if (factor, contrast.label) in kept:
        k, reverse = kept.index((factor, contrast.label)), False
    elif contrast.control is not None:
        other = (factor, f"{contrast.control} vs {contrast.treatment}")
        if other in kept:
            k, reverse = kept.index(other), True
    if reverse is None:
        return None
    row = summary.isel(contrast=k)
    stats = {
        key: np.asarray(row[key].values, dtype=float)
        for key in ("mean", "sd", "n_pos", "n_neg", "n_above", "n_below", "hdi_low", "hdi_high")
    }
    stats["n_draws"] = np.asarray(summary.attrs["n_draws"])
    if reverse:
        stats = core.reversed_statistics(stats)
    delta_index = _grid_index(summary["delta"].values, delta)
    hdi_index = _grid_index(summary["hdi_prob"].values, hdi_prob)
    missing = []
    if delta_index is None:
        missing.append(
            f"q-values at delta={delta:g} (kept for delta in "
            f"{', '.join(f'{d:g}' for d in summary['delta'].values)})"
        )
    if hdi_index is None:
        missing.append(
            f"HDIs at hdi_prob={hdi_prob:g} (kept for "
            f"{', '.join(f'{p:g}' for p in summary['hdi_prob'].values)})"
        )
    if missing:
        warnings.warn(
            "guide-level draws were not kept for this fit, so the guide table has no "
            + " and no ".join(missing)
            + ": use one of those values, or refit with store_sgrna=True",
            UserWarning,
            stacklevel=4,
        )
    return stats, delta_index, hdi_index


def _grid_index(grid: np.ndarray, value: float) -> int | None:
    hits = np.flatnonzero(np.isclose(np.asarray(grid, dtype=float), float(value), atol=1e-12))
    return int(hits[0]) if hits.size else None
