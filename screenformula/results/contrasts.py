"""Contrasts of a fitted screen, layer 3: the tables a biologist reads.

The contrast code has three layers, as arviz-stats lays them out:

1. `screenformula.results.draws`: gene, guide and gene-group effects of a contrast as
   ``xarray.DataArray`` objects with dims ``(draw, <item>, contrast)`` (natural log, chains
   flattened into ``draw``): `gene_lfc_draws`, `sgrna_lfc_draws`, `group_effect_draws`
   (its docstring says what a contrast is);
2. `screenformula.results.contrast_core`: summaries on the bare arrays;
3. this module: `compute_contrasts` and `ContrastResult`, the tables (``genes``,
   ``sgrnas``, ``groups``) and hit lists, with MAGeCK-compatible files written by
   `screenformula.results.mageck`; `screenformula.results.expected` has `expected_counts`,
   the "real" read counts. The draw functions and `expected_counts` are re-exported here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import xarray as xr

from screenformula._constants import GENE, GROUP, SGRNA, TREATMENT
from screenformula.errors import FitError
from screenformula.results import contrast_core as core
from screenformula.results.contrast_core import DEFAULT_DELTA
from screenformula.results.diagnostics import Convergence
from screenformula.results.draws import (  # noqa F401: names re-exported from before the split
    CONTRAST,  # noqa: F401
    DRAW,  # noqa: F401
    LEVEL_ORDER,  # noqa: F401
    LOG2E,
    NO_GROUPS,
    NO_SGRNA_DRAWS,
    UNGROUPED,  # noqa: F401
    Contrast,
    FactorLevels,  # noqa: F401
    MissingDraws,
    PosteriorEffects,
    factor_levels,  # noqa: F401
    gene_lfc_draws,
    group_draws,
    group_effect_draws,
    phi_means,
    resolve_contrasts,
    sample_roles,
    sgrna_lfc_draws,
    stack_draws,
)
from screenformula.results.expected import expected_counts
from screenformula.results.guide_summary import guide_statistics
from screenformula.results.mageck import (
    MAGECK_GENE_COLUMNS,
    MAGECK_PROBABILITY_COLUMNS,  # noqa: F401
    MAGECK_SGRNA_COLUMNS,
    write_mageck,
)
from screenformula.spec.names import PHI

if TYPE_CHECKING:
    from screenformula.results.fit import ScreenFit

__all__ = [
    "Contrast",
    "ContrastResult",
    "MAGECK_GENE_COLUMNS",
    "MAGECK_SGRNA_COLUMNS",
    "compute_contrasts",
    "expected_counts",
    "gene_lfc_draws",
    "group_effect_draws",
    "resolve_contrasts",
    "sgrna_lfc_draws",
]

#: A guide's efficiency is reported only where its gene's lfsr is at most this.
EFFICIENCY_LFSR = 0.05

Direction = Literal["both", "down", "up"]


# ------------------------------------------------------------------------ tables
GENE_COLUMNS = (
    "gene",
    "contrast",
    "lfc",
    "lfc_ln",
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
    "rank",
    "n_sgrna",
    "error_down",
    "error_up",
    "qvalue_down",
    "qvalue_up",
    "is_control",
)
SGRNA_COLUMNS = (
    "sgrna",
    "gene",
    "contrast",
    "lfc",
    "lfc_ln",
    "lfc_sd",
    "hdi_low",
    "hdi_high",
    "prob_up",
    "prob_down",
    "lfsr",
    "qvalue",
    "gene_lfc",
    "deviation",
    "efficiency",
    "prob_concordant",
    "is_control",
)
GROUP_COLUMNS = (
    "group",
    "contrast",
    "effect",
    "effect_ln",
    "effect_sd",
    "hdi_low",
    "hdi_high",
    "prob_up",
    "prob_down",
    "lfsr",
    "prob_top",
    "prob_bottom",
    "rank",
    "mean_rank",
    "n_genes",
)


def _empty(columns: tuple[str, ...], message: str) -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    frame.attrs["message"] = message
    return frame


def _summary_columns(s: dict[str, np.ndarray], extra: tuple[str, ...]) -> pd.DataFrame:
    """``lfc``, ``lfc_ln``, ``lfc_sd``, HDI, sign probabilities, lfsr, then ``extra``."""
    columns = {
        "lfc": s["mean"] * LOG2E,
        "lfc_ln": s["mean"],
        "lfc_sd": s["sd"] * LOG2E,
        "hdi_low": s["hdi_low"] * LOG2E,
        "hdi_high": s["hdi_high"] * LOG2E,
    }
    for key in ("prob_up", "prob_down", "lfsr", *extra):
        columns[key] = s[key]
    return pd.DataFrame(columns)


def _summary_frame(
    draws: np.ndarray, *, delta_ln: float, hdi_prob: float, fdr_target: float, call_rule: str
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    s = core.summarize(
        draws, delta=delta_ln, hdi_prob=hdi_prob, fdr_target=fdr_target, call_rule=call_rule
    )
    extra = ("pep", "qvalue", "hit", "rank", "error_down", "error_up", "qvalue_down", "qvalue_up")
    return _summary_columns(s, extra), s


@dataclass
class ContrastResult:
    """Gene, guide and gene-group summaries of one or more contrasts.

    Attributes
    ----------
    genes : DataFrame
        One row per gene x contrast. ``lfc`` posterior mean log2 fold-change (``lfc_ln``
        the same in natural log, the model's scale), ``lfc_sd`` posterior sd (log2),
        ``hdi_low``/``hdi_high`` the HDI (``hdi_prob``, log2), ``prob_up`` = P(LFC > 0),
        ``prob_down`` = P(LFC < 0), ``lfsr`` = min(P(LFC >= 0), P(LFC <= 0)), ``pep`` =
        P(|LFC| <= delta), ``qvalue`` the Bayesian FDR of calling the gene in its more
        probable direction by more than ``delta`` (running mean of the sorted local errors
        ``1 - max(P(LFC > delta), P(LFC < -delta))``, which is the lfsr when ``delta = 0``
        and PEP + P(beyond delta on the other side) otherwise), ``hit`` = qvalue <=
        fdr_target, ``direction`` (``"down"`` where ``lfc < 0``, ``"up"`` where ``lfc > 0``:
        how `hits` splits the calls and ``print(result)`` counts them; the q-value is that
        of the more probable direction, which is the sign of ``lfc`` for all but very
        skewed posteriors), ``provisional`` (True
        for a hit of a fit that failed its convergence checks, or of an approximate fit:
        confirm it with a longer NUTS fit), ``rank`` (1 = smallest local error, ties by
        |mean| / sd), ``n_sgrna``; then ``error_down``/``error_up`` (local error of a down /
        up call: ``1 - P(LFC < -delta)``, ``1 - P(LFC > delta)``),
        ``qvalue_down``/``qvalue_up`` (their q-values, each over all genes: the q-values of
        a one-sided screen, MAGeCK's ``neg|fdr`` / ``pos|fdr``; the hits and their
        directions use ``qvalue``), ``is_control`` (all the gene's guides are controls) and
        ``group`` with gene groups. ``attrs`` hold ``delta`` (log2), ``hdi_prob``,
        ``fdr_target``, ``n_draws``, ``provisional``.
    sgrnas : DataFrame
        One row per guide x contrast: ``lfc``, ``lfc_ln``, ``lfc_sd``, ``hdi_low``,
        ``hdi_high``, ``prob_up``, ``prob_down``, ``lfsr``, ``qvalue`` as for genes (the
        guide's own LFC: gene LFC plus the guide's deviation); ``gene_lfc`` (its gene's
        posterior mean, log2), ``deviation`` (posterior mean of guide minus gene, log2),
        ``efficiency`` = lfc / gene_lfc, the guide's share of the gene effect (1: the
        guide does what its gene does; 0: no effect), given only where the gene's lfsr <=
        0.05 (else NaN: a ratio to an effect of unknown sign means nothing);
        ``prob_concordant`` = P(guide LFC has the sign of the gene's posterior mean).
        Empty, with ``attrs["message"]`` (and `sgrna_message`) saying why, when the fit
        kept no guide-level draws.
    groups : DataFrame
        One row per gene group x contrast: ``effect`` (posterior mean log2; ``effect_ln``
        natural log; the group term's effect ``b + r_group`` when the formula has one,
        else the mean LFC of the group's genes: ``attrs["source"]``), ``effect_sd``, HDI,
        ``prob_up``, ``prob_down``, ``lfsr``, ``prob_top`` = P(the group has the largest
        effect of all groups), ``prob_bottom`` = P(smallest), ``rank`` (1 = largest
        posterior mean), ``mean_rank`` (posterior mean of the per-draw rank), ``n_genes``.
        Empty with ``attrs["message"]`` without gene groups.
    draws : dict of DataArray
        ``"gene"``, ``"sgrna"``, ``"group"`` effect draws (natural log) where available.
    convergence : Convergence, optional
        The fit's convergence verdict (`ScreenFit.convergence`); when it is not trusted,
        the hits are provisional (`provisional`).
    """

    genes: pd.DataFrame
    sgrnas: pd.DataFrame
    groups: pd.DataFrame
    contrasts: list[Contrast]
    factor: str
    settings: dict[str, Any]
    draws: dict[str, xr.DataArray] = field(default_factory=dict, repr=False)
    normalized_counts: pd.DataFrame | None = field(default=None, repr=False)
    guide_genes: pd.Series | None = field(default=None, repr=False)
    size_factors: pd.Series | None = field(default=None, repr=False)
    sample_levels: pd.Series | None = field(default=None, repr=False)
    phi: pd.Series | None = field(default=None, repr=False)
    convergence: Convergence | None = field(default=None, repr=False)

    @property
    def provisional(self) -> bool:
        """True when the hits come from a fit that failed its checks (or is approximate)."""
        return bool(self.settings.get("provisional", False))

    @property
    def sgrna_message(self) -> str | None:
        """Why ``sgrnas`` is empty (None when it is not)."""
        return self.sgrnas.attrs.get("message")

    @property
    def group_message(self) -> str | None:
        """Why ``groups`` is empty (None when it is not)."""
        return self.groups.attrs.get("message")

    def _contrast(self, contrast: str | None) -> list[Contrast]:
        if contrast is None:
            return list(self.contrasts)
        match = [c for c in self.contrasts if c.label == contrast]
        if not match:
            labels = ", ".join(c.label for c in self.contrasts)
            raise FitError(f"no contrast {contrast!r}; contrasts: {labels}")
        return match

    def hits(
        self, q: float | None = None, direction: Direction = "both", contrast: str | None = None
    ) -> pd.DataFrame:
        """Genes called at ``q`` (default: the ``fdr_target`` of the result), by its call rule.

        With the result's ``call_rule`` ``"local"`` a gene is called when its own local
        error (of an LFC beyond +-``delta`` in its more probable direction, ``error_down``
        or ``error_up``) is at most ``q``; with ``"qvalue"`` when its ``qvalue`` is. With
        the default ``q`` these are the rows with ``hit``. ``direction="down"`` /
        ``"up"`` keeps the calls of that ``direction``, so the down and up lists split the
        list of ``"both"`` (the counts ``print(result)`` shows). Rows are sorted by
        q-value. The one-sided q-values ``qvalue_down`` / ``qvalue_up`` (MAGeCK's
        ``neg|fdr`` / ``pos|fdr``) stay in the table for a screen that asks only one
        direction.
        """
        q = self.settings["fdr_target"] if q is None else float(q)
        if direction not in ("both", "down", "up"):
            raise FitError(f"direction must be 'both', 'down' or 'up', not {direction!r}")
        labels = [c.label for c in self._contrast(contrast)]
        genes = self.genes[self.genes["contrast"].isin(labels)]
        error = np.minimum(genes["error_down"], genes["error_up"])
        called = core.hit_calls(error, genes["qvalue"], q, self.settings["call_rule"])
        if direction != "both":
            called &= (genes["direction"] == direction).to_numpy()
        out = genes[called]
        return out.sort_values(["qvalue", "contrast", "rank"]).reset_index(drop=True)

    def guide_counts(self, gene: str, contrast: str | None = None) -> pd.DataFrame:
        """Normalised counts of one gene's guides, long: for `plotting.gene_panel`.

        Columns ``sgrna, gene, sample, level, count`` (the raw count),
        ``normalized_count`` (count / size factor) and ``role`` (``"control"``,
        ``"treatment"`` or ``"other"`` with respect to ``contrast``, default the first).
        """
        if self.normalized_counts is None or self.sample_levels is None:
            raise FitError("this result carries no counts")
        chosen = self._contrast(contrast)[0]
        norm = self.normalized_counts
        rows = norm.index[(self.guide_genes == gene).to_numpy()]
        if len(rows) == 0:
            raise FitError(f"no guides of gene {gene!r}")
        block = norm.loc[rows]
        long = block.reset_index().melt(
            id_vars=SGRNA, var_name="sample", value_name="normalized_count"
        )
        long.insert(1, GENE, gene)
        long["level"] = self.sample_levels.reindex(long["sample"]).to_numpy()
        sf = self.size_factors.reindex(long["sample"]).to_numpy()
        long["count"] = np.rint(long["normalized_count"].to_numpy() * sf).astype(np.int64)
        role = sample_roles(self.sample_levels, chosen)
        long["role"] = role.reindex(long["sample"]).to_numpy()
        return long[[SGRNA, GENE, "sample", "level", "count", "normalized_count", "role"]]

    # --------------------------------------------------------------- MAGeCK files
    def to_mageck(
        self, prefix: str | os.PathLike, *, contrast: str | None = None, overwrite: bool = False
    ) -> list[Path]:
        """Write MAGeCK-compatible ``gene_summary.txt`` and ``sgrna_summary.txt`` files.

        With one contrast (or ``contrast=`` given) the files are ``<prefix>.gene_summary.txt``
        and ``<prefix>.sgrna_summary.txt``; with several, one pair per contrast named
        ``<prefix>.<a>_vs_<b>.gene_summary.txt``. Tab-separated, one header line, MAGeCK's
        columns in MAGeCK's order followed by ours: `screenformula.results.mageck.write_mageck`
        gives every column's Bayesian meaning. Without guide-level draws
        ``sgrna_summary.txt`` is not written (a warning says so). Probabilities are written no
        smaller than ``1 / (n_draws + 1)``, the resolution of the draws. Existing files are
        kept unless ``overwrite=True``; each file is written under a temporary name and
        renamed.

        Returns
        -------
        list of Path
            The files written.
        """
        return write_mageck(self, prefix, contrast=contrast, overwrite=overwrite, stacklevel=3)

    def __repr__(self) -> str:
        s = self.settings
        lines = [
            f"ContrastResult: {len(self.contrasts)} contrast(s) of {self.factor!r}, "
            f"{self.genes['gene'].nunique():,} genes (delta={s['delta']:g} log2, "
            f"HDI {s['hdi_prob']:.0%}, FDR target {s['fdr_target']:g})"
        ]
        provisional = " PROVISIONAL" if self.provisional else ""
        for c in self.contrasts:
            g = self.genes[self.genes["contrast"] == c.label]
            hit = g["hit"].astype(bool)
            down = int((hit & (g["direction"] == "down")).sum())
            up = int((hit & (g["direction"] == "up")).sum())
            lines.append(
                f"  {c.label}: {int(hit.sum())}{provisional} hits ({down} down, {up} up) "
                f"at {call_text(s)}, |log2 LFC| > {s['delta']:g}"
            )
        if self.provisional and self.convergence is not None:
            lines.append("  " + self.convergence.summary())
        for what, message in (("sgrnas", self.sgrna_message), ("groups", self.group_message)):
            if message:
                lines.append(f"  {what}: {message}")
        return "\n".join(lines)


def call_text(settings: dict[str, Any]) -> str:
    """The call rule of a result's ``settings`` in words: ``"local error <= 0.05"``."""
    bound = f"{settings['fdr_target']:g}"
    if settings["call_rule"] == "local":
        return f"local error <= {bound}"
    return f"q <= {bound}"


def compute_contrasts(
    fit: ScreenFit,
    factor: str = TREATMENT,
    *,
    ref: str | None = None,
    a: str | None = None,
    b: str | None = None,
    delta: float = DEFAULT_DELTA,
    hdi_prob: float = 0.94,
    fdr_target: float = 0.05,
    call_rule: str = core.CALL_RULES[0],
) -> ContrastResult:
    """Summarise gene, guide and group contrasts of a fit (see `ScreenFit.contrast`)."""
    info, contrasts = resolve_contrasts(fit, factor, ref=ref, a=a, b=b)
    delta = float(delta)
    if not (np.isfinite(delta) and delta >= 0):
        raise FitError(f"delta must be a number >= 0 (log2 scale), got {delta}")
    if not 0.0 < hdi_prob < 1.0:
        raise FitError(f"hdi_prob must lie strictly between 0 and 1, got {hdi_prob}")
    try:
        core.check_call(fdr_target, call_rule)
    except ValueError as err:
        raise FitError(str(err)) from None
    opts = {
        "delta_ln": delta / LOG2E,
        "hdi_prob": hdi_prob,
        "fdr_target": fdr_target,
        "call_rule": call_rule,
    }
    ex = PosteriorEffects(fit)
    data = ex.data
    verdict = fit._warn_once()
    settings = {
        "delta": delta,
        "hdi_prob": hdi_prob,
        "fdr_target": fdr_target,
        "call_rule": call_rule,
        "n_draws": ex.n_draws,
        "factor": factor,
        "provisional": verdict.provisional,
    }

    genes, gene_parts, gene_summaries = _gene_table(ex, contrasts, opts)
    genes["provisional"] = genes["hit"].astype(bool) & verdict.provisional
    draws = {GENE: stack_draws(gene_parts, GENE, data.gene_names, contrasts, factor=factor)}
    sgrnas, sgrna_da = _guide_table(fit, ex, factor, contrasts, gene_summaries, delta, opts)
    if sgrna_da is not None:
        draws[SGRNA] = sgrna_da
    if data.gene_groups is None:
        groups = _empty(GROUP_COLUMNS, NO_GROUPS)
    else:
        try:
            group_da = group_draws(ex, contrasts, gene_parts)
        except MissingDraws as err:
            raise FitError(f"posterior variable {err.args[0]} is missing from this fit") from None
        groups = _group_table(group_da, data, contrasts, **opts)
        groups.attrs["source"] = group_da.attrs["source"]
        draws[GROUP] = group_da
    for table in (genes, sgrnas, groups):
        table.attrs.update(settings)
    result = _with_counts(fit, ex, factor, genes, sgrnas, groups, contrasts, settings, draws)
    result.convergence = verdict
    return result


def call_direction(s: dict[str, np.ndarray]) -> np.ndarray:
    """``"down"`` / ``"up"`` per item: the sign of its posterior mean LFC.

    ``s`` is a `contrast_core.summarize` output. A mean of exactly 0 takes the direction
    with the smaller local error (``error_down`` / ``error_up``), "up" on a tie.
    """
    mean = s["mean"]
    down = (mean < 0) | ((mean == 0) & (s["error_down"] < s["error_up"]))
    return np.where(down, "down", "up").astype(object)


def _gene_table(
    ex: PosteriorEffects, contrasts: list[Contrast], opts: dict[str, Any]
) -> tuple[pd.DataFrame, list[np.ndarray], list[dict[str, np.ndarray]]]:
    """The gene table, with each contrast's gene draws and summaries."""
    data = ex.data
    n_sgrna = np.bincount(data.gene_codes, minlength=data.n_genes)
    is_control = np.bincount(data.gene_codes, weights=data.controls, minlength=data.n_genes)
    is_control = (is_control == n_sgrna) & (n_sgrna > 0)
    try:
        gene_parts = [ex.effect(c.weights, GENE) for c in contrasts]
    except MissingDraws as err:
        raise FitError(f"posterior variable {err.args[0]} is missing from this fit") from None
    gene_frames, gene_summaries = [], []
    for c, draws in zip(contrasts, gene_parts, strict=True):
        frame, s = _summary_frame(draws, **opts)
        frame.insert(0, "contrast", c.label)
        frame.insert(0, "gene", np.asarray(data.gene_names, dtype=object))
        frame["direction"] = call_direction(s)
        frame["provisional"] = False  # set from the fit's verdict
        frame["n_sgrna"] = n_sgrna
        frame["is_control"] = is_control
        if data.gene_groups is not None:
            frame[GROUP] = data.gene_groups.to_numpy()
        gene_frames.append(frame)
        gene_summaries.append(s)
    genes = pd.concat(gene_frames, ignore_index=True)
    genes = genes[[*GENE_COLUMNS, *([GROUP] if GROUP in genes.columns else [])]]
    return genes, gene_parts, gene_summaries


def _guide_table(
    fit: ScreenFit,
    ex: PosteriorEffects,
    factor: str,
    contrasts: list[Contrast],
    gene_summaries: list[dict[str, np.ndarray]],
    delta: float,
    opts: dict[str, Any],
) -> tuple[pd.DataFrame, xr.DataArray | None]:
    """The guide table: from the guide draws, else from the summaries kept at fit time."""
    data = ex.data
    try:
        sgrna_parts = [ex.effect(c.weights, SGRNA) for c in contrasts]
    except MissingDraws:
        sgrna_parts = None
    sgrna_da = None
    if sgrna_parts is not None:
        guide_summaries = [_summary_frame(guide, **opts)[1] for guide in sgrna_parts]
        sgrna_da = stack_draws(sgrna_parts, SGRNA, data.sgrnas, contrasts, factor=factor)
    else:
        guide_summaries = _kept_guide_summaries(fit, factor, contrasts, delta, opts)
    if guide_summaries is None:
        return _empty(SGRNA_COLUMNS, NO_SGRNA_DRAWS), None
    frames = [
        _guide_frame(c, s, gs, data)
        for c, s, gs in zip(contrasts, guide_summaries, gene_summaries, strict=True)
    ]
    sgrnas = pd.concat(frames, ignore_index=True)
    if sgrna_parts is None:
        sgrnas.attrs["source"] = "guide summaries kept at fit time (no guide draws)"
    return sgrnas, sgrna_da


def _with_counts(
    fit: ScreenFit,
    ex: PosteriorEffects,
    factor: str,
    genes: pd.DataFrame,
    sgrnas: pd.DataFrame,
    groups: pd.DataFrame,
    contrasts: list[Contrast],
    settings: dict[str, Any],
    draws: dict[str, xr.DataArray],
) -> ContrastResult:
    """The `ContrastResult`, with the normalised counts, sample levels and dispersions."""
    data = ex.data
    spec = fit.model.spec
    samples = list(spec.samples)
    sf = data.size_factors.loc[samples].to_numpy()
    norm = pd.DataFrame(
        spec.counts / sf[None, :], index=pd.Index(data.sgrnas, name=SGRNA), columns=samples
    )
    return ContrastResult(
        genes=genes,
        sgrnas=sgrnas,
        groups=groups,
        contrasts=contrasts,
        factor=factor,
        settings=settings,
        draws=draws,
        normalized_counts=norm,
        guide_genes=pd.Series(np.asarray(data.genes_of_sgrna, dtype=object), index=norm.index),
        size_factors=pd.Series(sf, index=pd.Index(samples, name="sample")),
        sample_levels=data.samples.loc[samples, factor].astype(str),
        phi=phi_means(ex) if PHI in ex.post else _kept_phi_means(fit),
    )


def _kept_phi_means(fit: ScreenFit) -> pd.Series | None:
    """Posterior mean dispersion per guide kept at fit time (None when not kept)."""
    kept = fit.sgrna_summary
    if kept is None or "phi_mean" not in kept:
        return None
    return pd.Series(
        np.asarray(kept["phi_mean"].values, dtype=float),
        index=np.asarray(fit.model.data.sgrnas, dtype=object),
    )


def _kept_guide_summaries(
    fit: ScreenFit,
    factor: str,
    contrasts: list[Contrast],
    delta: float,
    opts: dict[str, Any],
) -> list[dict[str, np.ndarray]] | None:
    """Guide summaries from the fit's kept statistics (None when it kept none of these)."""
    kept = fit.sgrna_summary
    if kept is None:
        return None
    out = []
    for c in contrasts:
        found = guide_statistics(kept, factor, c, delta, opts["hdi_prob"])
        if found is None:
            return None
        stats, delta_index, hdi_index = found
        out.append(
            core.summary_from_statistics(
                stats,
                delta_index=delta_index,
                hdi_index=hdi_index,
                fdr_target=opts["fdr_target"],
                call_rule=opts["call_rule"],
            )
        )
    return out


def _guide_frame(
    c: Contrast, s: dict[str, np.ndarray], gs: dict[str, np.ndarray], data: Any
) -> pd.DataFrame:
    """The guide table of contrast ``c`` from its guide summary ``s`` and gene summary ``gs``."""
    frame = _summary_columns(s, ("qvalue",))
    frame.insert(0, "contrast", c.label)
    frame.insert(0, GENE, np.asarray(data.genes_of_sgrna, dtype=object))
    frame.insert(0, SGRNA, np.asarray(data.sgrnas, dtype=object))
    gene_mean = gs["mean"][data.gene_codes]
    gene_lfsr = gs["lfsr"][data.gene_codes]
    frame["gene_lfc"] = gene_mean * LOG2E
    frame["deviation"] = (s["mean"] - gene_mean) * LOG2E
    with np.errstate(divide="ignore", invalid="ignore"):
        eff = s["mean"] / gene_mean
    frame["efficiency"] = np.where(gene_lfsr <= EFFICIENCY_LFSR, eff, np.nan)
    frame["prob_concordant"] = np.where(
        gene_mean > 0, s["prob_up"], np.where(gene_mean < 0, s["prob_down"], np.nan)
    )
    frame["is_control"] = data.controls
    return frame[list(SGRNA_COLUMNS)]


def _group_table(
    da: xr.DataArray,
    data: Any,
    contrasts: list[Contrast],
    *,
    delta_ln: float,
    hdi_prob: float,
    fdr_target: float,
    call_rule: str,
) -> pd.DataFrame:
    names = da[GROUP].values
    sizes = data.gene_groups.value_counts().reindex(names).fillna(0).astype(int).to_numpy()
    frames = []
    for k, c in enumerate(contrasts):
        x = da.values[:, :, k]
        s = core.summarize(
            x, delta=delta_ln, hdi_prob=hdi_prob, fdr_target=fdr_target, call_rule=call_rule
        )
        order = np.argsort(-s["mean"], kind="stable")
        rank = np.empty(len(names), dtype=np.int64)
        rank[order] = np.arange(1, len(names) + 1)
        frames.append(
            pd.DataFrame(
                {
                    "group": names,
                    "contrast": c.label,
                    "effect": s["mean"] * LOG2E,
                    "effect_ln": s["mean"],
                    "effect_sd": s["sd"] * LOG2E,
                    "hdi_low": s["hdi_low"] * LOG2E,
                    "hdi_high": s["hdi_high"] * LOG2E,
                    "prob_up": s["prob_up"],
                    "prob_down": s["prob_down"],
                    "lfsr": s["lfsr"],
                    "prob_top": core.prob_extreme(x, largest=True),
                    "prob_bottom": core.prob_extreme(x, largest=False),
                    "rank": rank,
                    "mean_rank": core.mean_rank(x) if x.shape[1] else np.empty(0),
                    "n_genes": sizes,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)
