"""Contrasts of a fitted screen: draws (xarray), then summaries (NumPy core), then tables.

Three layers, as arviz-stats lays them out:

1. draw extraction: gene, guide and gene-group effects of a contrast as
   ``xarray.DataArray`` objects with dims ``(draw, <item>, contrast)`` (natural log, chains
   flattened into ``draw``): `gene_lfc_draws`, `sgrna_lfc_draws`, `group_effect_draws`;
2. `screenformula.results.contrast_core`: summaries on the bare arrays;
3. `ContrastResult`: the tables a biologist reads (``genes``, ``sgrnas``, ``groups``), hit
   lists, MAGeCK-compatible files; and `expected_counts`, the "real" read counts.

What a contrast is (MODEL.md, "Contrasts")
------------------------------------------
Each level ``l`` of a sample-sheet factor (``treatment``) has a population coefficient
``b[treatment[l]]`` (0 for the reference level, which has none) and, in every
guide-level group term that has that coefficient, a varying effect. For gene ``g``::

    effect[g, l] = b[l] + r_group[group(g), l] + r_gene[g, l]      (terms present only)
    LFC[g, a vs b] = effect[g, a] - effect[g, b]

so ``a`` against the reference is ``b[a] + r_gene[g, a]`` for the seed's formula. A guide
adds its own term (``r_sgrna[s, l]``); a gene group's effect is ``b[l] + r_group[k, l]``
when the formula has a group term, else the mean of its genes' LFCs. Sample-level terms
(``(1 | batch)``) do not enter gene contrasts. Interaction coefficients are not used: the
contrast is the main effect (at the reference level of any interacting variable).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import xarray as xr

from screenformula._constants import CONDITION, GENE, GROUP, SGRNA, TREATMENT
from screenformula.errors import FitError
from screenformula.results import contrast_core as core
from screenformula.spec.model_spec import REFERENCE_LEVELS

if TYPE_CHECKING:
    from screenformula.results.fit import ScreenFit
    from screenformula.spec.terms import GroupTerm

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

#: Natural log to log2.
LOG2E = 1.0 / np.log(2.0)
#: Dimension of the flattened (chain x draw) posterior draws.
DRAW = "draw"
#: Dimension of the contrasts.
CONTRAST = "contrast"
#: Gene-group label of genes outside every group (as `ScreenData` fills it); left out of
#: the group table and of ``prob_top`` / ``prob_bottom``.
UNGROUPED = "ungrouped"
#: A guide's efficiency is reported only where its gene's lfsr is at most this.
EFFICIENCY_LFSR = 0.05
#: Order of guide-level term levels, coarse to fine.
LEVEL_ORDER = {GROUP: 0, GENE: 1, SGRNA: 2}

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

NO_SGRNA_DRAWS = (
    "sgRNA-level draws were not stored for this fit (fit.options['store_sgrna'] is False, "
    "the default for genome-scale libraries): refit with store_sgrna=True for guide-level "
    "results"
)
NO_GROUPS = "the screen data has no gene groups (pass gene_groups= when reading the counts)"

Direction = Literal["both", "down", "up"]


class _MissingDraws(Exception):
    """A posterior variable a contrast needs was not stored."""


# ------------------------------------------------------------------ contrasts
@dataclass(frozen=True)
class Contrast:
    """One comparison: ``weights`` over coefficient names, ``treatment`` vs ``control``.

    For a categorical factor ``treatment`` is level ``a`` and ``control`` level ``b``; for
    a numeric factor the contrast is its slope (``control`` is None).
    """

    label: str
    weights: dict[str, float]
    treatment: str
    control: str | None


@dataclass(frozen=True)
class FactorLevels:
    """The levels of a factor as the model coded them."""

    factor: str
    levels: tuple[str, ...]
    reference: str | None  # the level without a coefficient (None: numeric or no intercept)
    coefs: dict[str, str]  # level -> coefficient name
    numeric: bool = False


def _coefficient_names(spec: Any) -> list[str]:
    names = list(spec.mean.common.names)
    for term in spec.groups:
        if term.level in LEVEL_ORDER:
            names += [c for c in term.coef_names if c != "Intercept" and c not in names]
    return names


def factor_levels(fit: ScreenFit, factor: str) -> FactorLevels:
    """How ``factor`` enters the model: its levels, reference and coefficient names."""
    spec = fit.model.spec
    names = _coefficient_names(spec)
    if factor in names:
        return FactorLevels(factor, (factor,), None, {factor: factor}, numeric=True)
    prefix = f"{factor}["
    coefs = {n[len(prefix) : -1]: n for n in names if n.startswith(prefix) and n.endswith("]")}
    if not coefs:
        available = sorted({n.split("[")[0] for n in names}) or ["none"]
        raise FitError(
            f"the formula has no coefficient for {factor!r}; factors with coefficients: "
            f"{', '.join(available)}"
        )
    interactions = [n for n in names if ":" in n and factor in n]
    if interactions:
        warnings.warn(
            f"contrasts of {factor!r} use its main-effect coefficients only (at the reference "
            f"level of interacting variables); interaction terms such as {interactions[0]!r} "
            "are not added",
            UserWarning,
            stacklevel=3,
        )
    values = spec.data.samples.loc[list(spec.samples), factor]
    observed = _ordered_levels(values)
    reference = None
    if spec.mean.common.intercept:
        uncoded = [level for level in observed if level not in coefs]
        if len(uncoded) != 1:  # e.g. (0 + treatment | gene): look at the population terms
            population = set(spec.mean.common.names)
            uncoded = [lv for lv in observed if f"{prefix}{lv}]" not in population]
        if len(uncoded) != 1:
            raise FitError(
                f"cannot tell the reference level of {factor!r}: levels without a coefficient "
                f"are {uncoded or 'none'}"
            )
        reference = uncoded[0]
    levels = tuple(lv for lv in observed if lv == reference or lv in coefs)
    return FactorLevels(factor, levels, reference, coefs)


def _ordered_levels(values: pd.Series) -> list[str]:
    """Levels present in ``values``: categorical order, else the reference rule of the spec."""
    present = list(pd.unique(values.astype(str)))
    if isinstance(values.dtype, pd.CategoricalDtype):
        return [str(c) for c in values.cat.categories if str(c) in present]
    ordered = sorted(present)
    for ref in REFERENCE_LEVELS:
        match = [level for level in ordered if level.lower() == ref]
        if match:
            ordered.remove(match[0])
            return [match[0], *ordered]
    return ordered


def resolve_contrasts(
    fit: ScreenFit,
    factor: str = TREATMENT,
    *,
    ref: str | None = None,
    a: str | None = None,
    b: str | None = None,
) -> tuple[FactorLevels, list[Contrast]]:
    """The contrasts asked for: every level against ``ref`` by default, or ``a`` vs ``b``.

    ``ref`` defaults to the model's reference level (the one without a coefficient;
    ``control`` when the sheet has it). ``b`` is a synonym of ``ref``; with ``a`` alone,
    ``a`` is compared with ``ref``.
    """
    info = factor_levels(fit, factor)
    if info.numeric:
        if ref is not None or a is not None or b is not None:
            raise FitError(f"{factor!r} is numeric: its contrast is its slope (no ref, a or b)")
        return info, [Contrast(factor, {factor: 1.0}, factor, None)]
    if ref is not None and b is not None and ref != b:
        raise FitError(f"ref={ref!r} and b={b!r} disagree: give one of them")
    base = b if b is not None else ref
    if base is None:
        base = info.reference
    if base is None:  # no intercept: every level has a coefficient
        wanted = fit.model.settings.get("reference", {}).get(factor)
        base = wanted if wanted in info.levels else _ordered_levels(pd.Series(info.levels))[0]
    for name, level in (("ref" if b is None else "b", base), ("a", a)):
        if level is not None and level not in info.levels:
            raise FitError(
                f"{name}={level!r} is not a level of {factor!r}; levels: {', '.join(info.levels)}"
            )
    targets = [a] if a is not None else [lv for lv in info.levels if lv != base]
    if a is not None and a == base:
        raise FitError(f"a and the reference are both {a!r}: nothing to compare")
    out = []
    for level in targets:
        weights: dict[str, float] = {}
        if level in info.coefs:
            weights[info.coefs[level]] = 1.0
        if base in info.coefs:
            weights[info.coefs[base]] = weights.get(info.coefs[base], 0.0) - 1.0
        out.append(Contrast(f"{level} vs {base}", weights, level, base))
    return info, out


# --------------------------------------------------------------- draw extraction
def _flat(da: xr.DataArray) -> np.ndarray:
    """Posterior values with chains flattened into the first axis."""
    rest = [d for d in da.dims if d not in ("chain", "draw")]
    da = da.transpose("chain", "draw", *rest)
    return np.asarray(da.values).reshape((-1, *da.shape[2:]))


class _Extractor:
    """Effects of coefficients at the group, gene and guide level, from a fit's posterior."""

    def __init__(self, fit: ScreenFit) -> None:
        self.fit = fit
        self.spec = fit.model.spec
        self.data = self.spec.data
        self.post = fit.posterior
        self.n_draws = int(self.post.sizes.get("chain", 1) * self.post.sizes["draw"])
        self.first_guide = np.unique(self.data.gene_codes, return_index=True)[1]
        self.terms = sorted(
            (t for t in self.spec.groups if t.level in LEVEL_ORDER),
            key=lambda t: LEVEL_ORDER[t.level],
        )
        self._b: np.ndarray | None = None

    def n_items(self, level: str) -> int:
        if level == GENE:
            return self.data.n_genes
        if level == SGRNA:
            return self.data.n_sgrnas
        return len(self.group_term().level_names)

    def group_term(self) -> GroupTerm:
        for term in self.terms:
            if term.level == GROUP:
                return term
        raise AssertionError("no group term")

    def has_group_term(self) -> bool:
        return any(t.level == GROUP for t in self.terms)

    def r(self, term: GroupTerm, coef: str) -> np.ndarray:
        name = f"r_{term.name}"
        if name not in self.post:
            raise _MissingDraws(name)
        return _flat(self.post[name].sel({f"{term.name}_coef": coef}))

    def _mapping(self, term: GroupTerm, level: str) -> np.ndarray | None:
        """Column of ``r_<term>`` for each item of ``level`` (None: the identity)."""
        if level == GROUP:
            return None
        idx = term.index[self.first_guide] if level == GENE else term.index
        return None if np.array_equal(idx, np.arange(idx.size)) else idx

    def coefficient(self, coef: str, level: str) -> np.ndarray:
        """Total effect of ``coef`` for every item of ``level`` (a new draws x items array)."""
        terms = [
            t
            for t in self.terms
            if LEVEL_ORDER[t.level] <= LEVEL_ORDER[level] and coef in t.coef_names
        ]
        for term in terms:  # fail before allocating anything large
            if f"r_{term.name}" not in self.post:
                raise _MissingDraws(f"r_{term.name}")
        names = list(self.spec.mean.common.names)
        b = np.zeros((self.n_draws, 1))
        if coef in names:
            if self._b is None:
                self._b = _flat(self.post["b"])
            b = self._b[:, names.index(coef)][:, None]
        total: np.ndarray | None = None
        for term in terms:
            r = self.r(term, coef)
            idx = self._mapping(term, level)
            piece = r if idx is None else r[:, idx]
            if total is None:
                # never write into the posterior: copy unless indexing already did
                shared = np.may_share_memory(piece, self.post[f"r_{term.name}"].values)
                total = piece.copy() if shared else piece
                total += b
            else:
                total += piece
        if total is None:
            total = np.repeat(b, self.n_items(level), axis=1)
        return total

    def effect(self, weights: dict[str, float], level: str) -> np.ndarray:
        """``sum_c w_c * coefficient(c)`` (draws x items)."""
        out: np.ndarray | None = None
        for coef, w in weights.items():
            if not w:
                continue
            part = self.coefficient(coef, level)
            if w != 1.0:
                part *= w
            if out is None:
                out = part
            else:
                out += part
        if out is None:
            out = np.zeros((self.n_draws, self.n_items(level)))
        return out


