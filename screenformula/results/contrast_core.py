"""Posterior summaries of contrasts: pure NumPy on arrays of draws (draws x items).

This is the bottom layer of the contrast code (as arviz-stats keeps its array functions
apart from the xarray and table layers): every function takes a 2-D array whose rows are
posterior draws (chains already flattened) and whose columns are items (genes, guides,
groups), and works on whole arrays. Nothing loops over items in Python; long arrays are
processed in blocks of columns only to bound memory.

Definitions (``x`` one item's draws, ``delta >= 0`` a minimum effect)
-------------------------------------------------------------------
- ``prob_up = P(x > 0)``, ``prob_down = P(x < 0)``.
- ``lfsr = min(P(x >= 0), P(x <= 0)) = 1 - max(prob_up, prob_down)``: the local false
  sign rate of Stephens (2017). A draw exactly at 0 counts against both signs, so a
  posterior sitting exactly at 0 has lfsr 1 (its sign is not known), never 0.
- ``pep = P(|x| <= delta)``: the posterior probability that the effect is negligible.
  With ``delta = 0`` it is ``P(x = 0)``, which is 0 for a continuous posterior.
- ``error_down = 1 - P(x < -delta)``, ``error_up = 1 - P(x > delta)``: the posterior
  probability that calling the item down (up) by more than ``delta`` is wrong.
- ``error = min(error_down, error_up) = 1 - max(P(x < -delta), P(x > delta))``: the local
  error of calling the item in its more probable direction. It equals
  ``pep + P(effect beyond delta on the other side)``, so it is never below the PEP and
  the difference is the (usually negligible) chance of a large effect of the opposite
  sign. With ``delta = 0`` it is exactly the lfsr; this is what keeps ``delta = 0``
  meaningful (PEP-based q-values would call every gene of a continuous posterior).
- q-values (Bayesian FDR, Newton et al. 2004; Stephens' s-values for ``delta = 0``): sort
  the local errors; the q-value of an item is the mean of the local errors of all items
  whose error is at most its own (ties share one q-value): the posterior expected FDR of
  the list that reports the item and everything at least as strong.
- Calls (``call_rule``): ``"local"`` (the default) calls an item when its own local error
  is at most ``fdr_target``; ``"qvalue"`` when its q-value is. A q-value is a running
  mean, so behind thousands of certain calls it admits items whose own error is far
  above the target (on HAP1, genes with a 20 % chance of not being depleted). Every
  local call also has ``q <= fdr_target`` (a mean of errors no larger than its own), so
  the local list's Bayesian FDR is at most the target too: it is the stricter rule.
- HDI: the narrowest interval holding ``floor(prob * n) + 1`` of the ``n`` sorted draws
  (the sorted-window estimator arviz uses), computed for all columns at once.
- ``prob_top``/``prob_bottom``: the share of draws in which an item has the largest
  (smallest) value of all items (ties go to the first item, as ``argmax`` does).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "CALL_RULES",
    "DEFAULT_DELTA",
    "as_draws",
    "check_call",
    "evidence_order",
    "hdi",
    "hit_calls",
    "item_statistics",
    "lfsr",
    "local_errors",
    "mean_rank",
    "pep",
    "prob_down",
    "prob_extreme",
    "prob_up",
    "qvalues",
    "rank_draws",
    "reversed_statistics",
    "summarize",
    "summary_from_statistics",
]

#: The default minimum |LFC| (log2) of a call, for ``ScreenFit.contrast``, the command line
#: and the report alike: a gene is a hit when its LFC is beyond +-0.5 log2 (1.41-fold) at
#: the FDR target. (The functions here take ``delta`` on the draws' own scale, default 0.)
DEFAULT_DELTA = 0.5

#: How a hit is called from the local errors (see the module docstring); the first is the
#: default of ``ScreenFit.contrast``, the command line and the report.
CALL_RULES = ("local", "qvalue")

#: Columns per block: small blocks keep the column sort in cache (64 columns x 4000 draws
#: is 2 MB; measured fastest on 4000 x 20000 draws, see benchmarks/bench_contrasts.py).
CHUNK_SIZE = 64


def as_draws(values: np.ndarray) -> np.ndarray:
    """Return ``values`` as a 2-D float array (draws x items); 1-D means one item."""
    arr = np.asarray(values, dtype=float)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"draws must be a 2-D (draws x items) array, got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError("draws must hold at least one draw")
    return arr


def _blocks(n_items: int, chunk_size: int) -> range:
    return range(0, n_items, max(1, int(chunk_size)))


def prob_up(draws: np.ndarray) -> np.ndarray:
    """``P(x > 0)`` per item."""
    x = as_draws(draws)
    return np.count_nonzero(x > 0, axis=0) / x.shape[0]


def prob_down(draws: np.ndarray) -> np.ndarray:
    """``P(x < 0)`` per item."""
    x = as_draws(draws)
    return np.count_nonzero(x < 0, axis=0) / x.shape[0]


def lfsr(draws: np.ndarray) -> np.ndarray:
    """Local false sign rate ``min(P(x >= 0), P(x <= 0))`` per item (ties at 0 count)."""
    x = as_draws(draws)
    n = x.shape[0]
    return 1.0 - np.maximum(np.count_nonzero(x > 0, axis=0), np.count_nonzero(x < 0, axis=0)) / n


def pep(draws: np.ndarray, delta: float = 0.0) -> np.ndarray:
    """Posterior error probability ``P(|x| <= delta)`` per item."""
    x = as_draws(draws)
    return np.count_nonzero(np.abs(x) <= _check_delta(delta), axis=0) / x.shape[0]


def local_errors(
    draws: np.ndarray, delta: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Local errors of calling each item down, up, or in its more probable direction.

    Returns
    -------
    error_down, error_up, error : ndarray
        ``1 - P(x < -delta)``, ``1 - P(x > delta)`` and their minimum (the lfsr when
        ``delta = 0``).
    """
    x = as_draws(draws)
    delta = _check_delta(delta)
    n = x.shape[0]
    down = 1.0 - np.count_nonzero(x < -delta, axis=0) / n
    up = 1.0 - np.count_nonzero(x > delta, axis=0) / n
    return down, up, np.minimum(down, up)


