"""Resolve a parsed formula against screen data into numeric term specifications.

The design of a screen varies only by sample: every term is a small sample-level
matrix (``X``: samples x coefficients, ``Z``: samples x varying effects) plus, for
group terms, an integer index from guides (or samples) to levels. Nothing here is
ever as large as guides x levels, which is what lets a genome-wide library build.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import formulae as fm
import numpy as np
import pandas as pd
from formulae.environment import Environment

from screenformula._constants import GENE, GROUP, SGRNA
from screenformula.errors import FormulaError
from screenformula.io.screen_data import ScreenData
from screenformula.spec.formula import GroupBlock, ParsedFormula
from screenformula.spec.identification import identified_guide_effects
from screenformula.spec.names import TermNames, term_names

#: Grouping variables that live on guides, finest last.
GUIDE_LEVELS = (GROUP, GENE, SGRNA)

_ENV = Environment(
    [{"np": np, "log": np.log, "log2": np.log2, "exp": np.exp, "sqrt": np.sqrt, "abs": np.abs}]
)

Level = Literal["group", "gene", "sgrna", "sample"]


@dataclass(frozen=True)
class CommonTerms:
    """Population-level part: an optional intercept, slopes and offsets, by sample."""

    intercept: bool
    names: tuple[str, ...]
    X: np.ndarray  # (n_screen_samples, n_coefs), intercept column excluded
    offset: np.ndarray  # (n_screen_samples,)

    def conditions(self) -> np.ndarray:
        """Each screen sample's condition, numbered in order of first appearance.

        Samples with the same design row share one (as terms number sample levels).
        """
        codes, _ = pd.factorize(pd.Series([tuple(row) for row in self.X], dtype=object))
        return codes.astype(np.int64)

    def condition_name(self, row: np.ndarray) -> str:
        """A readable name for one design row: its non-zero coefficients, or "reference"."""
        on = [name for name, value in zip(self.names, row, strict=True) if value != 0]
        return "+".join(on) if on else "reference"


@dataclass(frozen=True)
class GroupTerm:
    """A block of varying effects over one grouping factor.

    ``index`` maps each guide (``level`` group/gene/sgrna) or each screen sample
    (``level == "sample"``) to a row of the effect matrix.
    """

    name: str
    source: str
    factor: str
    level: Level
    expr: str
    coef_names: tuple[str, ...]
    Z: np.ndarray  # (n_screen_samples, n_coefs)
    index: np.ndarray
    level_names: tuple[str, ...]
    correlated: bool
    centered: tuple[bool, ...]
    #: "gaussian", "student" (multivariate Student-t effects, brms's gr(dist=)) or
    #: "student_slopes" (Student-t slopes, normal intercepts)
    dist: str = "gaussian"

    @property
    def n_coefs(self) -> int:
        """Number of varying effects per level."""
        return len(self.coef_names)

    @property
    def n_levels(self) -> int:
        """Number of levels of the grouping factor."""
        return len(self.level_names)

    @property
    def has_df(self) -> bool:
        """True when the effects have a Student-t ``df`` (``"student"``, ``"student_slopes"``)."""
        return self.dist in ("student", "student_slopes")

    @property
    def varying(self) -> np.ndarray:
        """Per coefficient, whether its design differs between samples.

        A slope, not the intercept: the columns replicate scales multiply.
        """
        return ~np.all(self.Z == self.Z[:1], axis=0)

    @property
    def t_coefs(self) -> np.ndarray:
        """Per coefficient, whether its innovation is Student-t (``"student_slopes"``)."""
        return np.array(
            [self.dist == "student_slopes" and c != "Intercept" for c in self.coef_names]
        )

    @property
    def uses_lkj(self) -> bool:
        """True when the effects are correlated with an LKJ prior."""
        return self.correlated and self.n_coefs > 1

    @property
    def names(self) -> TermNames:
        """The names of this term's posterior variables and dimensions."""
        return term_names(self.name, self.level)


@dataclass(frozen=True)
class LinearPredictor:
    """All terms of one linear predictor (the mean, or the dispersion)."""

    common: CommonTerms
    groups: tuple[GroupTerm, ...] = field(default_factory=tuple)