def _stack(
    parts: list[np.ndarray], item_dim: str, items: Any, contrasts: list[Contrast], **attrs: Any
) -> xr.DataArray:
    values = parts[0][:, :, None] if len(parts) == 1 else np.stack(parts, axis=-1)
    return xr.DataArray(
        values,
        dims=(DRAW, item_dim, CONTRAST),
        coords={item_dim: np.asarray(items, dtype=object), CONTRAST: [c.label for c in contrasts]},
        attrs={"scale": "natural log", **attrs},
        name="lfc",
    )


def gene_lfc_draws(
    fit: ScreenFit,
    factor: str = TREATMENT,
    *,
    ref: str | None = None,
    a: str | None = None,
    b: str | None = None,
) -> xr.DataArray:
    """Gene LFC draws (natural log), dims ``(draw, gene, contrast)``."""
    _, contrasts = resolve_contrasts(fit, factor, ref=ref, a=a, b=b)
    ex = _Extractor(fit)
    try:
        parts = [ex.effect(c.weights, GENE) for c in contrasts]
    except _MissingDraws as err:
        raise FitError(f"posterior variable {err.args[0]} is missing from this fit") from None
    return _stack(parts, GENE, fit.model.data.gene_names, contrasts, factor=factor)


def sgrna_lfc_draws(
    fit: ScreenFit,
    factor: str = TREATMENT,
    *,
    ref: str | None = None,
    a: str | None = None,
    b: str | None = None,
) -> xr.DataArray:
    """Guide LFC draws (gene LFC plus the guide's own effect), dims ``(draw, sgrna, contrast)``.

    Raises
    ------
    FitError
        When the fit did not keep guide-level draws (``store_sgrna=False``).
    """
    _, contrasts = resolve_contrasts(fit, factor, ref=ref, a=a, b=b)
    ex = _Extractor(fit)
    try:
        parts = [ex.effect(c.weights, SGRNA) for c in contrasts]
    except _MissingDraws:
        raise FitError(NO_SGRNA_DRAWS) from None
    return _stack(parts, SGRNA, fit.model.data.sgrnas, contrasts, factor=factor)