def qvalues(local_error: np.ndarray) -> np.ndarray:
    """Bayesian FDR q-values from local error rates (running mean of the sorted errors).

    ``q_i`` is the mean of all errors ``<= error_i`` (so tied errors share a q-value and
    q-values are monotone in the errors). NaN errors give NaN q-values and are left out.

    Examples
    --------
    >>> qvalues(np.array([0.01, 0.2, 0.05, 0.5])).round(4)
    array([0.01  , 0.0867, 0.03  , 0.19  ])
    """
    err = np.asarray(local_error, dtype=float)
    out = np.full(err.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(err))
    if valid.size == 0:
        return out
    order = valid[np.argsort(err[valid], kind="stable")]
    sorted_err = err[order]
    running = np.cumsum(sorted_err) / np.arange(1, sorted_err.size + 1)
    last_tie = np.searchsorted(sorted_err, sorted_err, side="right") - 1
    out[order] = np.minimum(running[last_tie], 1.0)
    return out


def hdi(
    draws: np.ndarray, prob: float = 0.94, *, chunk_size: int = CHUNK_SIZE
) -> tuple[np.ndarray, np.ndarray]:
    """Highest-density interval per item (vectorised sorted-window estimator).

    Returns
    -------
    low, high : ndarray
    """
    x = as_draws(draws)
    prob = _check_prob(prob)
    low = np.empty(x.shape[1])
    high = np.empty(x.shape[1])
    for start in _blocks(x.shape[1], chunk_size):
        block = np.sort(x[:, start : start + chunk_size], axis=0)
        low[start : start + block.shape[1]], high[start : start + block.shape[1]] = _hdi_sorted(
            block, prob
        )
    return low, high


def _hdi_sorted(sorted_block: np.ndarray, prob: float) -> tuple[np.ndarray, np.ndarray]:
    n = sorted_block.shape[0]
    width = int(np.floor(prob * n))
    if width >= n - 1 or n == 1:
        return sorted_block[0], sorted_block[-1]
    widths = sorted_block[width:] - sorted_block[: n - width]
    start = np.argmin(widths, axis=0)
    cols = np.arange(sorted_block.shape[1])
    return sorted_block[start, cols], sorted_block[start + width, cols]


def prob_extreme(draws: np.ndarray, largest: bool = True) -> np.ndarray:
    """Share of draws in which each item is the largest (or smallest) of all items."""
    x = as_draws(draws)
    winner = np.argmax(x, axis=1) if largest else np.argmin(x, axis=1)
    return np.bincount(winner, minlength=x.shape[1]) / x.shape[0]


def rank_draws(draws: np.ndarray, descending: bool = True) -> np.ndarray:
    """Rank of each item within each draw (1 = largest when ``descending``)."""
    x = as_draws(draws)
    order = np.argsort(-x if descending else x, axis=1, kind="stable")
    ranks = np.empty(x.shape, dtype=np.int64)
    np.put_along_axis(ranks, order, np.arange(1, x.shape[1] + 1)[None, :], axis=1)
    return ranks


