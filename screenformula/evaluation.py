"""Scoring a screen result against references: known gene sets and MAGeCK's output.

How well a result agrees with what is known about a screen, used by the demo and the
benchmarks:

- `roc_auc` (and `roc_curve`, `roc_figure`): how well a gene score separates a reference
  set (core-essential genes, CEGv2) from the rest (non-essential genes, NEGv1);
  `depletion_scores` pairs a gene table with those two sets.
- `naive_gene_lfc`: a model-free baseline gene LFC to set beside the model's.
- `compare_with_mageck` (and `mageck_comparison_figure`): top-gene overlap and rank / LFC
  correlation of two MAGeCK-format ``gene_summary`` tables.

Nothing here fits a model; it reads results and reference tables only.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """ROC AUC of ``scores`` for telling ``positive`` from the rest (ties count half)."""
    from scipy.stats import rankdata

    scores = np.asarray(scores, dtype=float)
    positive = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("the AUC needs both positives and negatives")
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def naive_gene_lfc(data: Any, factor: str, treated: str, control: str) -> pd.Series:
    """A model-free baseline gene LFC, for comparison.

    Each gene's mean over its guides of the log2 ratio of mean normalised counts
    (``+ 0.5``), ``treated`` samples against ``control`` samples.
    """
    levels = data.samples[factor].astype(str).to_numpy()
    norm = data.counts / data.size_factors.to_numpy()[None, :]
    ratio = np.log2(norm[:, levels == treated].mean(axis=1) + 0.5) - np.log2(
        norm[:, levels == control].mean(axis=1) + 0.5
    )
    return pd.Series(ratio).groupby(data.genes_of_sgrna).mean()


def roc_curve(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates as the threshold falls through ``scores``, from (0, 0)."""
    order = np.argsort(-scores, kind="stable")
    pos = positive[order]
    tpr = np.concatenate([[0.0], np.cumsum(pos) / pos.sum()])
    fpr = np.concatenate([[0.0], np.cumsum(~pos) / (~pos).sum()])
    return fpr, tpr


def roc_figure(
    curves: list[tuple[str, np.ndarray, np.ndarray, float]],
) -> Any:
    """ROC curves of CEGv2 vs NEGv1, one per ``(label, scores, positive, auc)``; the first solid."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.6, 4.3))
    ax = fig.subplots()
    for k, (label, scores, positive, auc) in enumerate(curves):
        fpr, tpr = roc_curve(scores, positive)
        style = {"color": "#2471a3", "lw": 1.6} if k == 0 else {"color": "0.35", "lw": 1.0}
        ax.plot(fpr, tpr, label=f"{label} (AUC {auc:.3f})", ls="-" if k == 0 else ":", **style)
    ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls="--")
    ax.set_xlabel("false-positive rate (NEGv1)")
    ax.set_ylabel("true-positive rate (CEGv2)")
    ax.set_title("Essential vs non-essential genes")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def depletion_scores(
    genes: pd.DataFrame, essential: Iterable[str], nonessential: Iterable[str]
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Score the genes of a reference pair of sets by depletion, for `roc_auc`.

    Parameters
    ----------
    genes : DataFrame
        A gene table with ``gene`` and ``lfc`` columns (a contrast's ``genes``).
    essential, nonessential : iterable of str
        The positive (core-essential) and negative (non-essential) reference genes.

    Returns
    -------
    scored : DataFrame
        The rows of ``genes`` in either set, in their order.
    scores : ndarray
        ``-lfc`` of those rows: depletion scores essential genes high.
    positive : ndarray of bool
        Whether each row's gene is essential.
    """
    essential, nonessential = set(essential), set(nonessential)
    scored = genes[genes["gene"].isin(essential | nonessential)]
    positive = scored["gene"].isin(essential).to_numpy()
    scores = -scored["lfc"].to_numpy(dtype=float)
    return scored, scores, positive


def compare_with_mageck(ours: pd.DataFrame, reference: pd.DataFrame) -> dict[str, Any]:
    """Top-depleted overlap and LFC agreement of two MAGeCK-format gene summaries.

    Both tables are restricted to the genes they share and ranked by ``neg|rank``.

    Returns
    -------
    dict
        ``overlap_top10``, ``overlap_top20`` (shared genes among the top 10 / 20),
        ``spearman_lfc`` (Spearman correlation of ``neg|lfc``), ``spearman_neg_rank``,
        ``n_genes`` (shared), ``ours_top20``, ``mageck_top20`` and ``table`` (one row
        per shared gene).
    """
    from scipy.stats import spearmanr

    shared = sorted(set(ours["id"]) & set(reference["id"]))
    a = ours.set_index("id").loc[shared]
    b = reference.set_index("id").loc[shared]
    a_order = a.sort_values("neg|rank", kind="stable").index.tolist()
    b_order = b.sort_values("neg|rank", kind="stable").index.tolist()
    table = pd.DataFrame(
        {
            "gene": shared,
            "lfc": a["neg|lfc"].to_numpy(),
            "neg_rank": [a_order.index(g) + 1 for g in shared],
            "neg_fdr": a["neg|fdr"].to_numpy(),
            "mageck_lfc": b["neg|lfc"].to_numpy(),
            "mageck_neg_rank": [b_order.index(g) + 1 for g in shared],
            "mageck_neg_fdr": b["neg|fdr"].to_numpy(),
        }
    ).sort_values("neg_rank")
    return {
        "n_genes": len(shared),
        "overlap_top10": len(set(a_order[:10]) & set(b_order[:10])),
        "overlap_top20": len(set(a_order[:20]) & set(b_order[:20])),
        "spearman_lfc": float(spearmanr(table["lfc"], table["mageck_lfc"]).statistic),
        "spearman_neg_rank": float(
            spearmanr(table["neg_rank"], table["mageck_neg_rank"]).statistic
        ),
        "ours_top20": a_order[:20],
        "mageck_top20": b_order[:20],
        "table": table.reset_index(drop=True),
    }


def mageck_comparison_figure(table: pd.DataFrame) -> Any:
    """Gene LFCs and depletion ranks of `compare_with_mageck`'s ``table``, ours vs MAGeCK."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.0, 4.0))
    ax_lfc, ax_rank = fig.subplots(1, 2)
    ax_lfc.scatter(table["mageck_lfc"], table["lfc"], s=14, color="#2471a3", linewidths=0)
    lims = [
        min(table["lfc"].min(), table["mageck_lfc"].min()),
        max(table["lfc"].max(), table["mageck_lfc"].max()),
    ]
    ax_lfc.plot(lims, lims, color="0.6", lw=0.8, ls="--")
    ax_lfc.set_xlabel("MAGeCK neg|lfc")
    ax_lfc.set_ylabel("screenformula log2 LFC")
    ax_lfc.set_title("Gene LFCs")
    for _, row in table.head(8).iterrows():
        ax_lfc.annotate(
            row["gene"],
            (row["mageck_lfc"], row["lfc"]),
            fontsize=7,
            xytext=(3, 2),
            textcoords="offset points",
        )
    ax_rank.scatter(
        table["mageck_neg_rank"], table["neg_rank"], s=14, color="#2471a3", linewidths=0
    )
    ax_rank.plot([1, len(table)], [1, len(table)], color="0.6", lw=0.8, ls="--")
    ax_rank.set_xlabel("MAGeCK neg|rank")
    ax_rank.set_ylabel("screenformula neg|rank")
    ax_rank.set_title("Depletion ranks")
    fig.tight_layout()
    return fig
