"""Size factors: median-of-ratios (DESeq2 / MAGeCK ``median``), total count, control guides."""

from __future__ import annotations

import numpy as np

from screenformula.errors import ScreenDataError

SIZE_FACTOR_METHODS = ("median", "total", "control", "none")


def median_of_ratios(counts: np.ndarray) -> np.ndarray:
    """DESeq2's median-of-ratios size factors.

    Parameters
    ----------
    counts : ndarray of shape (n_sgrna, n_sample)
        Raw counts.

    Returns
    -------
    ndarray of shape (n_sample,)
        For each sample, the median over guides with no zero count of
        ``count / geometric_mean(count over samples)``.
    """
    counts = np.asarray(counts, dtype=float)
    positive = np.all(counts > 0, axis=1)
    if not positive.any():
        raise ScreenDataError(
            "cannot compute median-of-ratios size factors: every sgRNA has a zero count in some "
            "sample (use size_factors='total')"
        )
    logc = np.log(counts[positive])
    log_geomean = logc.mean(axis=1, keepdims=True)
    return np.exp(np.median(logc - log_geomean, axis=0))


def total_count(counts: np.ndarray) -> np.ndarray:
    """Total-count size factors, scaled to a geometric mean of one."""
    totals = np.asarray(counts, dtype=float).sum(axis=0)
    if np.any(totals <= 0):
        raise ScreenDataError("cannot compute total-count size factors: a sample has no reads")
    return totals / np.exp(np.mean(np.log(totals)))


def compute_size_factors(
    counts: np.ndarray, method: str = "median", control_mask: np.ndarray | None = None
) -> np.ndarray:
    """Size factors by name.

    Parameters
    ----------
    counts : ndarray of shape (n_sgrna, n_sample)
    method : {"median", "total", "control", "none"}
        ``"control"`` is median-of-ratios over the control (non-targeting) guides only.
    control_mask : ndarray of bool, optional
        Which guides are controls; required for ``"control"``.

    Returns
    -------
    ndarray of shape (n_sample,)
    """
    match method:
        case "median":
            return median_of_ratios(counts)
        case "total":
            return total_count(counts)
        case "control":
            if control_mask is None or not np.any(control_mask):
                raise ScreenDataError(
                    "size_factors='control' needs control guides (controls=... gene label or list)"
                )
            return median_of_ratios(np.asarray(counts)[np.asarray(control_mask)])
        case "none":
            return np.ones(np.asarray(counts).shape[1])
        case _:
            raise ScreenDataError(
                f"unknown size-factor method {method!r}: "
                f"choose one of {', '.join(SIZE_FACTOR_METHODS)}"
            )
