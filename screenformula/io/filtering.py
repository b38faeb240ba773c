"""Drop sgRNAs before fitting (low pool counts, low totals, empty genes), saying why."""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd

from screenformula._constants import GENE, SGRNA
from screenformula.errors import ScreenDataError
from screenformula.io.screen_data import ScreenData


def _threshold(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise ScreenDataError(f"{name} must be a non-negative number, got {value!r}")
    if value < 0:
        raise ScreenDataError(f"{name} must be a non-negative number, got {value!r}")
    return float(value)


def _num(value: float) -> str:
    """``5`` for 5.0, ``2.3`` for 2.3, at most two decimals."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def filter_sgrnas(
    data: ScreenData,
    *,
    min_pool_count: float | None = None,
    min_count: float | None = None,
    min_mean_count: float | None = None,
    drop_empty_genes: bool = True,
) -> tuple[ScreenData, pd.DataFrame]:
    """Remove sgRNAs that carry too little signal, recording each one and why.

    Parameters
    ----------
    data : ScreenData
        The screen to filter.
    min_pool_count : float, optional
        Drop a guide whose count in any pool (plasmid / T0) sample is below this.
        The sample sheet must mark at least one pool sample.
    min_count : float, optional
        Drop a guide whose total count over all samples is below this.
    min_mean_count : float, optional
        Drop a guide whose mean raw count over all samples is below this.
    drop_empty_genes : bool, default True
        After the filters above, drop every remaining guide of a gene whose remaining
        guides have no reads in any sample.

    Returns
    -------
    filtered : ScreenData
        The kept guides; size factors are recomputed with the same method (or carried
        over when they were given by hand). Its ``dropped`` attribute is ``data.dropped``
        followed by the guides dropped here.
    dropped : DataFrame
        The guides dropped by this call, in table order, with columns ``sgrna``,
        ``gene`` and ``reason`` (e.g. ``"pool count 0 < 1 in T0"``,
        ``"mean count 2.3 < 5"``; several reasons are joined by ``"; "``).

    Raises
    ------
    ScreenDataError
        A negative or non-numeric threshold, ``min_pool_count`` without pool samples,
        or filters that would drop every guide.
    """
    min_pool = _threshold("min_pool_count", min_pool_count)
    min_total = _threshold("min_count", min_count)
    min_mean = _threshold("min_mean_count", min_mean_count)
    counts = data.counts
    n = data.n_sgrnas
    reasons: dict[int, list[str]] = {}

    def note(rows: np.ndarray, texts: list[str]) -> None:
        for row, text in zip(rows.tolist(), texts, strict=True):
            reasons.setdefault(row, []).append(text)

    if min_pool is not None:
        pool_mask = data.pool_mask
        if not pool_mask.any():
            raise ScreenDataError(
                "min_pool_count needs pool samples, but the sample sheet marks none "
                "(add a 'pool' column, or a condition such as 'T0' or 'plasmid')"
            )
        pool_names = data.samples.index[pool_mask]
        pool_counts = counts[:, pool_mask]
        low = pool_counts < min_pool
        rows = np.flatnonzero(low.any(axis=1))
        note(
            rows,
            [
                "; ".join(
                    f"pool count {pool_counts[r, j]} < {_num(min_pool)} in {pool_names[j]}"
                    for j in np.flatnonzero(low[r])
                )
                for r in rows
            ],
        )
    if min_total is not None:
        totals = counts.sum(axis=1)
        rows = np.flatnonzero(totals < min_total)
        note(rows, [f"total count {totals[r]} < {_num(min_total)}" for r in rows])
    if min_mean is not None:
        means = counts.mean(axis=1)
        rows = np.flatnonzero(means < min_mean)
        note(rows, [f"mean count {_num(means[r])} < {_num(min_mean)}" for r in rows])

    keep = np.ones(n, dtype=bool)
    if reasons:
        keep[list(reasons)] = False
    if drop_empty_genes:
        gene_reads = np.bincount(
            data.gene_codes[keep], weights=counts[keep].sum(axis=1), minlength=data.n_genes
        )
        present = np.bincount(data.gene_codes[keep], minlength=data.n_genes) > 0
        empty_genes = present & (gene_reads == 0)
        rows = np.flatnonzero(keep & empty_genes[data.gene_codes])
        note(
            rows,
            [f"gene {data.genes_of_sgrna[r]!s} has no reads in any sample" for r in rows],
        )
        keep[rows] = False

    if not keep.any():
        raise ScreenDataError(f"filtering would drop all {n:,} sgRNAs; relax the thresholds")
    order = np.flatnonzero(~keep)
    dropped = pd.DataFrame(
        {
            SGRNA: np.asarray(data.sgrnas.to_numpy()[order], dtype=object),
            GENE: np.asarray(data.genes_of_sgrna[order], dtype=object),
            "reason": ["; ".join(reasons[r]) for r in order.tolist()],
        }
    )
    filtered = data.subset(keep)
    if len(data.dropped) == 0:
        filtered.dropped = dropped.copy()
    elif len(dropped) == 0:
        filtered.dropped = data.dropped.reset_index(drop=True)
    else:
        filtered.dropped = pd.concat([data.dropped, dropped], ignore_index=True)
    return filtered, dropped