def mean_rank(draws: np.ndarray, descending: bool = True) -> np.ndarray:
    """Posterior mean of each item's per-draw rank (1 = largest when ``descending``)."""
    return rank_draws(draws, descending).mean(axis=0)


def evidence_order(error: np.ndarray, mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """Ranks (1 = strongest) by local error, ties broken by ``|mean| / sd`` (larger first)."""
    error = np.asarray(error, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.abs(np.asarray(mean, dtype=float)) / np.asarray(sd, dtype=float)
    z = np.where(np.isnan(z), 0.0, z)
    order = np.lexsort((-z, np.where(np.isnan(error), np.inf, error)))
    ranks = np.empty(error.shape, dtype=np.int64)
    ranks[order] = np.arange(1, error.size + 1)
    return ranks


def item_statistics(
    draws: np.ndarray,
    *,
    deltas: tuple[float, ...] = (0.0,),
    hdi_probs: tuple[float, ...] = (0.94,),
    chunk_size: int = CHUNK_SIZE,
) -> dict[str, np.ndarray]:
    """Per-item statistics from which `summary_from_statistics` gives every summary.

    Everything `summarize` reports per item depends only on these numbers, so they can
    be computed block by block (of items) while the draws exist and kept instead of the
    draws; the q-values and ranks, which compare items, are computed from them later.

    Parameters
    ----------
    draws : ndarray (draws x items)
    deltas : tuple of float
        Minimum effect sizes at which to count draws beyond ``+delta`` and ``-delta``.
    hdi_probs : tuple of float
        Probability masses of the HDIs to keep.
    chunk_size : int
        Columns per block.

    Returns
    -------
    dict of ndarray
        ``mean``, ``sd``, ``n_pos`` (draws > 0), ``n_neg`` (draws < 0), each of shape
        ``(items,)``; ``n_above`` / ``n_below`` (draws > delta, < -delta) of shape
        ``(len(deltas), items)``; ``hdi_low`` / ``hdi_high`` of shape
        ``(len(hdi_probs), items)``; ``n_draws`` (a 0-d array).
    """
    x = as_draws(draws)
    deltas = tuple(_check_delta(d) for d in deltas)
    hdi_probs = tuple(_check_prob(p) for p in hdi_probs)
    n, m = x.shape
    out = {k: np.empty(m) for k in ("mean", "sd", "n_pos", "n_neg")}
    for k in ("n_above", "n_below"):
        out[k] = np.empty((len(deltas), m))
    for k in ("hdi_low", "hdi_high"):
        out[k] = np.empty((len(hdi_probs), m))
    for start in _blocks(m, chunk_size):
        block = np.sort(x[:, start : start + chunk_size], axis=0)
        if not np.isfinite(block[[0, -1]]).all():
            raise ValueError("draws contain NaN or infinite values")
        cols = slice(start, start + block.shape[1])
        mean = block.mean(axis=0)
        out["mean"][cols] = mean
        out["sd"][cols] = (
            np.sqrt(np.sum((block - mean) ** 2, axis=0) / (n - 1)) if n > 1 else np.nan
        )
        for i, prob in enumerate(hdi_probs):
            out["hdi_low"][i, cols], out["hdi_high"][i, cols] = _hdi_sorted(block, prob)
        out["n_pos"][cols] = np.count_nonzero(block > 0, axis=0)
        out["n_neg"][cols] = np.count_nonzero(block < 0, axis=0)
        for i, delta in enumerate(deltas):
            if delta > 0:
                out["n_above"][i, cols] = np.count_nonzero(block > delta, axis=0)
                out["n_below"][i, cols] = np.count_nonzero(block < -delta, axis=0)
            else:
                out["n_above"][i, cols] = out["n_pos"][cols]
                out["n_below"][i, cols] = out["n_neg"][cols]
    out["n_draws"] = np.asarray(n)
    return out


def reversed_statistics(stats: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`item_statistics` of the negated draws (the contrast taken the other way round)."""
    out = dict(stats)
    out["mean"] = -stats["mean"]
    out["n_pos"], out["n_neg"] = stats["n_neg"], stats["n_pos"]
    out["n_above"], out["n_below"] = stats["n_below"], stats["n_above"]
    out["hdi_low"], out["hdi_high"] = -stats["hdi_high"], -stats["hdi_low"]
    return out


def summary_from_statistics(
    stats: dict[str, np.ndarray],
    *,
    delta_index: int = 0,
    hdi_index: int = 0,
    fdr_target: float = 0.05,
    call_rule: str = CALL_RULES[0],
) -> dict[str, np.ndarray]:
    """`summarize`'s output from `item_statistics` (at one of its deltas and HDI probs).

    ``delta_index`` / ``hdi_index`` pick the delta and HDI probability; an index of None
    leaves the columns that depend on it as NaN.
    """
    check_call(fdr_target, call_rule)
    n = float(stats["n_draws"])
    m = stats["mean"].shape[0]
    res = {"mean": stats["mean"], "sd": stats["sd"]}
    for key in ("hdi_low", "hdi_high"):
        res[key] = stats[key][hdi_index] if hdi_index is not None else np.full(m, np.nan)
    res["prob_up"] = stats["n_pos"] / n
    res["prob_down"] = stats["n_neg"] / n
    res["lfsr"] = 1.0 - np.maximum(res["prob_up"], res["prob_down"])
    if delta_index is None:
        above = below = np.full(m, np.nan)
    else:
        above, below = stats["n_above"][delta_index], stats["n_below"][delta_index]
    res["pep"] = (n - above - below) / n
    res["error_down"] = 1.0 - below / n
    res["error_up"] = 1.0 - above / n
    res["error"] = np.minimum(res["error_down"], res["error_up"])
    res["qvalue"] = qvalues(res["error"])
    res["qvalue_down"] = qvalues(res["error_down"])
    res["qvalue_up"] = qvalues(res["error_up"])
    res["hit"] = hit_calls(res["error"], res["qvalue"], fdr_target, call_rule)
    res["rank"] = evidence_order(res["error"], res["mean"], res["sd"])
    return res


def summarize(
    draws: np.ndarray,
    *,
    delta: float = 0.0,
    hdi_prob: float = 0.94,
    fdr_target: float = 0.05,
    call_rule: str = CALL_RULES[0],
    chunk_size: int = CHUNK_SIZE,
) -> dict[str, np.ndarray]:
    """Every per-item summary of a contrast, in one pass over blocks of columns.

    All items form one family for the q-values (call it once per contrast).

    Parameters
    ----------
    draws : ndarray (draws x items)
    delta : float
        Minimum effect size for ``pep`` and the local errors (same scale as ``draws``).
    hdi_prob : float
        Probability mass of the HDI.
    fdr_target : float
        The bound of a call: ``hit = error <= fdr_target`` (``call_rule="local"``) or
        ``hit = qvalue <= fdr_target`` (``"qvalue"``).
    call_rule : {"local", "qvalue"}
    chunk_size : int
        Columns per block (bounds the memory of the sorted copy).

    Returns
    -------
    dict of ndarray
        ``mean, sd, hdi_low, hdi_high, prob_up, prob_down, lfsr, pep, error_down,
        error_up, error, qvalue, qvalue_down, qvalue_up, hit, rank`` (see the module
        docstring; ``rank`` 1 = smallest ``error``, ties by ``|mean| / sd``).
    """
    check_call(fdr_target, call_rule)
    stats = item_statistics(draws, deltas=(delta,), hdi_probs=(hdi_prob,), chunk_size=chunk_size)
    return summary_from_statistics(stats, fdr_target=fdr_target, call_rule=call_rule)


def hit_calls(
    error: np.ndarray, qvalue: np.ndarray, fdr_target: float, call_rule: str
) -> np.ndarray:
    """The hits of ``call_rule`` from each item's local error and q-value.

    ``error <= fdr_target`` (``"local"``) or ``qvalue <= fdr_target`` (``"qvalue"``), both
    in the item's more probable direction (see the module docstring).
    """
    return np.asarray(error if call_rule == "local" else qvalue) <= fdr_target


def check_call(fdr_target: float, call_rule: str) -> None:
    """Raise ValueError unless ``fdr_target`` lies in [0, 1] and ``call_rule`` is known."""
    if not 0.0 <= fdr_target <= 1.0:
        raise ValueError(f"fdr_target must lie in [0, 1], got {fdr_target}")
    if call_rule not in CALL_RULES:
        raise ValueError(f"call_rule must be one of {', '.join(CALL_RULES)}, got {call_rule!r}")


def _check_delta(delta: float) -> float:
    delta = float(delta)
    if not (np.isfinite(delta) and delta >= 0):
        raise ValueError(f"delta must be a finite number >= 0, got {delta}")
    return delta


def _check_prob(prob: float) -> float:
    prob = float(prob)
    if not 0.0 < prob < 1.0:
        raise ValueError(f"hdi_prob must lie strictly between 0 and 1, got {prob}")
    return prob
