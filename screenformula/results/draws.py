"""Contrasts of a fitted screen, layer 1: which contrasts, and their posterior draws.

The contrast code has three layers, as arviz-stats lays them out:

1. this module, draw extraction: gene, guide and gene-group effects of a contrast as
   ``xarray.DataArray`` objects with dims ``(draw, <item>, contrast)`` (natural log, chains
   flattened into ``draw``): `gene_lfc_draws`, `sgrna_lfc_draws`, `group_effect_draws`;
   and the contrasts themselves (`factor_levels`, `resolve_contrasts`);
2. `screenformula.results.contrast_core`: summaries on the bare arrays;
3. `screenformula.results.contrasts`: `ContrastResult`, the tables a biologist reads
   (``genes``, ``sgrnas``, ``groups``) and hit lists, with MAGeCK-compatible files from
   `screenformula.results.mageck`; `screenformula.results.expected` gives
   `expected_counts`, the "real" read counts.

What a contrast is (docs/MODEL.md, "Contrasts")
-----------------------------------------------
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

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from screenformula._constants import GENE, GROUP, SGRNA, TREATMENT
from screenformula.errors import FitError
from screenformula.spec.model_spec import REFERENCE_LEVELS
from screenformula.spec.names import PHI, PHI_CLASS_DIM, B, cor_pairs

if TYPE_CHECKING:
    from screenformula.results.fit import ScreenFit
    from screenformula.spec.terms import GroupTerm

__all__ = [
    "Contrast",
    "FactorLevels",
    "MissingDraws",
    "PosteriorEffects",
    "factor_levels",
    "correlation_draws",
    "correlation_matrices",
    "flatten_draws",
    "gene_lfc_draws",
    "group_draws",
    "group_effect_draws",
    "ordered_levels",
    "resolve_contrasts",
    "phi_means",
    "reference_class",
    "sample_roles",
    "sgrna_lfc_draws",
    "stack_draws",
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
#: Order of guide-level term levels, coarse to fine.
LEVEL_ORDER = {GROUP: 0, GENE: 1, SGRNA: 2}

NO_SGRNA_DRAWS = (
    "sgRNA-level draws were not stored for this fit (fit.options['store_sgrna'] is False, "
    "the default for genome-scale libraries): refit with store_sgrna=True for guide-level "
    "results"
)
NO_GROUPS = "the screen data has no gene groups (pass gene_groups= when reading the counts)"


class MissingDraws(Exception):
    """A posterior variable a contrast needs was not stored (its name is the argument)."""


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
    observed = ordered_levels(values)
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


def ordered_levels(values: pd.Series) -> list[str]:
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
        base = wanted if wanted in info.levels else ordered_levels(pd.Series(info.levels))[0]
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
def flatten_draws(da: xr.DataArray) -> np.ndarray:
    """Posterior values with chains flattened into the first axis."""
    rest = [d for d in da.dims if d not in ("chain", "draw")]
    da = da.transpose("chain", "draw", *rest)
    return np.asarray(da.values).reshape((-1, *da.shape[2:]))


def correlation_draws(post: xr.Dataset, term: GroupTerm) -> xr.DataArray | None:
    """Draws of a term's correlations, dims ``(chain, draw, <term>_cor)``; None if none.

    The pairs come in `cor_pairs` order. A fit stores the pairs only (``cor_<term>``
    along `TermNames.cor_dim`); fits saved before that hold the full matrix, whose pairs
    are read out here.
    """
    names = term.names
    if names.cor not in post or term.n_coefs < 2:
        return None
    cor = post[names.cor]
    if names.cor_dim in cor.dims:
        return cor.transpose("chain", "draw", names.cor_dim)
    dim_a, dim_b = names.cor_dims  # a full matrix, as fits saved before pairs hold
    rows, cols = np.array(cor_pairs(term.n_coefs), dtype=int).T
    values = cor.transpose("chain", "draw", dim_a, dim_b).values[:, :, rows, cols]
    return xr.DataArray(
        values,
        dims=("chain", "draw", names.cor_dim),
        coords={"chain": cor["chain"].values, "draw": cor["draw"].values},
    )


def correlation_matrices(post: xr.Dataset, term: GroupTerm) -> np.ndarray | None:
    """A term's correlation matrix per draw, ``(draws, coefs, coefs)``; None if none.

    Chains are flattened into the draws, as `flatten_draws` does.
    """
    pairs = correlation_draws(post, term)
    if pairs is None:
        return None
    flat = flatten_draws(pairs)
    n = term.n_coefs
    out = np.broadcast_to(np.eye(n), (flat.shape[0], n, n)).copy()
    for k, (i, j) in enumerate(cor_pairs(n)):
        out[:, i, j] = out[:, j, i] = flat[:, k]
    return out


class PosteriorEffects:
    """Reads a fit's posterior as effects of coefficients per gene group, gene or guide.

    The one reader of posterior draws that contrasts, guide summaries and expected counts
    share: `coefficient` gives the total effect of one coefficient (population slope plus
    every group term that carries it, coarse to fine) for every item of a level, and
    `effect` a weighted sum of them (a contrast). Guide-level effects can be read a block
    of guides at a time (``rows``), from a posterior held in memory or on disk. A
    variable that was not stored raises `MissingDraws`.
    """

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

    def n_items(self, level: str, rows: slice | None = None) -> int:
        """How many items ``level`` has (guides in ``rows`` when given)."""
        if rows is not None:
            return len(range(*rows.indices(self.data.n_sgrnas)))
        if level == GENE:
            return self.data.n_genes
        if level == SGRNA:
            return self.data.n_sgrnas
        return len(self.group_term().level_names)

    def group_term(self) -> GroupTerm:
        """The formula's gene-group term."""
        for term in self.terms:
            if term.level == GROUP:
                return term
        raise AssertionError("no group term")

    def has_group_term(self) -> bool:
        """Whether the formula has a gene-group term."""
        return any(t.level == GROUP for t in self.terms)

    def r(self, term: GroupTerm, coef: str, rows: slice | None = None) -> np.ndarray:
        """Draws of ``r_<term>`` for ``coef``; ``rows`` selects guides of a guide-level term."""
        name = term.names.effects
        if name not in self.post:
            raise MissingDraws(name)
        da = self.post[name].sel({term.names.coef_dim: coef})
        if rows is not None and term.level == SGRNA:
            da = da.isel({SGRNA: rows})  # reads only these guides from a lazy store
        return flatten_draws(da)

    def _mapping(self, term: GroupTerm, level: str, rows: slice | None = None) -> np.ndarray | None:
        """Column of ``r_<term>`` for each item of ``level`` (None: the identity).

        With ``rows`` (guides ``rows`` of the SGRNA level), a guide-level term's draws are
        already cut to those guides (`r`), so its mapping is the identity.
        """
        if level == GROUP:
            return None
        if rows is not None and level == SGRNA:
            if term.level == SGRNA:
                return None
            return term.index[rows]
        idx = term.index[self.first_guide] if level == GENE else term.index
        return None if np.array_equal(idx, np.arange(idx.size)) else idx

    def coefficient(self, coef: str, level: str, rows: slice | None = None) -> np.ndarray:
        """Total effect of ``coef`` for every item of ``level`` (a new draws x items array).

        ``rows`` (a slice of guides, with ``level="sgrna"``) restricts the items to those
        guides, so that guide-level effects can be computed a block of guides at a time.
        """
        terms = [
            t
            for t in self.terms
            if LEVEL_ORDER[t.level] <= LEVEL_ORDER[level] and coef in t.coef_names
        ]
        for term in terms:  # fail before allocating anything large
            if term.names.effects not in self.post:
                raise MissingDraws(term.names.effects)
        names = list(self.spec.mean.common.names)
        b = np.zeros((self.n_draws, 1))
        if coef in names:
            if self._b is None:
                self._b = flatten_draws(self.post[B])
            b = self._b[:, names.index(coef)][:, None]
        total: np.ndarray | None = None
        for term in terms:
            r = self.r(term, coef, rows)
            idx = self._mapping(term, level, rows)
            piece = r if idx is None else r[:, idx]
            if total is None:
                # never write into the posterior: copy unless indexing made a new array
                total = piece if piece.flags.owndata else piece.copy()
                total += b
            else:
                total += piece
        if total is None:
            total = np.repeat(b, self.n_items(level, rows), axis=1)
        return total

    def effect(
        self, weights: dict[str, float], level: str, rows: slice | None = None
    ) -> np.ndarray:
        """``sum_c w_c * coefficient(c)`` (draws x items; ``rows`` as in `coefficient`)."""
        out: np.ndarray | None = None
        for coef, w in weights.items():
            if not w:
                continue
            part = self.coefficient(coef, level, rows)
            if w != 1.0:
                part *= w
            if out is None:
                out = part
            else:
                out += part
        if out is None:
            out = np.zeros((self.n_draws, self.n_items(level, rows)))
        return out


