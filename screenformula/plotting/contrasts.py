"""Figures of contrast results, drawn from result tables.

They take tables (``ContrastResult.genes``, ``.sgrnas``, ``.groups``,
``.guide_counts(gene)``), never models, so any table with the same columns (filtered,
concatenated, read back from disk) plots the same way.

Every function returns a `matplotlib.figure.Figure` built without pyplot (no global
figure state, no GUI backend needed) and saves it when ``path`` is given.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

__all__ = ["forest_plot", "gene_panel", "group_plot", "rank_plot", "volcano_plot"]

HIT_COLOR = "#c0392b"
UP_COLOR = "#c0392b"
DOWN_COLOR = "#2471a3"
BASE_COLOR = "#9a9a9a"


def _finish(fig: Figure, path: str | os.PathLike | None) -> Figure:
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=150, bbox_inches="tight")
    return fig


def _require(table: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    if len(table) == 0:
        message = table.attrs.get("message", "the table is empty")
        raise ValueError(f"nothing to plot in {what}: {message}")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {', '.join(missing)}")


def _contrasts(table: pd.DataFrame, contrast: str | Sequence[str] | None) -> list[str]:
    labels = list(pd.unique(table["contrast"]))
    if contrast is None:
        return labels
    wanted = [contrast] if isinstance(contrast, str) else list(contrast)
    unknown = [c for c in wanted if c not in labels]
    if unknown:
        raise ValueError(f"no contrast {unknown[0]!r}; contrasts: {', '.join(labels)}")
    return wanted


def _direction_colors(lfc: np.ndarray, hit: np.ndarray) -> np.ndarray:
    colors = np.full(lfc.shape, BASE_COLOR, dtype=object)
    colors[hit & (lfc < 0)] = DOWN_COLOR
    colors[hit & (lfc > 0)] = UP_COLOR
    return colors


def volcano_plot(
    genes: pd.DataFrame,
    *,
    contrast: str | Sequence[str] | None = None,
    y: str = "lfsr",
    label_top: int = 10,
    path: str | os.PathLike | None = None,
) -> Figure:
    """LFC (log2) against ``-log10`` of ``y`` (``"lfsr"`` or ``"qvalue"``), hits coloured.

    One panel per contrast. Probabilities of 0 (no draw on the other side) are drawn at
    ``1 / (n_draws + 1)`` (``genes.attrs["n_draws"]``), the resolution of the draws, and the
    ``label_top`` genes by ``rank`` are named.
    """
    _require(genes, ["gene", "contrast", "lfc", y, "hit"], "the gene table")
    labels = _contrasts(genes, contrast)
    fig = Figure(figsize=(4.8 * len(labels), 4.2))
    axes = fig.subplots(1, len(labels), squeeze=False)[0]
    n_draws = genes.attrs.get("n_draws")
    for ax, label in zip(axes, labels, strict=True):
        g = genes[genes["contrast"] == label]
        values = g[y].to_numpy(dtype=float)
        positive = values[values > 0]
        floor = 1.0 / (n_draws + 1) if n_draws else (positive.min() / 2 if positive.size else 1e-4)
        evidence = -np.log10(np.clip(values, floor, 1.0))
        lfc = g["lfc"].to_numpy(dtype=float)
        hit = g["hit"].to_numpy(dtype=bool)
        ax.scatter(lfc, evidence, s=8, c=list(_direction_colors(lfc, hit)), linewidths=0)
        ax.axvline(0, color="black", lw=0.6)
        if "rank" in g.columns and label_top > 0:
            for _, row in g.nsmallest(label_top, "rank").iterrows():
                ax.annotate(
                    str(row["gene"]),
                    (row["lfc"], -np.log10(max(float(row[y]), floor))),
                    fontsize=7,
                    xytext=(3, 2),
                    textcoords="offset points",
                )
        ax.set_xlabel("log2 fold-change (posterior mean)")
        ax.set_ylabel(f"-log10 {y}")
        ax.set_title(f"{label}: {int(hit.sum())} hits")
    return _finish(fig, path)


def rank_plot(
    genes: pd.DataFrame,
    *,
    contrast: str | Sequence[str] | None = None,
    highlight: Sequence[str] | None = None,
    path: str | os.PathLike | None = None,
) -> Figure:
    """Genes ordered by LFC (log2) with their HDIs; hits coloured, ``highlight`` named."""
    _require(genes, ["gene", "contrast", "lfc", "hdi_low", "hdi_high", "hit"], "the gene table")
    labels = _contrasts(genes, contrast)
    fig = Figure(figsize=(6.0, 3.2 * len(labels)))
    axes = fig.subplots(len(labels), 1, squeeze=False)[:, 0]
    wanted = set(highlight or ())
    for ax, label in zip(axes, labels, strict=True):
        g = genes[genes["contrast"] == label].sort_values("lfc").reset_index(drop=True)
        x = np.arange(1, len(g) + 1)
        lfc = g["lfc"].to_numpy(dtype=float)
        hit = g["hit"].to_numpy(dtype=bool)
        colors = _direction_colors(lfc, hit)
        ax.vlines(x, g["hdi_low"], g["hdi_high"], colors=list(colors), lw=0.6, alpha=0.5)
        ax.scatter(x, lfc, s=6, c=list(colors), linewidths=0, zorder=3)
        ax.axhline(0, color="black", lw=0.6)
        for i in np.flatnonzero(g["gene"].isin(wanted).to_numpy()):
            ax.annotate(
                str(g["gene"].iloc[i]),
                (x[i], lfc[i]),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
        ax.set_xlabel("gene rank by LFC")
        ax.set_ylabel("log2 fold-change")
        hdi = genes.attrs.get("hdi_prob")
        ax.set_title(f"{label}" + (f" ({hdi:.0%} HDI)" if hdi else ""))
    return _finish(fig, path)


def forest_plot(
    genes: pd.DataFrame,
    gene_list: Sequence[str] | None = None,
    *,
    top: int = 20,
    contrast: str | Sequence[str] | None = None,
    path: str | os.PathLike | None = None,
) -> Figure:
    """Posterior mean and HDI of chosen genes (default: the ``top`` by ``rank``).

    With several contrasts the genes are chosen by their best rank in any of them and the
    contrasts are drawn side by side.
    """
    _require(genes, ["gene", "contrast", "lfc", "hdi_low", "hdi_high"], "the gene table")
    labels = _contrasts(genes, contrast)
    g = genes[genes["contrast"].isin(labels)]
    if gene_list is None:
        key = "rank" if "rank" in g.columns else "lfc"
        best = g.groupby("gene", sort=False)[key].min().sort_values()
        gene_list = list(best.index[:top])
    else:
        gene_list = list(gene_list)
        unknown = [x for x in gene_list if x not in set(g["gene"])]
        if unknown:
            raise ValueError(f"gene {unknown[0]!r} is not in the table")
    fig = Figure(figsize=(5.5, 0.9 + 0.28 * len(gene_list) * max(1, len(labels) ** 0.5)))
    ax = fig.subplots()
    offsets = np.linspace(-0.25, 0.25, len(labels)) if len(labels) > 1 else np.zeros(1)
    ypos = np.arange(len(gene_list))[::-1]
    colors = [f"C{i}" for i in range(len(labels))]
    for k, label in enumerate(labels):
        rows = g[g["contrast"] == label].set_index("gene").reindex(gene_list)
        y = ypos + offsets[k]
        ax.hlines(y, rows["hdi_low"], rows["hdi_high"], color=colors[k], lw=1.4)
        hit = (rows["hit"] == True).to_numpy() if "hit" in rows else None  # noqa: E712
        ax.scatter(rows["lfc"], y, color=colors[k], s=22, zorder=3, label=label)
        if hit is not None and hit.any():
            ax.scatter(
                rows["lfc"][hit], y[hit], facecolors="none", edgecolors="black", s=60, zorder=4
            )
    ax.axvline(0, color="black", lw=0.6)
    ax.set_yticks(ypos, gene_list)
    ax.set_xlabel("log2 fold-change (posterior mean, HDI)")
    if len(labels) > 1:
        ax.legend(fontsize=7, loc="best")
    else:
        ax.set_title(labels[0])
    return _finish(fig, path)


def gene_panel(
    counts: pd.DataFrame,
    sgrnas: pd.DataFrame,
    gene_row: pd.Series | pd.DataFrame,
    *,
    path: str | os.PathLike | None = None,
) -> Figure:
    """One gene: its guides' normalised counts per sample, and guide LFCs with the gene's.

    Parameters
    ----------
    counts : DataFrame
        ``ContrastResult.guide_counts(gene)``: columns ``sgrna, sample, level,
        normalized_count``.
    sgrnas : DataFrame
        Guide rows (``ContrastResult.sgrnas``; rows of other genes / contrasts are dropped).
    gene_row : Series or one-row DataFrame
        The gene's row of ``ContrastResult.genes`` (gives the gene and the contrast).
    """
    if isinstance(gene_row, pd.DataFrame):
        if len(gene_row) != 1:
            raise ValueError("gene_row must be one row of the gene table")
        gene_row = gene_row.iloc[0]
    gene, label = gene_row["gene"], gene_row["contrast"]
    _require(counts, ["sgrna", "sample", "level", "normalized_count"], "the count table")
    fig = Figure(figsize=(10.0, 4.0))
    ax_counts, ax_lfc = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.3, 1.0]})

    c = counts
    order = c.drop_duplicates("sample")[["sample", "level"]]
    level_order = list(pd.unique(order["level"]))
    order = order.assign(_k=order["level"].map(level_order.index)).sort_values("_k", kind="stable")
    samples = list(order["sample"])
    wide = c.pivot(index="sample", columns="sgrna", values="normalized_count").loc[samples]
    x = np.arange(len(samples))
    for j, guide in enumerate(wide.columns):
        ax_counts.plot(x, wide[guide] + 0.5, marker="o", ms=3, lw=1, color=f"C{j}", label=guide)
    ax_counts.set_yscale("log")
    ax_counts.set_xticks(x, samples, rotation=60, ha="right", fontsize=7)
    ax_counts.set_ylabel("normalised count + 0.5")
    ax_counts.set_title(f"{gene}: guide counts")
    ax_counts.legend(fontsize=6, loc="best")

    s = sgrnas[(sgrnas["gene"] == gene) & (sgrnas["contrast"] == label)]
    ax_lfc.axvspan(gene_row["hdi_low"], gene_row["hdi_high"], color="0.85", label="gene HDI")
    ax_lfc.axvline(gene_row["lfc"], color="black", lw=1.2, label="gene LFC")
    ax_lfc.axvline(0, color="black", lw=0.5, ls=":")
    if len(s):
        y = np.arange(len(s))[::-1]
        ax_lfc.hlines(y, s["hdi_low"], s["hdi_high"], color=[f"C{j}" for j in range(len(s))])
        ax_lfc.scatter(s["lfc"], y, color=[f"C{j}" for j in range(len(s))], zorder=3)
        ax_lfc.set_yticks(y, list(s["sgrna"]), fontsize=7)
    else:
        message = sgrnas.attrs.get("message", "no guide-level results")
        ax_lfc.text(0.5, 0.5, message, transform=ax_lfc.transAxes, ha="center", wrap=True)
        ax_lfc.set_yticks([])
    ax_lfc.set_xlabel("log2 fold-change")
    ax_lfc.set_title(f"{label}")
    ax_lfc.legend(fontsize=7, loc="best")
    return _finish(fig, path)


def group_plot(
    groups: pd.DataFrame,
    *,
    contrast: str | Sequence[str] | None = None,
    top: int | None = 30,
    path: str | os.PathLike | None = None,
) -> Figure:
    """Gene-group effects (posterior mean, HDI) beside P(most enriched) and P(most depleted).

    One row of panels per contrast; with ``top`` only the groups with the largest
    ``max(prob_top, prob_bottom)`` or most extreme effects are drawn.
    """
    _require(
        groups,
        ["group", "contrast", "effect", "hdi_low", "hdi_high", "prob_top", "prob_bottom"],
        "the group table",
    )
    labels = _contrasts(groups, contrast)
    frames = []
    for label in labels:
        g = groups[groups["contrast"] == label]
        if top is not None and len(g) > top:
            score = np.maximum(g["prob_top"], g["prob_bottom"]) + 1e-9 * g["effect"].abs()
            g = g.loc[score.sort_values(ascending=False).index[:top]]
        frames.append(g.sort_values("effect"))
    height = max(len(f) for f in frames)
    fig = Figure(figsize=(9.0, (1.2 + 0.26 * height) * len(labels)))
    axes = fig.subplots(len(labels), 2, squeeze=False, gridspec_kw={"width_ratios": [1.6, 1]})
    for (ax_eff, ax_prob), label, g in zip(axes, labels, frames, strict=True):
        y = np.arange(len(g))
        ax_eff.hlines(y, g["hdi_low"], g["hdi_high"], color="C0")
        ax_eff.scatter(g["effect"], y, color="C0", zorder=3)
        ax_eff.axvline(0, color="black", lw=0.6)
        ax_eff.set_yticks(y, list(g["group"]), fontsize=7)
        ax_eff.set_xlabel("group effect, log2 (posterior mean, HDI)")
        ax_eff.set_title(label)
        ax_prob.barh(y + 0.2, g["prob_top"], height=0.4, color=UP_COLOR, label="P(most enriched)")
        ax_prob.barh(
            y - 0.2, g["prob_bottom"], height=0.4, color=DOWN_COLOR, label="P(most depleted)"
        )
        ax_prob.set_yticks(y, [])
        ax_prob.set_xlim(0, 1)
        ax_prob.set_xlabel("posterior probability")
        ax_prob.legend(fontsize=7, loc="lower right")
    return _finish(fig, path)