def _design(rhs: str, samples: pd.DataFrame, where: str) -> fm.matrices.CommonEffectsMatrix:
    try:
        return fm.design_matrices(rhs, samples, na_action="error", env=_ENV).common
    except KeyError as err:
        raise FormulaError(f"unknown variable {err.args[0]!r} in {where}") from None
    except Exception as err:  # formulae's many error types
        raise FormulaError(f"cannot build {where}: {err}") from None


def check_variables(parsed: ParsedFormula, data: ScreenData, where: str) -> None:
    """Raise a `FormulaError` naming the first variable neither guides nor samples have."""
    known = set(data.samples.columns) | {GENE, SGRNA}
    if data.gene_groups is not None:
        known.add(GROUP)
    for var in sorted(parsed.variables):
        if var in known:
            continue
        if var == GROUP:
            raise FormulaError(
                f"{where} uses 'group' but the data has no gene groups (gene_groups=...)"
            )
        available = ", ".join(sorted(known))
        raise FormulaError(f"unknown variable {var!r} in {where}; available: {available}")


def resolve_common(rhs: str, samples: pd.DataFrame, where: str) -> CommonTerms:
    """Build the population-level part from the sample table."""
    guide_vars = set(_guide_variables(rhs))
    if guide_vars:
        raise FormulaError(
            f"population-level term uses guide-level variable {sorted(guide_vars)[0]!r} in "
            f"{where}; put it in a group term such as (1 | gene)"
        )
    design = _design(rhs, samples, where)
    matrix = np.asarray(design).astype(float)
    names: list[str] = []
    columns: list[np.ndarray] = []
    offset = np.zeros(len(samples))
    intercept = False
    for term_name, term in design.terms.items():
        block = matrix[:, design.slices[term_name]]
        if term.kind == "intercept":
            intercept = True
        elif term.kind == "offset":
            offset += block[:, 0]
        else:
            names.extend(term.labels)
            columns.append(block)
    X = np.column_stack(columns) if columns else np.zeros((len(samples), 0))
    if not np.all(np.isfinite(offset)):
        raise FormulaError(f"an offset in {where} is not finite for some sample")
    return CommonTerms(intercept, tuple(names), X, offset)


def _guide_variables(rhs: str) -> list[str]:
    from screenformula.spec.formula import _variables_of

    return [v for v in _variables_of(rhs) if v in GUIDE_LEVELS]


def _guide_level_index(
    block: GroupBlock, data: ScreenData
) -> tuple[Level, np.ndarray, tuple[str, ...]]:
    finest = max(block.factor, key=GUIDE_LEVELS.index)
    match finest:
        case "sgrna":
            return "sgrna", np.arange(data.n_sgrnas), tuple(map(str, data.sgrnas))
        case "gene":
            return "gene", data.gene_codes, tuple(map(str, data.gene_names))
        case _:
            codes = np.asarray(data.group_codes)[data.gene_codes]
            return "group", codes, tuple(map(str, data.group_names))


