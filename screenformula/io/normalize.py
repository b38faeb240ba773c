"""Size factors: median-of-ratios (DESeq2 / MAGeCK ``median``), total count, control guides."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from screenformula.errors import ScreenDataError
from screenformula.io.advice import AdvisedDataError

SIZE_FACTOR_METHODS = ("median", "total", "control", "none")


def median_of_ratios(counts: np.ndarray, where: str = "") -> np.ndarray:
    """DESeq2's median-of-ratios size factors.

    Parameters
    ----------
    counts : ndarray of shape (n_sgrna, n_sample)
        Raw counts.
    where : str
        Where the counts come from (a file name), to start an error message.

    Returns
    -------
    ndarray of shape (n_sample,)
        For each sample, the median over guides with no zero count of
        ``count / geometric_mean(count over samples)``.
    """
    counts = np.asarray(counts, dtype=float)
    positive = np.all(counts > 0, axis=1)
    if not positive.any():
        raise AdvisedDataError(
            where,
            "cannot compute median-of-ratios size factors: every sgRNA has a zero count in "
            "some sample (use {size_factors})",
            {"size_factors": "total"},
        )
    logc = np.log(counts[positive])
    log_geomean = logc.mean(axis=1, keepdims=True)
    return np.exp(np.median(logc - log_geomean, axis=0))


def total_count(counts: np.ndarray) -> np.ndarray:
    """Total-count size factors, scaled to a geometric mean of one."""
    totals = np.asarray(counts, dtype=float).sum(axis=0)
    if np.any(totals <= 0):
        check_reads(counts, "total")
    return totals / np.exp(np.mean(np.log(totals)))


def check_reads(
    counts: np.ndarray,
    method: str,
    samples: Sequence[str] | None = None,
    what: str = "",
    where: str = "",
) -> None:
    """Raise when a sample has no reads (its size factor cannot be computed).

    Parameters
    ----------
    counts : ndarray of shape (n_sgrna, n_sample)
    method : str
        The size-factor method, for the message.
    samples : sequence of str, optional
        The sample names (default: ``sample 1``, ``sample 2``, ...).
    what : str
        Which reads, for the message (``" in its control guides"``).
    where : str
        Where the counts come from (a file name), to start the message.

    Raises
    ------
    AdvisedDataError
        Naming the first sample without reads, and how to leave it out.
    """
    depth = np.asarray(counts).sum(axis=0)
    empty = np.flatnonzero(depth <= 0)
    if not len(empty):
        return
    first = str(samples[empty[0]]) if samples is not None else f"column {empty[0] + 1}"
    more = f" (and {len(empty) - 1} more)" if len(empty) > 1 else ""
    raise AdvisedDataError(
        where,
        f"sample {first!r}{more} has no reads{what} (every count is 0), so its "
        f"{method!r} size factor cannot be computed: check that column, or {{leave_out}}",
        {"leave_out": first},
    )


def compute_size_factors(
    counts: np.ndarray,
    method: str = "median",
    control_mask: np.ndarray | None = None,
    samples: Sequence[str] | None = None,
    where: str = "",
) -> np.ndarray:
    """Size factors by name.

    Parameters
    ----------
    counts : ndarray of shape (n_sgrna, n_sample)
    method : {"median", "total", "control", "none"}
        ``"control"`` is median-of-ratios over the control (non-targeting) guides only.
    control_mask : ndarray of bool, optional
        Which guides are controls; required for ``"control"``.
    samples : sequence of str, optional
        The sample names, to name a sample without reads in the error.
    where : str
        Where the counts come from (a file name), to start an error message.

    Returns
    -------
    ndarray of shape (n_sample,)

    Raises
    ------
    ScreenDataError
        An unknown method, a sample without reads (in its control guides for
        ``"control"``), no guide without a zero count (median of ratios), no controls.
    """
    match method:
        case "median":
            check_reads(counts, method, samples, where=where)
            return median_of_ratios(counts, where)
        case "total":
            check_reads(counts, method, samples, where=where)
            return total_count(counts)
        case "control":
            if control_mask is None or not np.any(control_mask):
                raise AdvisedDataError(
                    where,
                    "{size_factors} needs control guides: give {controls}",
                    {"size_factors": "control", "controls": None},
                )
            control_counts = np.asarray(counts)[np.asarray(control_mask)]
            check_reads(control_counts, method, samples, " in its control guides", where)
            return median_of_ratios(control_counts, where)
        case "none":
            return np.ones(np.asarray(counts).shape[1])
        case _:
            raise ScreenDataError(
                f"unknown size-factor method {method!r}: "
                f"choose one of {', '.join(SIZE_FACTOR_METHODS)}"
            )
