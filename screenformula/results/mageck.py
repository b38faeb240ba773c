"""MAGeCK-compatible ``gene_summary.txt`` and ``sgrna_summary.txt`` files of contrasts.

The writers behind `ContrastResult.to_mageck`: `write_mageck` writes the files,
`mageck_gene_table` and `mageck_sgrna_table` build one contrast's tables (MAGeCK's columns
in MAGeCK's order, then ours) from a `ContrastResult`. `write_mageck` says what each
column means in Bayesian terms.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from screenformula._constants import GROUP
from screenformula.errors import FitError
from screenformula.io.atomic import atomic_path
from screenformula.results.draws import Contrast, sample_roles

if TYPE_CHECKING:
    from screenformula.results.contrasts import ContrastResult

__all__ = [
    "MAGECK_GENE_COLUMNS",
    "MAGECK_SGRNA_COLUMNS",
    "mageck_gene_table",
    "mageck_sgrna_table",
    "write_mageck",
]

#: MAGeCK ``gene_summary.txt`` columns, in MAGeCK's order.
MAGECK_GENE_COLUMNS = (
    "id",
    "num",
    "neg|score",
    "neg|p-value",
    "neg|fdr",
    "neg|rank",
    "neg|goodsgrna",
    "neg|lfc",
    "pos|score",
    "pos|p-value",
    "pos|fdr",
    "pos|rank",
    "pos|goodsgrna",
    "pos|lfc",
)
#: MAGeCK ``sgrna_summary.txt`` columns, in MAGeCK's order.
MAGECK_SGRNA_COLUMNS = (
    "sgrna",
    "Gene",
    "control_count",
    "treatment_count",
    "control_mean",
    "treat_mean",
    "LFC",
    "control_var",
    "adj_var",
    "score",
    "p.low",
    "p.high",
    "p.twosided",
    "FDR",
    "high_in_treatment",
)

#: MAGeCK columns holding probabilities: written no smaller than the Monte Carlo resolution
#: ``1 / (n_draws + 1)`` so that downstream ``-log10`` transforms stay finite.
MAGECK_PROBABILITY_COLUMNS = (
    "neg|score",
    "neg|p-value",
    "neg|fdr",
    "pos|score",
    "pos|p-value",
    "pos|fdr",
    "p.low",
    "p.high",
    "p.twosided",
    "FDR",
)


def write_mageck(
    result: ContrastResult,
    prefix: str | os.PathLike,
    *,
    contrast: str | None = None,
    overwrite: bool = False,
    stacklevel: int = 2,
) -> list[Path]:
    """Write MAGeCK-compatible ``gene_summary.txt`` and ``sgrna_summary.txt`` files.

    With one contrast (or ``contrast=`` given) the files are ``<prefix>.gene_summary.txt``
    and ``<prefix>.sgrna_summary.txt``; with several, one pair per contrast named
    ``<prefix>.<a>_vs_<b>.gene_summary.txt``. Tab-separated, one header line, MAGeCK's
    columns in MAGeCK's order followed by ours. Bayesian meanings (``delta`` the
    result's minimum effect, log2):

    gene_summary: ``num`` guides of the gene; ``neg|score`` = P(LFC >= -delta) (the local
    error of calling the gene depleted; lower is stronger), ``neg|p-value`` = P(LFC >=
    0), ``neg|fdr`` = the Bayesian q-value of depletion calls (``qvalue_down``),
    ``neg|rank`` by ``neg|score`` (ties: lower LFC first), ``neg|goodsgrna`` = guides
    with P(guide LFC < 0) > 0.5, ``neg|lfc`` = posterior mean log2 LFC; ``pos|...`` the
    same for enrichment (P(LFC <= delta), P(LFC <= 0), ``qvalue_up``, guides with P(guide
    LFC > 0) > 0.5). Rows sorted by ``neg|rank``; ``goodsgrna`` is ``NA`` when the fit
    kept no guide draws. Our columns follow, among them ``hit``, its ``direction`` and
    ``provisional`` (a hit of a fit that failed its convergence checks).

    sgrna_summary: ``control_count``/``treatment_count`` the normalised counts (count /
    size factor) of the control (``b``) and treatment (``a``) samples joined by ``/``,
    ``control_mean``/``treat_mean`` their means, ``LFC`` the guide's posterior mean log2
    LFC, ``control_var`` the variance of the control counts, ``adj_var`` the model's
    variance at the control mean (``mean + mean^2 / phi``, posterior mean ``phi``; NA
    without it), ``score`` posterior mean / sd of the guide LFC, ``p.low`` = P(LFC >=
    0), ``p.high`` = P(LFC <= 0), ``p.twosided`` = min(1, 2 min(p.low, p.high)), ``FDR``
    the guide's q-value, ``high_in_treatment`` = posterior mean LFC > 0. Without
    guide-level draws this file is not written (a warning says so).

    Probabilities in these files (scores, p-values, FDRs) are written no smaller than
    ``1 / (n_draws + 1)``, the resolution of the posterior draws, so that ``-log10``
    transforms in downstream tools stay finite; the tables keep the exact shares.
    Existing files are kept unless ``overwrite=True``; each file is written under a
    temporary name and renamed.

    Parameters
    ----------
    result : ContrastResult
        The contrasts to write.
    prefix : str or PathLike
        Path prefix of the files.
    contrast : str, optional
        Label of the one contrast to write (default: every contrast of ``result``).
    overwrite : bool, default False
        Replace existing files.
    stacklevel : int, default 2
        Stack level of the warning issued when no ``sgrna_summary.txt`` can be written
        (`ContrastResult.to_mageck` passes 3, so that it points at its caller).

    Returns
    -------
    list of Path
        The files written.
    """
    chosen = result._contrast(contrast)
    prefix = Path(prefix)
    jobs: list[tuple[Path, pd.DataFrame]] = []
    for c in chosen:
        stem = (
            str(prefix)
            if len(chosen) == 1
            else f"{prefix}.{c.label.replace(' ', '_').replace('/', '-')}"
        )
        jobs.append((Path(f"{stem}.gene_summary.txt"), mageck_gene_table(result, c)))
        if result.sgrna_message is None:
            jobs.append((Path(f"{stem}.sgrna_summary.txt"), mageck_sgrna_table(result, c)))
    if result.sgrna_message is not None:
        warnings.warn(
            f"no sgrna_summary.txt written: {result.sgrna_message}",
            UserWarning,
            stacklevel=stacklevel,
        )
    existing = [str(p) for p, _ in jobs if p.exists()]
    if existing and not overwrite:
        raise FitError(f"{existing[0]} exists; pass overwrite=True to replace it")
    floor = 1.0 / (result.settings["n_draws"] + 1)
    for path, table in jobs:
        probs = [c for c in MAGECK_PROBABILITY_COLUMNS if c in table.columns]
        table[probs] = table[probs].clip(lower=floor)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            table.to_csv(tmp, sep="\t", index=False, float_format="%.6g", na_rep="NA")
    return [p for p, _ in jobs]


def mageck_gene_table(result: ContrastResult, c: Contrast) -> pd.DataFrame:
    """MAGeCK ``gene_summary`` table of contrast ``c`` (see `write_mageck`), unclipped."""
    g = result.genes[result.genes["contrast"] == c.label].reset_index(drop=True)
    good_neg = good_pos = pd.Series(pd.NA, index=g.index, dtype="Int64")
    if result.sgrna_message is None:
        s = result.sgrnas[result.sgrnas["contrast"] == c.label]
        good_neg = (s["prob_down"] > 0.5).groupby(s["gene"]).sum().reindex(g["gene"]).to_numpy()
        good_pos = (s["prob_up"] > 0.5).groupby(s["gene"]).sum().reindex(g["gene"]).to_numpy()
    lfc = g["lfc"].to_numpy()
    neg_score = g["error_down"].to_numpy()
    pos_score = g["error_up"].to_numpy()
    table = pd.DataFrame(
        {
            "id": g["gene"].astype(str),
            "num": g["n_sgrna"].astype(int),
            "neg|score": neg_score,
            "neg|p-value": 1.0 - g["prob_down"],
            "neg|fdr": g["qvalue_down"],
            "neg|rank": _rank_by(neg_score, lfc),
            "neg|goodsgrna": good_neg,
            "neg|lfc": lfc,
            "pos|score": pos_score,
            "pos|p-value": 1.0 - g["prob_up"],
            "pos|fdr": g["qvalue_up"],
            "pos|rank": _rank_by(pos_score, -lfc),
            "pos|goodsgrna": good_pos,
            "pos|lfc": lfc,
        }
    )
    extra = [
        "contrast",
        "lfc_sd",
        "hdi_low",
        "hdi_high",
        "prob_up",
        "prob_down",
        "lfsr",
        "pep",
        "qvalue",
        "hit",
        "direction",
        "provisional",
        "lfc_ln",
    ]
    if GROUP in g.columns:
        extra.append(GROUP)
    for column in extra:
        table[column] = g[column].to_numpy()
    return table.sort_values("neg|rank", kind="stable").reset_index(drop=True)


def mageck_sgrna_table(result: ContrastResult, c: Contrast) -> pd.DataFrame:
    """MAGeCK ``sgrna_summary`` table of contrast ``c`` (see `write_mageck`).

    Needs guide-level draws (``result.sgrna_message is None``).
    """
    s = result.sgrnas[result.sgrnas["contrast"] == c.label].reset_index(drop=True)
    norm = result.normalized_counts.loc[s["sgrna"]]
    role = sample_roles(result.sample_levels, c).reindex(norm.columns)
    ctrl = norm.loc[:, (role == "control").to_numpy()]
    trt = norm.loc[:, (role == "treatment").to_numpy()]
    control_mean = ctrl.mean(axis=1).to_numpy() if ctrl.shape[1] else np.full(len(s), np.nan)
    treat_mean = trt.mean(axis=1).to_numpy() if trt.shape[1] else np.full(len(s), np.nan)
    control_var = (
        ctrl.var(axis=1, ddof=1 if ctrl.shape[1] > 1 else 0).to_numpy()
        if ctrl.shape[1]
        else np.full(len(s), np.nan)
    )
    phi = (
        result.phi.reindex(s["sgrna"]).to_numpy()
        if result.phi is not None
        else np.full(len(s), np.nan)
    )
    floor = 1.0 / (result.settings["n_draws"] + 1)  # see MAGECK_PROBABILITY_COLUMNS
    p_low = np.maximum(1.0 - s["prob_down"].to_numpy(), floor)
    p_high = np.maximum(1.0 - s["prob_up"].to_numpy(), floor)
    with np.errstate(divide="ignore", invalid="ignore"):
        score = s["lfc"].to_numpy() / s["lfc_sd"].to_numpy()
    table = pd.DataFrame(
        {
            "sgrna": s["sgrna"].astype(str),
            "Gene": s["gene"].astype(str),
            "control_count": _joined(ctrl),
            "treatment_count": _joined(trt),
            "control_mean": control_mean,
            "treat_mean": treat_mean,
            "LFC": s["lfc"].to_numpy(),
            "control_var": control_var,
            "adj_var": control_mean + control_mean**2 / phi,
            "score": score,
            "p.low": p_low,
            "p.high": p_high,
            "p.twosided": np.minimum(1.0, 2.0 * np.minimum(p_low, p_high)),
            "FDR": s["qvalue"].to_numpy(),
            "high_in_treatment": s["lfc"].to_numpy() > 0,
        }
    )
    for column in ("contrast", "lfc_sd", "hdi_low", "hdi_high", "lfsr", "efficiency"):
        table[column] = s[column].to_numpy()
    table["prob_concordant"] = s["prob_concordant"].to_numpy()
    order = np.lexsort((-np.abs(table["LFC"].to_numpy()), table["FDR"].to_numpy()))
    return table.iloc[order].reset_index(drop=True)


def _rank_by(score: np.ndarray, tiebreak: np.ndarray) -> np.ndarray:
    order = np.lexsort((tiebreak, score))
    ranks = np.empty(score.size, dtype=np.int64)
    ranks[order] = np.arange(1, score.size + 1)
    return ranks


def _joined(block: pd.DataFrame) -> pd.Series:
    """Values of each row joined by ``/``, as MAGeCK writes its count columns."""
    if block.shape[1] == 0:
        return pd.Series([""] * len(block), dtype=object)
    cols = [
        block.iloc[:, j].map("{:.5g}".format).reset_index(drop=True) for j in range(block.shape[1])
    ]
    return cols[0].str.cat(cols[1:], sep="/") if len(cols) > 1 else cols[0]