def stack_draws(
    parts: list[np.ndarray], item_dim: str, items: Any, contrasts: list[Contrast], **attrs: Any
) -> xr.DataArray:
    """Effect draws of each contrast (draws x items) as one ``(draw, item, contrast)`` array."""
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
    return _effect_draws(fit, GENE, fit.model.data.gene_names, factor, ref, a, b, None)


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
    return _effect_draws(fit, SGRNA, fit.model.data.sgrnas, factor, ref, a, b, NO_SGRNA_DRAWS)


def _effect_draws(
    fit: ScreenFit,
    level: str,
    names: pd.Index,
    factor: str,
    ref: str | None,
    a: str | None,
    b: str | None,
    missing: str | None,
) -> xr.DataArray:
    """Effect draws of every contrast at ``level``; ``missing`` replaces the default error."""
    _, contrasts = resolve_contrasts(fit, factor, ref=ref, a=a, b=b)
    ex = PosteriorEffects(fit)
    try:
        parts = [ex.effect(c.weights, level) for c in contrasts]
    except MissingDraws as err:
        message = missing or f"posterior variable {err.args[0]} is missing from this fit"
        raise FitError(message) from None
    return stack_draws(parts, level, names, contrasts, factor=factor)


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
    return group_draws(PosteriorEffects(fit), contrasts, None)