def group_effect_draws(
    fit: ScreenFit,
    factor: str = TREATMENT,
    *,
    ref: str | None = None,
    a: str | None = None,
    b: str | None = None,
) -> xr.DataArray:
    """Gene-group effect draws, dims ``(draw, group, contrast)``; ``attrs["source"]`` says how.

    With a group term in the formula the effect is ``b + r_group`` (``source="group
    term"``); otherwise it is the mean LFC of the group's genes (``source="mean of gene
    LFCs"``). The ``ungrouped`` label is left out.
    """
    _, contrasts = resolve_contrasts(fit, factor, ref=ref, a=a, b=b)
    return _group_draws(_Extractor(fit), contrasts, None)


def _group_draws(
    ex: _Extractor, contrasts: list[Contrast], gene_draws: list[np.ndarray] | None
) -> xr.DataArray:
    data = ex.data
    if data.gene_groups is None:
        raise FitError(NO_GROUPS)
    if ex.has_group_term():
        names = np.asarray(ex.group_term().level_names, dtype=object)
        parts = [ex.effect(c.weights, GROUP) for c in contrasts]
        source = "group term"
    else:
        names = np.asarray(data.group_names, dtype=object)
        codes = np.asarray(data.group_codes)
        weights = np.zeros((data.n_genes, len(names)))
        weights[np.arange(data.n_genes), codes] = 1.0
        weights /= weights.sum(axis=0, keepdims=True)
        if gene_draws is None:
            gene_draws = [ex.effect(c.weights, GENE) for c in contrasts]
        parts = [d @ weights for d in gene_draws]
        source = "mean of gene LFCs"
    keep = names != UNGROUPED
    return _stack([p[:, keep] for p in parts], GROUP, names[keep], contrasts, source=source)


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


