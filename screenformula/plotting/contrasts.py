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

    One panel per contrast, with a legend: depleted and enriched hits (by the
    ``direction`` column, else the sign of the LFC) and genes not called, with counts.
    Probabilities of 0 (no draw on the other side) are drawn at ``1 / (n_draws + 1)``
    (``genes.attrs["n_draws"]``), the resolution of the draws, marked by a dashed line;
    the ``label_top`` genes by ``rank`` are named, their labels spread so that none
    overlaps another (a label that finds no free place in the panel is left out).
    """
    _require(genes, ["gene", "contrast", "lfc", y, "hit"], "the gene table")
    labels = _contrasts(genes, contrast)
    fig = Figure(figsize=(4.8 * len(labels), 4.2))
    axes = fig.subplots(1, len(labels), squeeze=False)[0]
    n_draws = genes.attrs.get("n_draws")
    to_label = []
    for ax, label in zip(axes, labels, strict=True):
        g = genes[genes["contrast"] == label]
        values = g[y].to_numpy(dtype=float)
        positive = values[values > 0]
        floor = 1.0 / (n_draws + 1) if n_draws else (positive.min() / 2 if positive.size else 1e-4)
        evidence = -np.log10(np.clip(values, floor, 1.0))
        lfc = g["lfc"].to_numpy(dtype=float)
        hit = g["hit"].to_numpy(dtype=bool)
        if "direction" in g.columns:
            direction = g["direction"].astype(str).to_numpy()
        else:
            direction = np.where(lfc < 0, "down", "up")
        groups = (
            (~hit, BASE_COLOR, "not called"),
            (hit & (direction == "down"), DOWN_COLOR, "depleted"),
            (hit & (direction == "up"), UP_COLOR, "enriched"),
        )
        for mask, color, name in groups:
            name = f"{name} ({int(mask.sum())})"
            ax.scatter(lfc[mask], evidence[mask], s=8, c=color, linewidths=0, label=name)
        ax.axvline(0, color="black", lw=0.6)
        ceiling = -np.log10(floor)
        if n_draws and np.any(values <= floor):
            ax.axhline(
                ceiling, color="0.5", lw=0.6, ls="--", label=f"{y} below 1/{n_draws + 1} draws"
            )
        top = float(evidence.max()) if evidence.size else 1.0
        ax.set_ylim(-0.03 * top, top * 1.12 + 0.1)
        ax.set_xlabel("log2 fold-change (posterior mean)")
        ax.set_ylabel(f"-log10 {y}")
        ax.set_title(f"{label}: {int(hit.sum())} hits")
        if "rank" in g.columns and label_top > 0:
            best = g.nsmallest(label_top, "rank")
            spots = -np.log10(np.clip(best[y].to_numpy(dtype=float), floor, 1.0))
            to_label.append((ax, list(zip(best["gene"], best["lfc"], spots, strict=True))))
        ax.legend(fontsize=7, loc="best", framealpha=0.9)  # away from points and labels
    fig.tight_layout()  # labels are placed in the final axes (they stay out of the layout)
    for ax, rows in to_label:
        _place_labels(ax, rows, fontsize=7)
    return _finish(fig, path)


def _place_labels(ax: object, rows: list, fontsize: float) -> None:
    """Name points without overlaps: each label takes the first free spot below its point.

    Labels sit beside their points, on the outer side (left of depleted genes) when all
    of them fit in the panel, else on the inner side; labels that collide step down
    (then up) a line at a time, with a leader line. Labels on the right are placed
    from the rightmost point leftwards (on the left, the reverse), so a pile of points
    at the same height (the lfsr floor) gets a staircase of labels whose leader lines
    cross neither each other nor a label.
    Text sizes are estimated from the font size (no renderer needed); a label with no
    free spot in the panel is left out.
    """
    to_px = ax.figure.dpi / 72.0
    frame = ax.get_window_extent()
    height = 1.3 * fontsize * to_px
    gap = 3 * to_px
    items = []
    for gene, x, y in rows:
        text = str(gene)
        width = (0.68 * fontsize * len(text) + 2) * to_px
        px, py = ax.transData.transform((float(x), float(y)))
        items.append([-1 if x < 0 else 1, px, py, text, width, float(x), float(y)])
    for outer in (-1, 1):  # one side for all depleted (enriched) labels: the outer if all fit
        group = [it for it in items if it[0] == outer]
        fits = all(
            it[1] + gap + it[4] <= frame.x1 if outer > 0 else it[1] - gap - it[4] >= frame.x0
            for it in group
        )
        for it in group:
            it[0] = outer if fits else -outer
    items.sort(key=lambda it: (it[0], -it[1] if it[0] > 0 else it[1]))
    steps = [0, *range(-1, -31, -1), *range(1, 11)]
    placed: list[tuple[float, float, float, float]] = []
    for side, px, py, text, width, x, y in items:
        left = px + gap if side > 0 else px - gap - width
        for step in steps:
            dy = step * height
            box = (left, py + dy - height / 2, left + width, py + dy + height / 2)
            inside = box[0] >= frame.x0 and box[2] <= frame.x1 and box[1] >= frame.y0
            inside = inside and box[3] <= frame.y1
            if inside and all(
                # touching boxes are free (0.5 px for rounding)
                box[2] <= b[0] + 0.5
                or box[0] >= b[2] - 0.5
                or box[3] <= b[1] + 0.5
                or box[1] >= b[3] - 0.5
                for b in placed
            ):
                break
        else:
            continue
        placed.append(box)
        note = ax.annotate(
            text,
            (x, y),
            xytext=((left - px) / to_px, dy / to_px),
            textcoords="offset points",
            fontsize=fontsize,
            ha="left",
            va="center",
            arrowprops=(
                {"arrowstyle": "-", "lw": 0.4, "color": "0.45", "shrinkA": 0, "shrinkB": 2}
                if step
                else None
            ),
        )
        note.set_in_layout(False)


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