def group_draws(
    ex: PosteriorEffects, contrasts: list[Contrast], gene_draws: list[np.ndarray] | None
) -> xr.DataArray:
    """Gene-group effect draws (see `group_effect_draws`); ``gene_draws`` reused if given."""
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
    return stack_draws([p[:, keep] for p in parts], GROUP, names[keep], contrasts, source=source)


def reference_class(phi: xr.DataArray) -> xr.DataArray:
    """``phi`` of the reference condition's class (``dispersion="trend"``), else as it is.

    The MAGeCK-style guide variance (``mean + mean^2 / phi`` at the control mean) needs
    the control samples' dispersion; a single class ("cells") stands for every sample.
    With a class per sample (``dispersion="trend-sample"``, ``reference:<sample>``) it is
    the first reference sample's.
    """
    if PHI_CLASS_DIM not in phi.dims:
        return phi
    classes = list(map(str, phi[PHI_CLASS_DIM].values))
    reference = [i for i, c in enumerate(classes) if c.split(":")[0] == "reference"]
    return phi.isel({PHI_CLASS_DIM: reference[0] if reference else 0})


def phi_means(ex: PosteriorEffects) -> pd.Series | None:
    """Posterior mean NB dispersion per guide (None when not stored or not per guide)."""
    if PHI not in ex.post:
        return None
    phi = reference_class(ex.post[PHI])
    mean = np.asarray(phi.mean(dim=[d for d in ("chain", "draw") if d in phi.dims]).values)
    if mean.ndim > 1 or (mean.ndim == 1 and mean.size != ex.data.n_sgrnas):
        return None
    values = np.broadcast_to(mean.astype(float), (ex.data.n_sgrnas,))
    return pd.Series(values, index=np.asarray(ex.data.sgrnas, dtype=object))


def sample_roles(levels: pd.Series, c: Contrast) -> pd.Series:
    """Role of each sample under ``c``: ``"control"``, ``"treatment"`` or ``"other"``."""
    role = pd.Series("other", index=levels.index, dtype=object)
    if c.control is None:  # numeric factor: 0 against the rest
        values = pd.to_numeric(levels, errors="coerce")
        role[values == 0] = "control"
        role[values != 0] = "treatment"
        return role
    role[levels == c.control] = "control"
    role[levels == c.treatment] = "treatment"
    return role