def resolve_group(
    block: GroupBlock,
    data: ScreenData,
    samples: pd.DataFrame,
    name: str,
    centered: str | bool | list[str],
) -> GroupTerm:
    """Build one group term: its sample-level ``Z`` and its level index."""
    where = f"term ({block.expr} {'|' if block.correlated else '||'} {block.factor_label})"
    guide_vars = [v for v in block.factor if v in GUIDE_LEVELS]
    sample_vars = [v for v in block.factor if v not in GUIDE_LEVELS]
    if guide_vars and sample_vars:
        raise FormulaError(
            f"unsupported grouping factor {block.factor_label!r} in {where}: it mixes guide-level "
            f"({', '.join(guide_vars)}) and sample-level ({', '.join(sample_vars)}) variables"
        )
    if _guide_variables(block.expr):
        raise FormulaError(f"varying effects of {where} cannot use guide-level variables")
    common = resolve_common(block.expr, samples, where)
    if common.offset.any():
        raise FormulaError(f"offset() is not allowed inside {where}")
    coef_names = (("Intercept",) if common.intercept else ()) + common.names
    Z = np.column_stack([np.ones(len(samples))] * common.intercept + [common.X])
    if guide_vars:
        level, index, level_names = _guide_level_index(block, data)
    else:
        keys = samples[sample_vars].astype(str).agg(":".join, axis=1)
        codes, uniques = pd.factorize(keys)
        level, index, level_names = "sample", codes.astype(np.int64), tuple(map(str, uniques))
    if centered == "auto":
        flags = tuple(
            (level == "sgrna" and c == "Intercept") or (level == "gene" and c != "Intercept")
            for c in coef_names
        )
        if level == "sgrna" and block.dist != "student_slopes":
            # guide slopes: centred where the counts identify them (spec/identification.py)
            cols = data.samples.index.get_indexer(samples.index)
            flags = identified_guide_effects(
                data.counts[:, cols],
                data.size_factors.to_numpy()[cols],
                Z,
                data.gene_codes,
                coef_names,
            )
    elif isinstance(centered, list | tuple | set):
        unknown = set(centered) - set(coef_names)
        if unknown:
            raise FormulaError(
                f"parameterization names {sorted(unknown)[0]!r}, which is not an effect of "
                f"{where} (its effects: {', '.join(coef_names)})"
            )
        flags = tuple(c in centered for c in coef_names)
    elif isinstance(centered, bool):
        flags = tuple(centered for _ in coef_names)
    else:
        raise FormulaError(
            f"parameterization for {where} must be 'auto', True, False or a list of effects"
        )
    if block.dist == "student_slopes":
        if coef_names == ("Intercept",):
            raise FormulaError(f'dist = "student_slopes" in {where}: the term has no slopes')
        slopes = np.array([c != "Intercept" for c in coef_names])
        centred = np.array(flags)
        if (centred & slopes).any() and (centred & ~slopes).any():
            raise FormulaError(
                f'dist = "student_slopes" in {where}: centre the intercept or the slopes, '
                "not both (parameterization=)"
            )
        if block.correlated and sum(flags) > 1:
            raise FormulaError(
                f'dist = "student_slopes" in {where} takes at most one centred effect when the '
                f"effects are correlated ({sum(flags)} are centred): use '||', or "
                "parameterization= with one effect"
            )
    return GroupTerm(
        name=name,
        source=block.source,
        factor=block.factor_label,
        level=level,
        expr=block.expr,
        coef_names=coef_names,
        Z=Z,
        index=np.asarray(index, dtype=np.int64),
        level_names=level_names,
        correlated=block.correlated,
        centered=flags,
        dist=block.dist,
    )


def resolve_predictor(
    parsed: ParsedFormula,
    data: ScreenData,
    samples: pd.DataFrame,
    *,
    prefix: str = "",
    parameterization: str | bool | dict[str, str | bool] = "auto",
) -> LinearPredictor:
    """Resolve every term of a parsed formula.

    Parameters
    ----------
    parsed : ParsedFormula
    data : ScreenData
    samples : DataFrame
        The sample-sheet rows of the samples this predictor covers.
    prefix : str
        Prepended to term names (``"alpha_"`` for a dispersion formula).
    parameterization : "auto", bool or dict
        Centred (True) or non-centred (False) effects, per term name in a dict.
        ``"auto"`` centres the guide-level intercept and the gene-level slopes (both well
        identified by the counts), the guide-level slopes where the counts identify them
        (`screenformula.spec.identification`), and keeps the rest non-centred.
    """
    where = f"formula {parsed.text!r}"
    check_variables(parsed, data, where)
    common = resolve_common(parsed.common, samples, where)
    terms: list[GroupTerm] = []
    used: dict[str, int] = {}
    for block in parsed.groups:
        level_name = max(
            block.factor, key=lambda v: GUIDE_LEVELS.index(v) if v in GUIDE_LEVELS else -1
        )
        if not any(v in GUIDE_LEVELS for v in block.factor):
            level_name = "_".join(block.factor)
        used[level_name] = used.get(level_name, 0) + 1
        name = prefix + level_name + (f"_{used[level_name]}" if used[level_name] > 1 else "")
        choice = parameterization
        if isinstance(parameterization, dict):
            choice = parameterization.get(name, parameterization.get(block.factor_label, "auto"))
        terms.append(resolve_group(block, data, samples, name, choice))
    return LinearPredictor(common, tuple(terms))