def _summary_frame(
    draws: np.ndarray, *, delta_ln: float, hdi_prob: float, fdr_target: float
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    s = core.summarize(draws, delta=delta_ln, hdi_prob=hdi_prob, fdr_target=fdr_target)
    frame = pd.DataFrame(
        {
            "lfc": s["mean"] * LOG2E,
            "lfc_ln": s["mean"],
            "lfc_sd": s["sd"] * LOG2E,
            "hdi_low": s["hdi_low"] * LOG2E,
            "hdi_high": s["hdi_high"] * LOG2E,
            "prob_up": s["prob_up"],
            "prob_down": s["prob_down"],
            "lfsr": s["lfsr"],
            "pep": s["pep"],
            "qvalue": s["qvalue"],
            "hit": s["hit"],
            "rank": s["rank"],
            "error_down": s["error_down"],
            "error_up": s["error_up"],
            "qvalue_down": s["qvalue_down"],
            "qvalue_up": s["qvalue_up"],
        }
    )
    return frame, s


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
        fdr_target, ``rank`` (1 = smallest local error, ties by |mean| / sd), ``n_sgrna``;
        then ``error_down``/``error_up`` (local error of a down / up call: ``1 - P(LFC <
        -delta)``, ``1 - P(LFC > delta)``), ``qvalue_down``/``qvalue_up`` (their q-values),
        ``is_control`` (all the gene's guides are controls) and ``group`` with gene groups.
        ``attrs`` hold ``delta`` (log2), ``hdi_prob``, ``fdr_target``, ``n_draws``.
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
        """Genes called at Bayesian FDR ``q`` (default: the ``fdr_target`` of the result).

        ``direction="both"`` uses ``qvalue``; ``"down"``/``"up"`` use the one-directional
        q-values (``qvalue_down``/``qvalue_up``), so each list has posterior expected FDR
        at most ``q`` on its own. Rows are sorted by that q-value.
        """
        q = self.settings["fdr_target"] if q is None else float(q)
        column = {"both": "qvalue", "down": "qvalue_down", "up": "qvalue_up"}.get(direction)
        if column is None:
            raise FitError(f"direction must be 'both', 'down' or 'up', not {direction!r}")
        labels = [c.label for c in self._contrast(contrast)]
        genes = self.genes[self.genes["contrast"].isin(labels)]
        out = genes[genes[column] <= q]
        return out.sort_values([column, "contrast", "rank"]).reset_index(drop=True)

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
        role = _roles(self.sample_levels, chosen)
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
        columns in MAGeCK's order followed by ours. Bayesian meanings (``delta`` the
        result's minimum effect, log2):

        gene_summary: ``num`` guides of the gene; ``neg|score`` = P(LFC >= -delta) (the local
        error of calling the gene depleted; lower is stronger), ``neg|p-value`` = P(LFC >=
        0), ``neg|fdr`` = the Bayesian q-value of depletion calls (``qvalue_down``),
        ``neg|rank`` by ``neg|score`` (ties: lower LFC first), ``neg|goodsgrna`` = guides
        with P(guide LFC < 0) > 0.5, ``neg|lfc`` = posterior mean log2 LFC; ``pos|...`` the
        same for enrichment (P(LFC <= delta), P(LFC <= 0), ``qvalue_up``, guides with P(guide
        LFC > 0) > 0.5). Rows sorted by ``neg|rank``; ``goodsgrna`` is ``NA`` when the fit
        kept no guide draws.

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

        Returns
        -------
        list of Path
            The files written.
        """
        chosen = self._contrast(contrast)
        prefix = Path(prefix)
        jobs: list[tuple[Path, pd.DataFrame]] = []
        for c in chosen:
            stem = (
                str(prefix)
                if len(chosen) == 1
                else f"{prefix}.{c.label.replace(' ', '_').replace('/', '-')}"
            )
            jobs.append((Path(f"{stem}.gene_summary.txt"), self._mageck_gene_table(c)))
            if self.sgrna_message is None:
                jobs.append((Path(f"{stem}.sgrna_summary.txt"), self._mageck_sgrna_table(c)))
        if self.sgrna_message is not None:
            warnings.warn(
                f"no sgrna_summary.txt written: {self.sgrna_message}", UserWarning, stacklevel=2
            )
        existing = [str(p) for p, _ in jobs if p.exists()]
        if existing and not overwrite:
            raise FitError(f"{existing[0]} exists; pass overwrite=True to replace it")
        floor = 1.0 / (self.settings["n_draws"] + 1)
        for path, table in jobs:
            probs = [c for c in MAGECK_PROBABILITY_COLUMNS if c in table.columns]
            table[probs] = table[probs].clip(lower=floor)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
            try:
                table.to_csv(tmp, sep="\t", index=False, float_format="%.6g", na_rep="NA")
                os.replace(tmp, path)
            finally:
                if tmp.exists():
                    tmp.unlink()
        return [p for p, _ in jobs]

    def _mageck_gene_table(self, c: Contrast) -> pd.DataFrame:
        g = self.genes[self.genes["contrast"] == c.label].reset_index(drop=True)
        good_neg = good_pos = pd.Series(pd.NA, index=g.index, dtype="Int64")
        if self.sgrna_message is None:
            s = self.sgrnas[self.sgrnas["contrast"] == c.label]
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
            "lfc_ln",
        ]
        if GROUP in g.columns:
            extra.append(GROUP)
        for column in extra:
            table[column] = g[column].to_numpy()
        return table.sort_values("neg|rank", kind="stable").reset_index(drop=True)

    def _mageck_sgrna_table(self, c: Contrast) -> pd.DataFrame:
        s = self.sgrnas[self.sgrnas["contrast"] == c.label].reset_index(drop=True)
        norm = self.normalized_counts.loc[s["sgrna"]]
        role = _roles(self.sample_levels, c).reindex(norm.columns)
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
            self.phi.reindex(s["sgrna"]).to_numpy()
            if self.phi is not None
            else np.full(len(s), np.nan)
        )
        floor = 1.0 / (self.settings["n_draws"] + 1)  # see MAGECK_PROBABILITY_COLUMNS
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

    def __repr__(self) -> str:
        s = self.settings
        lines = [
            f"ContrastResult: {len(self.contrasts)} contrast(s) of {self.factor!r}, "
            f"{self.genes['gene'].nunique():,} genes (delta={s['delta']:g} log2, "
            f"HDI {s['hdi_prob']:.0%}, FDR target {s['fdr_target']:g})"
        ]
        for c in self.contrasts:
            g = self.genes[self.genes["contrast"] == c.label]
            down = int(((g["qvalue_down"] <= s["fdr_target"]) & (g["lfc"] < 0)).sum())
            up = int(((g["qvalue_up"] <= s["fdr_target"]) & (g["lfc"] > 0)).sum())
            lines.append(f"  {c.label}: {int(g['hit'].sum())} hits ({down} down, {up} up)")
        for what, message in (("sgrnas", self.sgrna_message), ("groups", self.group_message)):
            if message:
                lines.append(f"  {what}: {message}")
        return "\n".join(lines)


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


def _roles(levels: pd.Series, c: Contrast) -> pd.Series:
    role = pd.Series("other", index=levels.index, dtype=object)
    if c.control is None:  # numeric factor: 0 against the rest
        values = pd.to_numeric(levels, errors="coerce")
        role[values == 0] = "control"
        role[values != 0] = "treatment"
        return role
    role[levels == c.control] = "control"
    role[levels == c.treatment] = "treatment"
    return role


def compute_contrasts(
    fit: ScreenFit,
    factor: str = TREATMENT,
    *,
    ref: str | None = None,
    a: str | None = None,
    b: str | None = None,
    delta: float = 0.0,
    hdi_prob: float = 0.94,
    fdr_target: float = 0.05,
) -> ContrastResult:
    """Summarise gene, guide and group contrasts of a fit (see `ScreenFit.contrast`)."""
    info, contrasts = resolve_contrasts(fit, factor, ref=ref, a=a, b=b)
    delta = float(delta)
    if not (np.isfinite(delta) and delta >= 0):
        raise FitError(f"delta must be a number >= 0 (log2 scale), got {delta}")
    if not 0.0 < hdi_prob < 1.0:
        raise FitError(f"hdi_prob must lie strictly between 0 and 1, got {hdi_prob}")
    if not 0.0 <= fdr_target <= 1.0:
        raise FitError(f"fdr_target must lie in [0, 1], got {fdr_target}")
    opts = {"delta_ln": delta / LOG2E, "hdi_prob": hdi_prob, "fdr_target": fdr_target}
    ex = _Extractor(fit)
    data = ex.data
    settings = {
        "delta": delta,
        "hdi_prob": hdi_prob,
        "fdr_target": fdr_target,
        "n_draws": ex.n_draws,
        "factor": factor,
    }

    # genes
    n_sgrna = np.bincount(data.gene_codes, minlength=data.n_genes)
    is_control = np.bincount(data.gene_codes, weights=data.controls, minlength=data.n_genes)
    is_control = (is_control == n_sgrna) & (n_sgrna > 0)
    try:
        gene_parts = [ex.effect(c.weights, GENE) for c in contrasts]
    except _MissingDraws as err:
        raise FitError(f"posterior variable {err.args[0]} is missing from this fit") from None
    gene_frames, gene_summaries = [], []
    for c, draws in zip(contrasts, gene_parts, strict=True):
        frame, s = _summary_frame(draws, **opts)
        frame.insert(0, "contrast", c.label)
        frame.insert(0, "gene", np.asarray(data.gene_names, dtype=object))
        frame["n_sgrna"] = n_sgrna
        frame["is_control"] = is_control
        if data.gene_groups is not None:
            frame[GROUP] = data.gene_groups.to_numpy()
        gene_frames.append(frame)
        gene_summaries.append(s)
    genes = pd.concat(gene_frames, ignore_index=True)
    genes = genes[[*GENE_COLUMNS, *([GROUP] if GROUP in genes.columns else [])]]
    draws = {GENE: _stack(gene_parts, GENE, data.gene_names, contrasts, factor=factor)}

    # guides
    try:
        sgrna_parts = [ex.effect(c.weights, SGRNA) for c in contrasts]
    except _MissingDraws:
        sgrna_parts = None
    if sgrna_parts is None:
        sgrnas = _empty(SGRNA_COLUMNS, NO_SGRNA_DRAWS)
    else:
        frames = []
        for c, guide, gs in zip(contrasts, sgrna_parts, gene_summaries, strict=True):
            frame, s = _summary_frame(guide, **opts)
            frame = frame.drop(
                columns=["pep", "hit", "rank", "error_down", "error_up", "qvalue_down", "qvalue_up"]
            )
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
            frames.append(frame[list(SGRNA_COLUMNS)])
        sgrnas = pd.concat(frames, ignore_index=True)
        draws[SGRNA] = _stack(sgrna_parts, SGRNA, data.sgrnas, contrasts, factor=factor)

    # gene groups
    if data.gene_groups is None:
        groups = _empty(GROUP_COLUMNS, NO_GROUPS)
    else:
        try:
            group_da = _group_draws(ex, contrasts, gene_parts)
        except _MissingDraws as err:
            raise FitError(f"posterior variable {err.args[0]} is missing from this fit") from None
        groups = _group_table(group_da, data, contrasts, **opts)
        draws[GROUP] = group_da

    for table in (genes, sgrnas, groups):
        table.attrs.update(settings)
    if GROUP in draws:
        groups.attrs["source"] = draws[GROUP].attrs["source"]

    spec = fit.model.spec
    samples = list(spec.samples)
    sf = data.size_factors.loc[samples].to_numpy()
    norm = pd.DataFrame(
        spec.counts / sf[None, :], index=pd.Index(data.sgrnas, name=SGRNA), columns=samples
    )
    levels = data.samples.loc[samples, factor].astype(str)
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
        sample_levels=levels,
        phi=_phi_means(ex),
    )


def _group_table(
    da: xr.DataArray,
    data: Any,
    contrasts: list[Contrast],
    *,
    delta_ln: float,
    hdi_prob: float,
    fdr_target: float,
) -> pd.DataFrame:
    names = da[GROUP].values
    sizes = data.gene_groups.value_counts().reindex(names).fillna(0).astype(int).to_numpy()
    frames = []
    for k, c in enumerate(contrasts):
        x = da.values[:, :, k]
        s = core.summarize(x, delta=delta_ln, hdi_prob=hdi_prob, fdr_target=fdr_target)
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


def _phi_means(ex: _Extractor) -> pd.Series | None:
    """Posterior mean NB dispersion per guide (None when not stored or not per guide)."""
    if "phi" not in ex.post:
        return None
    phi = ex.post["phi"]
    mean = np.asarray(phi.mean(dim=[d for d in ("chain", "draw") if d in phi.dims]).values)
    if mean.ndim > 1 or (mean.ndim == 1 and mean.size != ex.data.n_sgrnas):
        return None
    values = np.broadcast_to(mean.astype(float), (ex.data.n_sgrnas,))
    return pd.Series(values, index=np.asarray(ex.data.sgrnas, dtype=object))


# ---------------------------------------------------------------- expected counts
def expected_counts(
    fit: ScreenFit,
    reference_depth: float | None = None,
    *,
    by: str | None = None,
    hdi_prob: float = 0.94,
    aggregate: Literal["sum", "mean"] = "sum",
    chunk_genes: int = 256,
) -> pd.DataFrame:
    """Posterior expected ("real", de-noised) read count of every gene in every condition.

    For guide ``s`` and condition ``c`` (a level of the sample-sheet column ``by``)::

        mu[s, c] = L_ref * exp(mean over the screen samples j of condition c of eta[s, j])

    where ``eta`` is the model's linear predictor without the size factor: intercept,
    population terms, offsets, every group term (gene groups, genes, guides; sample-level
    terms averaged over the condition's samples) and the pool offset or covariate when
    the model has one. The gene's count is the sum of ``mu`` over its guides
    (``aggregate="sum"``, comparable with a gene's total reads) or their mean
    (``"mean"``). Summaries are over the posterior draws of that quantity.

    ``L_ref`` (``reference_depth``) is a size factor: by default the geometric mean of the
    screen samples' size factors, i.e. a typical sample of this screen; the ``observed``
    column puts the data on the same scale (count / size factor * L_ref, summed or
    averaged over the gene's guides, then averaged over the condition's samples).

    Without stored guide-level draws (genome-scale fits) each guide's own effects are
    integrated out: ``exp(gene-level eta)`` times the log-normal mean ``exp(v / 2)``, ``v``
    the variance of the guide-level effects in that condition (from ``sd_<term>`` and
    ``cor_<term>``): the expected count of a typical guide of the gene.

    Returns
    -------
    DataFrame
        One row per gene x condition: ``gene, condition, mean, sd, hdi_low, hdi_high,
        observed, n_sgrna``; ``attrs`` hold ``reference_depth``, ``by``, ``aggregate``,
        ``hdi_prob`` and ``guide_effects`` (``"draws"`` or ``"integrated"``).
    """
    spec = fit.model.spec
    data = spec.data
    if aggregate not in ("sum", "mean"):
        raise FitError(f"aggregate must be 'sum' or 'mean', not {aggregate!r}")
    samples = list(spec.samples)
    if by is None:
        by = TREATMENT if TREATMENT in data.samples.columns else CONDITION
    if by not in data.samples.columns:
        raise FitError(f"by={by!r} is not a sample-sheet column ({', '.join(data.samples)})")
    column = data.samples.loc[samples, by]
    labels = column.astype(str).to_numpy()
    levels = np.asarray(_ordered_levels(column), dtype=object)
    avg = (labels[None, :] == levels[:, None]).astype(float)
    avg /= avg.sum(axis=1, keepdims=True)  # (conditions, screen samples)
    l_ref = (
        float(np.exp(np.mean(spec.log_size_factors)))
        if reference_depth is None
        else float(reference_depth)
    )
    if not (np.isfinite(l_ref) and l_ref > 0):
        raise FitError(f"reference_depth must be a positive size factor, got {reference_depth}")

    ex = _Extractor(fit)
    post = ex.post
    n = ex.n_draws
    common = spec.mean.common
    base = np.zeros((n, len(levels)))
    if common.intercept:
        base += _flat(post["Intercept"])[:, None]
    if common.names:
        base += _flat(post["b"]) @ (avg @ common.X).T
    base += (avg @ common.offset)[None, :]
    guide_terms: list[tuple[GroupTerm, np.ndarray, np.ndarray]] = []
    integrated = False
    for term in spec.groups:
        name = f"r_{term.name}"
        if term.level == "sample":
            r = _flat(post[name])  # (n, levels, coefs)
            per_sample = np.einsum("njc,jc->nj", r[:, term.index, :], term.Z)
            base += per_sample @ avg.T
            continue
        zbar = avg @ term.Z  # (conditions, coefs)
        if name in post:
            guide_terms.append((term, _flat(post[name]), zbar))
        elif term.level == SGRNA:
            base += 0.5 * _guide_variance(post, term, zbar, n)
            integrated = True
        else:
            raise FitError(f"posterior variable {name} is missing from this fit")
    pool_part: np.ndarray | None = None
    if spec.pool.mode == "offset":
        pool_part = np.broadcast_to(spec.pool.log_abundance[None, :], (n, data.n_sgrnas))
    elif spec.pool.mode == "covariate":
        pool_part = _flat(post["b_pool"])[:, None] * spec.pool.log_abundance[None, :]

    order = np.argsort(data.gene_codes, kind="stable")
    n_sg = np.bincount(data.gene_codes, minlength=data.n_genes)
    starts = np.concatenate([[0], np.cumsum(n_sg)])
    n_genes, n_cond = data.n_genes, len(levels)
    stats = {k: np.empty((n_genes, n_cond)) for k in ("mean", "sd", "hdi_low", "hdi_high")}
    step = max(1, int(chunk_genes))
    for g0 in range(0, n_genes, step):
        g1 = min(n_genes, g0 + step)
        guides = order[starts[g0] : starts[g1]]
        eta = np.repeat(base[:, None, :], guides.size, axis=1)
        for term, r, zbar in guide_terms:
            eta += r[:, term.index[guides], :] @ zbar.T
        if pool_part is not None:
            eta += pool_part[:, guides][:, :, None]
        mu = l_ref * np.exp(eta)
        gene_mu = np.add.reduceat(mu, starts[g0:g1] - starts[g0], axis=1)
        if aggregate == "mean":
            gene_mu /= n_sg[g0:g1][None, :, None]
        flat = gene_mu.reshape(n, -1)
        low, high = core.hdi(flat, hdi_prob)
        shape = (g1 - g0, n_cond)
        stats["mean"][g0:g1] = flat.mean(axis=0).reshape(shape)
        stats["sd"][g0:g1] = flat.std(axis=0, ddof=1 if n > 1 else 0).reshape(shape)
        stats["hdi_low"][g0:g1] = low.reshape(shape)
        stats["hdi_high"][g0:g1] = high.reshape(shape)

    sf = np.exp(spec.log_size_factors)
    norm = spec.counts[order] / sf[None, :] * l_ref
    per_gene = np.add.reduceat(norm, starts[:-1], axis=0) if n_genes else norm[:0]
    if aggregate == "mean":
        per_gene = per_gene / n_sg[:, None]
    observed = per_gene @ avg.T
    table = pd.DataFrame(
        {
            "gene": np.repeat(np.asarray(data.gene_names, dtype=object), n_cond),
            "condition": np.tile(levels, n_genes),
            **{k: v.ravel() for k, v in stats.items()},
            "observed": observed.ravel(),
            "n_sgrna": np.repeat(n_sg, n_cond),
        }
    )
    table.attrs.update(
        {
            "reference_depth": l_ref,
            "by": by,
            "aggregate": aggregate,
            "hdi_prob": hdi_prob,
            "guide_effects": "integrated" if integrated else "draws",
        }
    )
    return table


def _guide_variance(post: xr.Dataset, term: GroupTerm, zbar: np.ndarray, n: int) -> np.ndarray:
    """Variance of ``zbar . r_s`` over guides, per draw and condition (n, conditions)."""
    sd = _flat(post[f"sd_{term.name}"]).reshape(n, -1)  # (n, coefs)
    cor_name = f"cor_{term.name}"
    if cor_name in post:
        cor = _flat(post[cor_name]).reshape(n, term.n_coefs, term.n_coefs)
    else:
        cor = np.broadcast_to(np.eye(term.n_coefs), (n, term.n_coefs, term.n_coefs))
    cov = sd[:, :, None] * cor * sd[:, None, :]
    return np.einsum("lc,ncd,ld->nl", zbar, cov, zbar)
