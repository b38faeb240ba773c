"""Importance correction of per-gene Laplace proposals with Pareto-smoothed weights.

`psis` is vectorised over genes: ArviZ's ``psislw`` fits the generalised Pareto tail one
row at a time in Python (3.7 s for 2,000 genes x 250 proposals, most of stage 2's
importance step); the same algorithm on whole blocks of rows takes milliseconds.
"""

from __future__ import annotations

import numba
import numpy as np
from scipy.special import logsumexp

#: Rows smoothed at once by `psis` (bounds its work arrays: each is a copy of the rows
#: being smoothed, and a genome-wide chunk's pooled log-ratios, 9,000 genes x 1,000
#: proposals, took about 600 MB of them at once, most of a stage-2 worker's peak).
_ROW_BLOCK = 1000


def gpd_fit(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Generalised Pareto shape ``k`` and scale ``sigma`` of every row of ``x``.

    Zhang & Stephens (2009) with the weakly informative prior of Vehtari et al. (as in
    ArviZ's ``_gpdfit``); ``x`` holds non-negative exceedances, sorted ascending per row.
    """
    rows, n = x.shape
    prior_bs, prior_k = 3.0, 10.0
    m_est = 30 + int(n**0.5)
    grid = 1 - np.sqrt(m_est / (np.arange(1, m_est + 1) - 0.5))  # (m,)
    quart = x[:, int(n / 4 + 0.5) - 1]
    far = quart <= x[:, 0]  # first quartile at the minimum: far from a Pareto tail
    with np.errstate(divide="ignore", invalid="ignore"):
        b = grid[None, :] / (prior_bs * quart[:, None]) + 1 / x[:, -1:]  # (rows, m)
        k = np.log1p(-b[:, :, None] * x[:, None, :]).mean(axis=2)  # (rows, m)
        len_scale = n * (np.log(-(b / k)) - k - 1)
        weights = 1 / np.exp(len_scale[:, None, :] - len_scale[:, :, None]).sum(axis=2)
        weights = np.where(weights >= 10 * np.finfo(float).eps, weights, 0.0)
        weights /= weights.sum(axis=1, keepdims=True)
        b_post = (b * weights).sum(axis=1)
        k_post = np.log1p(-b_post[:, None] * x).mean(axis=1)
        sigma = -k_post / b_post
    k_post = (n * k_post + prior_k * 0.5) / (n + prior_k)
    k_post = np.where(np.isnan(k_post), np.inf, k_post)
    return np.where(far, np.nan, k_post), np.where(far, np.nan, sigma)


def psis(log_ratio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pareto-smoothed, normalised log weights and k-hat along the last axis.

    ``log_ratio`` is ``log p - log q`` (target over proposal), shape (rows, n). The largest
    ``floor(3 sqrt(n))`` ratios of each row (``floor(n / 5)`` for ``n <= 225``) are replaced
    by the expected order statistics of a generalised Pareto fitted to them (Vehtari et
    al. 2024), as ArviZ's ``psislw`` does one row at a time (same results to rounding).
    Rows are independent: they are smoothed `_ROW_BLOCK` at a time.
    """
    rows = log_ratio.shape[0]
    if rows <= _ROW_BLOCK:
        return _psis_rows(log_ratio)
    out = np.empty(log_ratio.shape)
    khat = np.empty(rows)
    for lo in range(0, rows, _ROW_BLOCK):
        hi = min(lo + _ROW_BLOCK, rows)
        out[lo:hi], khat[lo:hi] = _psis_rows(log_ratio[lo:hi])
    return out, khat


def pooled_khat(parts: list[np.ndarray]) -> np.ndarray:
    """Pareto k-hat of every row over the columns of all ``parts`` (rows, n_k) together.

    The same as ``psis(np.concatenate(parts, axis=1))[1]``, without that concatenation
    of every part at once (a genome-wide chunk's 1,000 pooled proposals per gene).
    """
    rows = parts[0].shape[0]
    khat = np.empty(rows)
    for lo in range(0, rows, _ROW_BLOCK):
        hi = min(lo + _ROW_BLOCK, rows)
        khat[lo:hi] = _psis_rows(np.concatenate([p[lo:hi] for p in parts], axis=1))[1]
    return khat


def _psis_rows(log_ratio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`psis` of one block of rows, all at once."""
    lr = np.where(np.isfinite(log_ratio), log_ratio, -np.inf)
    lr = lr - np.max(lr, axis=-1, keepdims=True)
    lr = np.where(np.isfinite(lr), lr, -1e10)
    rows, n = lr.shape
    tail = int(np.floor(3 * np.sqrt(n))) if n > 225 else n // 5
    khat = np.full(rows, np.inf)
    if tail < 5:
        return lr - logsumexp(lr, axis=-1, keepdims=True), khat
    order = np.argsort(lr, axis=1)
    srt = np.take_along_axis(lr, order, axis=1)
    cutoff = srt[:, n - tail - 1]
    exp_cut = np.exp(cutoff)[:, None]
    x_tail = np.maximum(np.exp(srt[:, n - tail :]) - exp_cut, 0.0)
    khat, sigma = gpd_fit(x_tail)
    p = (np.arange(tail) + 0.5) / tail
    good = np.isfinite(khat) & (sigma > 0)
    kk = np.where(np.abs(khat) < np.finfo(float).eps, 1.0, khat)[:, None]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        q = np.where(
            np.abs(khat)[:, None] < np.finfo(float).eps,
            -np.log1p(-p)[None, :],
            np.expm1(-kk * np.log1p(-p)[None, :]) / kk,
        )
        smoothed = np.minimum(np.log(q * sigma[:, None] + exp_cut), 0.0)
    new_tail = np.where(good[:, None], smoothed, srt[:, n - tail :])
    out = lr.copy()
    np.put_along_axis(out, order[:, n - tail :], new_tail, axis=1)
    return out - logsumexp(out, axis=-1, keepdims=True), khat


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


def gather_guide_draws(
    proposals: np.ndarray,
    idx: np.ndarray,
    gene_of_guide: np.ndarray,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Every guide's resampled proposals, draw-major: ``out[j, g] = proposals[g, idx[gene, j]]``.

    Parameters
    ----------
    proposals : (n_sgrna, n_proposals, c)
        Each guide's coordinates in every proposal (guide-major: one guide's proposals are
        one contiguous block).
    idx : (n_genes, m)
        The proposals resampled for each gene (`systematic_resample`).
    gene_of_guide : (n_sgrna,)
    out : (m, n_sgrna, c), optional
        A C-contiguous array to fill (a buffer reused between rounds).

    Returns
    -------
    (m, n_sgrna, c), C-contiguous: draw ``j`` of every guide is one block, as the guide
    writers read it (NumPy's ``take_along_axis`` gave the (n_sgrna, m, c) gather, whose
    per-draw slices each needed a strided copy).
    """
    shape = (idx.shape[1], *proposals.shape[::2])
    if out is None:
        out = np.empty(shape, dtype=proposals.dtype)
    elif out.shape != shape or not out.flags.c_contiguous:
        raise ValueError(f"out has shape {out.shape}, not the C-contiguous {shape}")
    _gather(proposals, np.ascontiguousarray(idx), np.ascontiguousarray(gene_of_guide), out)
    return out


@numba.njit(cache=True)
def _gather(proposals, idx, gene_of_guide, out):  # noqa: ANN001, ANN202
    n_sgrna, _, c = proposals.shape
    m = idx.shape[1]
    for g in range(n_sgrna):
        row = idx[gene_of_guide[g]]
        for j in range(m):
            s = row[j]
            for t in range(c):
                out[j, g, t] = proposals[g, s, t]
