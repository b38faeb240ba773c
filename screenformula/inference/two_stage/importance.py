"""Importance correction of per-gene Laplace proposals with Pareto-smoothed weights."""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp


def psis(log_ratio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pareto-smoothed, normalised log weights and k-hat along the last axis.

    ``log_ratio`` is ``log p - log q`` (target over proposal). ArviZ's ``psislw`` takes
    the negated ratios.
    """
    from arviz_stats.base.array import array_stats

    lr = np.where(np.isfinite(log_ratio), log_ratio, -np.inf)
    lr = lr - np.max(lr, axis=-1, keepdims=True)
    lr = np.where(np.isfinite(lr), lr, -1e10)
    lw, khat = array_stats.psislw(-lr, axis=-1)
    lw = lw - logsumexp(lw, axis=-1, keepdims=True)
    return lw, np.asarray(khat)


def ess(log_weights: np.ndarray) -> np.ndarray:
    """Importance-sampling effective sample size of normalised log weights (last axis)."""
    return np.exp(-logsumexp(2 * log_weights, axis=-1))


def systematic_resample(log_weights: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` indices per row drawn by systematic resampling from normalised log weights.

    Parameters
    ----------
    log_weights : (rows, n_proposals)
    """
    w = np.exp(log_weights)
    cdf = np.cumsum(w, axis=-1)
    cdf[:, -1] = 1.0
    u = (rng.random((w.shape[0], 1)) + np.arange(n)[None, :]) / n
    rows, m = w.shape
    offset = np.arange(rows)[:, None]
    flat = np.searchsorted((cdf + offset).ravel(), (u + offset).ravel(), side="right")
    idx = flat.reshape(rows, n) - offset * m
    idx = np.clip(idx, 0, m - 1)
    # shuffle so that draws are not sorted by proposal
    perm = np.argsort(rng.random(idx.shape), axis=1)
    return np.take_along_axis(idx, perm, axis=1)
