"""The full model specification: formula + data + family + priors, all numeric, no PyMC."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import pandas as pd

from screenformula._constants import BATCH, CONDITION, POOL, POOL_LABELS, SGRNA
from screenformula.errors import FormulaError
from screenformula.io.screen_data import ScreenData
from screenformula.spec.families import Family, get_family
from screenformula.spec.formula import parse_formula
from screenformula.spec.guide_states import check_guide_states
from screenformula.spec.names import LOG_SCALE, PHI_SD
from screenformula.spec.priors import (
    CONSTANT_CLASSES,
    DEFAULT_PRIORS,
    SCALE_PRIOR,
    STUDENT_SLOPES_DF,
    Prior,
    as_lkj_eta,
    as_prior,
    centred_intercept,
)
from screenformula.spec.replicate_scale import ReplicateScaleSpec, replicate_scale_spec
from screenformula.spec.settings import ModelSettings
from screenformula.spec.terms import GroupTerm, LinearPredictor, resolve_predictor

PoolMode = Literal["joint", "offset", "covariate"] | None
POOL_MODES = ("joint", "offset", "covariate", None)
DISPERSION_MODES = ("shared", "sgrna", "trend")
#: The trend's sample classes by dispersion name: one trend per condition ("trend"), or
#: per sequenced sample ("trend-sample": Chronos fits one NB dispersion per replicate, so
#: one bottlenecked replicate does not make its condition's other replicates look noisy).
TREND_CLASSES = {"trend": "condition", "trend-sample": "sample"}
#: dispersion="trend": the guide abundance covariate is clipped to these quantiles.
TREND_CLIP = (0.01, 0.99)

#: Pseudo-count added to pool counts before taking logs (docs/MODEL.md, "The pool").
POOL_PSEUDOCOUNT = 0.5

#: Level names taken as the reference level of a text column, in this order.
REFERENCE_LEVELS = ("control", "ctrl", "untreated", "vehicle", "dmso", *sorted(POOL_LABELS))


@dataclass(frozen=True)
class PriorEntry:
    """One row of the prior summary (as brms's ``prior_summary``)."""

    key: str
    cls: str
    coef: str
    group: str
    prior: Prior | float
    source: str


@dataclass(frozen=True)
class DispersionSpec:
    """How the negative-binomial dispersion ``phi`` is modelled."""

    mode: Literal["shared", "sgrna", "trend", "formula", "none"]
    formula: str | None = None
    predictor: LinearPredictor | None = None
    #: dispersion="trend": each guide's centred log abundance (n_sgrna,), the class of
    #: every screen sample (n_screen,) and the class names.
    abundance: np.ndarray | None = None
    sample_class: np.ndarray | None = None
    class_names: tuple[str, ...] = ()
    #: dispersion="trend": whether each guide deviates from its class's trend (``sd_phi``,
    #: ``z_phi``). Off unless ``sd_phi`` is given a prior: a free deviation lets a depleted
    #: guide explain its depletion as noise (a negative binomial with a small phi has its
    #: median far below its mean, so a guide low in every treated sample costs little).
    #: Measured: HAP1 one replicate, AUC 0.986 with it, 0.994 without; HAP1 three
    #: replicates 0.9956 and 495 calls with it, 0.9978 and 617 without; JACKS MOLM 0.974
    #: and no calls with it, 0.989 and 5 without (`benchmarks/results/panel.md`).
    guide_scatter: bool = False
    #: dispersion="trend": what a sample class is, "condition" or "sample" (`TREND_CLASSES`).
    classes_by: Literal["condition", "sample"] = "condition"

    def take(self, rows: np.ndarray) -> DispersionSpec:
        """The same dispersion on the guides ``rows`` (a gene subset of the same screen).

        The trend's covariate is computed once on the whole screen (its centre and clipping
        depend on every guide), so a subset keeps the whole screen's values.
        """
        if self.abundance is None:
            return self
        return replace(self, abundance=self.abundance[np.asarray(rows)])


@dataclass(frozen=True)
class PoolSpec:
    """The pool (plasmid / T0) component."""

    mode: PoolMode
    samples: tuple[str, ...] = ()
    counts: np.ndarray | None = None  # (n_sgrna, n_pool) integers
    log_size_factors: np.ndarray | None = None  # (n_pool,)
    log_abundance: np.ndarray | None = None  # (n_sgrna, n_screen) mean log((P + 0.5) / L_p)

    @property
    def n_zero(self) -> int:
        """Guides with no read in any pool sample (their offset rests on the pseudo-count)."""
        return 0 if self.counts is None else int(np.sum(self.counts.sum(axis=1) == 0))


@dataclass(frozen=True)
class ModelSpec:
    """Everything the backend needs to build the PyMC model."""

    formula: str
    family: Family
    mean: LinearPredictor
    dispersion: DispersionSpec
    pool: PoolSpec
    priors: dict[str, PriorEntry]
    data: ScreenData
    samples: tuple[str, ...]
    counts: np.ndarray  # (n_sgrna, n_screen_samples)
    log_size_factors: np.ndarray  # (n_screen_samples,)
    options: dict[str, Any] = field(default_factory=dict)
    replicate_scale: ReplicateScaleSpec = field(default_factory=ReplicateScaleSpec)
    #: which guide states are summed (`screenformula.spec.guide_states`)
    guide_states: str = "none"

    @property
    def groups(self) -> tuple[GroupTerm, ...]:
        """Group terms of the mean formula."""
        return self.mean.groups

    @property
    def effects_per_gene(self) -> int:
        """Gene-level effects per gene: the coefficients of every term grouped by gene."""
        return sum(t.n_coefs for t in self.mean.groups if t.level == "gene")

    def term(self, name: str) -> GroupTerm:
        """The mean-formula group term called ``name``."""
        for term in self.mean.groups:
            if term.name == name:
                return term
        raise KeyError(name)

    def prior(self, key: str) -> Prior | float:
        """The prior in force for ``key``."""
        return self.priors[key].prior

    def prior_table(self) -> pd.DataFrame:
        """Every prior of the model, one row each (brms's ``prior_summary``)."""
        rows = [
            {
                "prior": repr(e.prior) if isinstance(e.prior, Prior) else f"LKJ(eta={e.prior:g})",
                "class": e.cls,
                "coef": e.coef,
                "group": e.group,
                "source": e.source,
                "key": e.key,
            }
            for e in self.priors.values()
        ]
        return pd.DataFrame(rows)


def _intercept_center(counts: np.ndarray, log_sf: np.ndarray, offset: np.ndarray) -> float:
    """Log median normalised count: where a data-scaled intercept prior centres."""
    logs = np.log((counts + 0.5) / np.exp(log_sf)[None, :]) - offset
    return float(np.median(logs))


class _PriorBuilder:
    """Collect default priors, then apply the user's by key; unknown keys are errors."""

    def __init__(self, user: dict[str, Any] | None, lkj_eta: float) -> None:
        self.user = dict(user or {})
        self.entries: dict[str, PriorEntry] = {}
        self.lkj_eta = as_lkj_eta(lkj_eta, "lkj_eta")

    def add(
        self,
        key: str,
        cls: str,
        default: Prior,
        *,
        coef: str = "",
        group: str = "",
        fallbacks: tuple[str, ...] = (),
        positive: bool = False,
    ) -> None:
        for candidate in (key, *fallbacks):
            if candidate in self.user:
                prior = as_prior(self.user[candidate], candidate, positive=positive)
                if prior.name == "Constant" and cls not in CONSTANT_CLASSES:
                    raise FormulaError(
                        f"prior for {candidate!r}: Constant is allowed for "
                        f"{', '.join(CONSTANT_CLASSES)} only, not for {cls!r}"
                    )
                if (prior.name == SCALE_PRIOR) != (cls == "log_scale"):
                    raise FormulaError(
                        f"prior for {candidate!r}: log_scale takes a {SCALE_PRIOR}(sigma=...) "
                        f"and only log_scale does, got {prior!r}"
                    )
                self.entries[key] = PriorEntry(key, cls, coef, group, prior, "user")
                return
        self.entries[key] = PriorEntry(key, cls, coef, group, default, "default")

    def add_cor(self, key: str, group: str) -> None:
        for candidate in (key, "cor"):
            if candidate in self.user:
                eta = as_lkj_eta(self.user[candidate], candidate)
                self.entries[key] = PriorEntry(key, "cor", "", group, eta, "user")
                return
        self.entries[key] = PriorEntry(key, "cor", "", group, self.lkj_eta, "default")

    def add_predictor(self, lp: LinearPredictor, prefix: str, intercept: Prior) -> None:
        if lp.common.intercept:
            self.add(f"{prefix}Intercept", f"{prefix}Intercept", intercept)
        for coef in lp.common.names:
            self.add(
                f"{prefix}b_{coef}",
                f"{prefix}b",
                DEFAULT_PRIORS["b"],
                coef=coef,
                fallbacks=(f"{prefix}b",),
            )
        for term in lp.groups:
            for coef in term.coef_names:
                self.add(
                    f"sd_{term.name}__{coef}",
                    f"{prefix}sd",
                    DEFAULT_PRIORS["sd"],
                    coef=coef,
                    group=term.name,
                    fallbacks=(f"sd_{term.name}", f"{prefix}sd"),
                    positive=True,
                )
            if term.uses_lkj:
                self.add_cor(f"cor_{term.name}", term.name)
            if term.has_df:
                self.add(
                    f"df_{term.name}",
                    "df",
                    STUDENT_SLOPES_DF if term.dist == "student_slopes" else DEFAULT_PRIORS["df"],
                    group=term.name,
                    fallbacks=("df",),
                    positive=True,
                )

    def finish(self) -> dict[str, PriorEntry]:
        known = set(self.entries)
        generic = {"b", "sd", "cor", "alpha_b", "alpha_sd"}
        generic |= {k.split("__")[0] for k in known if k.startswith("sd_")}
        generic |= {"df"} if any(k.startswith("df_") for k in known) else set()
        unknown = [k for k in self.user if k not in known | generic]
        if unknown:
            raise FormulaError(
                f"prior key {unknown[0]!r} matches nothing in this model; "
                f"valid keys: {', '.join(sorted(known | generic))}"
            )
        return self.entries


def build_spec(settings: ModelSettings | str, data: ScreenData, **options: Any) -> ModelSpec:
    """Resolve the model's settings against the data into a `ModelSpec` (see `ScreenModel`).

    ``settings`` may also be a formula, with the other settings as keywords
    (``build_spec(formula, data, pool=None)``).
    """
    if isinstance(settings, str):
        settings = ModelSettings(settings, **options)
    elif options:
        settings = settings.replace(**options)
    if not isinstance(data, ScreenData) and isinstance(getattr(data, "data", None), ScreenData):
        data = data.data  # simulate_screen()'s (data, truth) pair: the model takes its data
    if not isinstance(data, ScreenData):
        raise FormulaError(
            f"data must be a ScreenData (see sf.read_counts), got {type(data).__name__}"
        )
    fam = get_family(settings.family)
    parsed = parse_formula(settings.formula)
    pool = _pool_mode(settings.pool, parsed, data)
    screen = ~data.pool_mask if pool is not None else np.ones(data.n_samples, bool)
    samples = data.samples.loc[screen].drop(columns=[POOL]).copy()
    samples = _with_reference_levels(samples, settings.reference)
    if len(samples) == 0:
        raise FormulaError("no screen samples left once the pool samples are set aside")
    counts = data.counts[:, screen]
    log_sf = np.log(data.size_factors.to_numpy()[screen])

    pool_spec = _pool_spec(pool, data)
    parameterization = settings.parameterization
    mean = resolve_predictor(parsed, data, samples, parameterization=parameterization)
    if pool == "joint" and not any(_is_guide_intercept(t) for t in mean.groups):
        raise FormulaError(
            "pool='joint' shares each guide's baseline with the pool, so the formula needs a "
            "guide-level intercept such as (1 + treatment | gene:sgrna)"
        )
    disp = _dispersion_spec(settings.dispersion, fam, data, samples, parameterization)
    if disp.mode == "trend":
        disp = _trend(disp, data, mean, screen, asked_scatter=PHI_SD in settings.priors)
    offset = mean.common.offset[None, :]
    if pool == "offset":
        offset = offset + pool_spec.log_abundance
    scale = replicate_scale_spec(settings.replicate_scale, mean, tuple(map(str, samples.index)))
    priors = _priors(
        settings, mean, disp, pool_spec, _intercept_center(counts, log_sf, offset), scale
    )
    spec = ModelSpec(
        formula=settings.formula,
        family=fam,
        mean=mean,
        dispersion=disp,
        pool=pool_spec,
        priors=priors,
        data=data,
        samples=tuple(map(str, samples.index)),
        counts=counts,
        log_size_factors=log_sf,
        options={"lkj_eta": float(settings.lkj_eta), "parameterization": parameterization},
        replicate_scale=scale,
    )
    states = check_guide_states(settings.guide_states, spec)
    return replace(spec, guide_states=states) if states != "none" else spec


def _pool_mode(pool: PoolMode | str, parsed: Any, data: ScreenData) -> PoolMode:
    """The pool mode, with ``"auto"`` resolved and checked against the data."""
    has_pool = bool(data.pool_mask.any())
    if pool == "auto":
        pool = "joint" if has_pool and _has_guide_intercept(parsed) else None
    if pool not in POOL_MODES:
        raise FormulaError(f"unknown pool mode {pool!r}: choose joint, offset, covariate or None")
    if pool is not None and not has_pool:
        raise FormulaError(
            f"pool={pool!r} needs a pool sample: mark the plasmid / T0 rows with pool=True "
            "in the sample sheet"
        )
    return pool  # type: ignore[return-value]


def _priors(
    settings: ModelSettings,
    mean: LinearPredictor,
    disp: DispersionSpec,
    pool: PoolSpec,
    center: float,
    scale: ReplicateScaleSpec,
) -> dict[str, PriorEntry]:
    """Every prior of the model: the defaults (`DEFAULT_PRIORS`) with the user's applied."""
    builder = _PriorBuilder(settings.priors, settings.lkj_eta)
    builder.add_predictor(mean, "", centred_intercept(center))
    if scale.active:
        builder.add(LOG_SCALE, LOG_SCALE, DEFAULT_PRIORS[LOG_SCALE])
    if disp.mode == "shared":
        builder.add("phi", "phi", DEFAULT_PRIORS["phi"], positive=True)
    elif disp.mode == "sgrna":
        builder.add("phi_rate", "phi_rate", DEFAULT_PRIORS["phi_rate"], positive=True)
    elif disp.mode == "trend":
        for key in ("phi_trend_Intercept", "phi_trend_slope"):
            builder.add(key, key, DEFAULT_PRIORS[key])
        if disp.guide_scatter:
            builder.add(PHI_SD, PHI_SD, DEFAULT_PRIORS[PHI_SD], positive=True)
    elif disp.mode == "formula":
        builder.add_predictor(disp.predictor, "alpha_", DEFAULT_PRIORS["alpha_Intercept"])
    if pool.mode == "covariate":
        builder.add("b_pool", "b", DEFAULT_PRIORS["b_pool"], coef="pool")
    if pool.mode == "joint":
        pool_center = float(
            np.median(np.log((pool.counts + POOL_PSEUDOCOUNT) / np.exp(pool.log_size_factors)))
        )
        if mean.common.intercept:  # the pool's scale relative to the screen intercept
            builder.add("pool_shift", "pool_shift", centred_intercept(pool_center - center))
        else:
            builder.add("pool_Intercept", "pool_Intercept", centred_intercept(pool_center))
        builder.add("phi_pool", "phi_pool", DEFAULT_PRIORS["phi_pool"], positive=True)
    return builder.finish()


def _is_guide_intercept(term: GroupTerm) -> bool:
    return term.level == SGRNA and term.coef_names[:1] == ("Intercept",)


def _has_guide_intercept(parsed: Any) -> bool:
    return any(SGRNA in g.factor for g in parsed.groups)


def _with_reference_levels(
    samples: pd.DataFrame, reference: dict[str, str] | None = None
) -> pd.DataFrame:
    """Text columns become categoricals with a reference level first.

    The reference is ``reference[column]`` when given, else ``control`` or a synonym
    (or a pool label such as ``T0``), else the first level in sorted order. Categorical
    columns keep the level order the user gave them; numbers stay numbers.
    """
    reference = dict(reference or {})
    for column, level in reference.items():
        if column not in samples.columns:
            raise FormulaError(f"reference level given for unknown column {column!r}")
        if level not in set(samples[column].astype(str)):
            raise FormulaError(f"reference level {level!r} is not a value of column {column!r}")
        values = samples[column].astype(str)
        others = sorted(set(values) - {level})
        samples[column] = pd.Categorical(values, categories=[level, *others], ordered=True)
    for column in samples.columns:
        values = samples[column]
        if isinstance(values.dtype, pd.CategoricalDtype):
            # pool rows may have been set aside: their level must not become a column
            # formulae honours the level order of ordered categoricals only
            samples[column] = values.cat.remove_unused_categories().cat.as_ordered()
            continue
        if not (values.dtype == object or pd.api.types.is_string_dtype(values)):
            continue
        ordered = sorted(pd.unique(values.astype(str)))
        for ref in REFERENCE_LEVELS:
            match = [level for level in ordered if level.lower() == ref]
            if match:
                ordered.remove(match[0])
                ordered.insert(0, match[0])
                break
        samples[column] = pd.Categorical(values.astype(str), categories=ordered, ordered=True)
    return samples


def _pool_spec(mode: PoolMode, data: ScreenData) -> PoolSpec:
    """Pool counts and each guide's log pool abundance (per screen sample).

    With a ``batch`` column that gives every pool sample a batch and covers the batches
    of the screen samples, each screen sample is matched to the pool(s) of its own batch
    (one plasmid per library batch); otherwise every screen sample uses the mean over all
    pool samples. The result is an (n_sgrna, n_screen_samples) matrix.
    """
    if mode is None:
        return PoolSpec(None)
    mask = data.pool_mask
    counts = data.counts[:, mask]
    log_sf = np.log(data.size_factors.to_numpy()[mask])
    per_pool = np.log(counts + POOL_PSEUDOCOUNT) - log_sf[None, :]
    screen = data.samples.loc[~mask]
    pools = data.samples.loc[mask]
    if BATCH in data.samples.columns and set(screen[BATCH]) <= set(pools[BATCH]):
        columns = [
            per_pool[:, (pools[BATCH] == batch).to_numpy()].mean(axis=1) for batch in screen[BATCH]
        ]
        log_abundance = np.column_stack(columns)
    else:
        log_abundance = np.repeat(per_pool.mean(axis=1, keepdims=True), len(screen), axis=1)
    if mode == "covariate":
        log_abundance = log_abundance - log_abundance.mean(axis=0, keepdims=True)
    return PoolSpec(mode, tuple(map(str, data.pool_samples)), counts, log_sf, log_abundance)


def _dispersion_spec(
    dispersion: str,
    family: Family,
    data: ScreenData,
    samples: pd.DataFrame,
    parameterization: str | bool | dict[str, str | bool],
) -> DispersionSpec:
    if family.dispersion is None:
        return DispersionSpec("none")
    if dispersion in TREND_CLASSES:
        return DispersionSpec("trend", classes_by=TREND_CLASSES[dispersion])  # type: ignore[arg-type]
    if dispersion in DISPERSION_MODES:
        return DispersionSpec(dispersion)  # type: ignore[arg-type]
    if isinstance(dispersion, str) and "~" in dispersion:
        parsed = parse_formula(dispersion, dispersion=True)
        lp = resolve_predictor(
            parsed, data, samples, prefix="alpha_", parameterization=parameterization
        )
        return DispersionSpec("formula", dispersion, lp)
    raise FormulaError(
        f"unknown dispersion {dispersion!r}: use 'trend', 'trend-sample', 'shared', 'sgrna' or a "
        "formula like 'alpha ~ 1 + (1 | sgrna)'"
    )


def _trend(
    disp: DispersionSpec,
    data: ScreenData,
    mean: LinearPredictor,
    screen: np.ndarray,
    *,
    asked_scatter: bool = False,
) -> DispersionSpec:
    """Covariate and sample classes of ``dispersion="trend"``.

    The covariate is each guide's log mean normalised count (+ 0.5) over the pool samples
    when the sheet marks any (the starting abundance), else over the samples of the
    reference condition (population design row all zero), else over all screen samples:
    abundance untouched by the treatment, so a depleted guide is not given a noisier
    dispersion for being depleted. It is clipped to its 1st-99th percentiles and centred
    on its median.
    Screen samples with the same population-level design row (one condition) form one
    class when some condition has at least two samples, so replicate scatter measures
    that class's noise; a condition with one sample (HAP1's lone T0 beside three treated
    replicates) is a class of its own, so it does not inherit the replicated cells' noise.
    Without any replicated condition all screen samples form one class. With
    ``classes_by="sample"`` (``dispersion="trend-sample"``) every screen sample is its own
    class, named ``<condition>:<sample>``.
    Every guide's dispersion is its class's trend unless the user gives ``sd_phi`` a prior
    (``asked_scatter``): then guides deviate from it (see `DispersionSpec.guide_scatter`).
    """
    X = np.asarray(mean.common.X, dtype=float)
    reference = data.pool_mask.copy()
    if not reference.any():  # the reference condition's samples (design row all zero)
        reference = np.zeros(data.n_samples, bool)
        reference[np.flatnonzero(screen)[~X.any(axis=1)]] = True
    if not reference.any():
        reference = screen
    normalised = data.counts[:, reference] / data.size_factors.to_numpy()[reference][None, :]
    x = np.log(normalised.mean(axis=1) + POOL_PSEUDOCOUNT)
    x = np.clip(x, *np.quantile(x, TREND_CLIP))
    x = x - np.median(x)
    # conditions numbered in order of first appearance (as terms number sample levels)
    conditions = mean.common.conditions()
    sizes = np.bincount(conditions)
    if disp.classes_by == "sample":
        classes = np.arange(len(X), dtype=np.int64)
        names = tuple(
            f"{mean.common.condition_name(X[i])}:{sample}"
            for i, sample in enumerate(data.samples.index[screen])
        )
    elif len(sizes) > 1 and sizes.max() >= 2:
        classes = conditions.astype(np.int64)
        first = [int(np.flatnonzero(classes == k)[0]) for k in range(len(sizes))]
        names = tuple(mean.common.condition_name(X[i]) for i in first)
    else:
        classes = np.zeros(len(X), dtype=np.int64)
        names = ("cells",)
    return replace(
        disp, abundance=x, sample_class=classes, class_names=names, guide_scatter=asked_scatter
    )


__all__ = ["CONDITION", "ModelSpec", "PoolSpec", "DispersionSpec", "PriorEntry", "build_spec"]
