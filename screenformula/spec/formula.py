"""Split a brms-style formula into its response, population part and group blocks.

formulae (the parser Bambi uses) reads every term that it can: population-level
terms, offsets and the left-hand side of each group block. It cannot say which
group terms shared one pair of parentheses (it splits ``(1 + x | g)`` into ``1|g``
and ``x|g``) nor read ``||``, so this module finds the blocks first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import formulae as fm

from screenformula.errors import FormulaError

#: Names a distributional formula may use for the negative-binomial dispersion.
DISPERSION_NAMES = ("alpha", "phi", "shape")

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
#: brms's ``gr(factor, dist = "student")``: the grouping factor with options.
_GR = re.compile(r"^gr\((?P<args>.*)\)$", re.DOTALL)
#: Distributions of varying effects (brms's ``gr(..., dist = )``; ``"student_slopes"`` is
#: screenformula's: Student-t slopes beside normal intercepts).
GROUP_DISTS = ("gaussian", "student", "student_slopes")
#: The formula ``screenformula test`` and the demo fit (one treated group): a gene effect and
#: a guide effect per treatment, the gene slopes Student-t with 3 df (``student_slopes``,
#: whose default df is fixed at 3). Chosen on the panel of real screens
#: (benchmarks/results/panel.md, ``trend-t3scale``): a normal prior fitted to thousands of
#: mostly unaffected genes pulled real essentials toward zero (JACKS HL60 LFCs 0.65 times
#: MAGeCK's), and the lines with noisy replicates called fewer essentials than MAGeCK.
SCREEN_FORMULA = (
    'count ~ 1 + treatment + (1 + treatment | gr(gene, dist = "student_slopes")) '
    "+ (1 + treatment | gene:sgrna)"
)
#: brms's special terms that screenformula does not fit, with what each is.
UNSUPPORTED_TERMS = {
    "s": "smooth terms",
    "t2": "smooth terms",
    "te": "smooth terms",
    "ti": "smooth terms",
    "gp": "Gaussian processes",
    "mo": "monotonic effects",
    "me": "measurement-error terms",
    "mi": "missing-value imputation terms",
    "cs": "category-specific effects",
    "mm": "multi-membership terms",
    "mmc": "multi-membership terms",
    "car": "spatial autocorrelation",
    "sar": "spatial autocorrelation",
    "ar": "autocorrelation terms",
    "ma": "autocorrelation terms",
    "arma": "autocorrelation terms",
    "cosy": "autocorrelation terms",
    "unstr": "autocorrelation terms",
    "fcor": "autocorrelation terms",
    "lasso": "lasso priors",
    "horseshoe": "horseshoe priors",
}
_SPECIAL = re.compile(r"(?<![A-Za-z0-9_.])(?P<name>" + "|".join(UNSUPPORTED_TERMS) + r")\s*\(")


@dataclass(frozen=True)
class GroupBlock:
    """One ``(expr | factor)`` or ``(expr || factor)`` block after nesting is expanded.

    Attributes
    ----------
    expr : str
        The varying-effect part, e.g. ``"1 + treatment"``.
    factor : tuple of str
        The grouping variables, e.g. ``("gene", "sgrna")`` for ``gene:sgrna``.
    correlated : bool
        True for ``|`` (LKJ-correlated effects), False for ``||``.
    source : str
        The block as the user wrote it, for messages.
    dist : str
        ``"gaussian"`` (multivariate normal effects), ``"student"`` (multivariate
        Student-t, brms's ``gr(factor, dist = "student")``: heavier tails) or
        ``"student_slopes"`` (Student-t slopes, normal intercepts: the slopes' standardised
        innovations are t-distributed, correlated with the intercepts through the same
        LKJ Cholesky factor).
    """

    expr: str
    factor: tuple[str, ...]
    correlated: bool
    source: str
    dist: str = "gaussian"

    @property
    def factor_label(self) -> str:
        """The factor written brms-style, e.g. ``gene:sgrna``."""
        return ":".join(self.factor)


@dataclass(frozen=True)
class ParsedFormula:
    """A formula split into parts; no data has been looked at yet."""

    response: str
    common: str
    groups: tuple[GroupBlock, ...] = field(default_factory=tuple)
    text: str = ""

    @property
    def variables(self) -> set[str]:
        """Every variable name the formula uses (response excluded)."""
        names: set[str] = set()
        for rhs in [self.common, *(g.expr for g in self.groups)]:
            names |= _variables_of(rhs)
        for g in self.groups:
            names |= set(g.factor)
        return names


def _split_top_level(rhs: str, text: str) -> list[str]:
    """Split ``rhs`` on ``+``/``-`` outside parentheses, keeping a leading ``-``."""
    pieces: list[str] = []
    depth = 0
    current = ""
    for char in rhs:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise FormulaError(f"unbalanced ')' in formula {text!r}")
        if depth == 0 and char in "+-":
            if current.strip():
                pieces.append(current.strip())
            current = "-" if char == "-" else ""
            continue
        current += char
    if depth != 0:
        raise FormulaError(f"unbalanced '(' in formula {text!r}")
    if current.strip():
        pieces.append(current.strip())
    return pieces


def _expand_factor(factor: str, source: str) -> list[tuple[str, ...]]:
    """``a/b/c`` -> ``[(a,), (a, b), (a, b, c)]``; ``a:b`` -> ``[(a, b)]``."""
    factor = factor.strip()
    if "/" in factor:
        parts = [p.strip() for p in factor.split("/")]
        for p in parts:
            if not _IDENT.match(p):
                raise FormulaError(f"cannot read grouping factor {p!r} in term {source!r}")
        return [tuple(parts[: i + 1]) for i in range(len(parts))]
    parts = [p.strip() for p in factor.split(":")]
    for p in parts:
        if not _IDENT.match(p):
            raise FormulaError(f"cannot read grouping factor {p!r} in term {source!r}")
    return [tuple(parts)]


def _group_options(factor: str, source: str) -> tuple[str, str]:
    """``gr(gene, dist = "student")`` -> ``("gene", "student")``; a plain factor -> gaussian."""
    match = _GR.match(factor.strip())
    if match is None:
        return factor, "gaussian"
    args = [a.strip() for a in match.group("args").split(",")]
    dist = "gaussian"
    for arg in args[1:]:
        key, _, value = (part.strip() for part in arg.partition("="))
        value = value.strip("'\"")
        if key != "dist":
            raise FormulaError(f"gr() in {source!r}: unsupported option {key!r} (only dist)")
        if value not in GROUP_DISTS:
            raise FormulaError(
                f"gr() in {source!r}: dist must be one of {', '.join(GROUP_DISTS)}, got {value!r}"
            )
        dist = value
    if not args[0]:
        raise FormulaError(f"gr() in {source!r} names no grouping factor")
    return args[0], dist


def check_supported(text: str) -> None:
    """Raise a `FormulaError` naming the first brms term screenformula cannot fit.

    ``s(x)``, ``gp(x)``, ``mo(x)`` and the other `UNSUPPORTED_TERMS` are brms syntax for
    models this package does not build; they are refused by name, not read as variables.
    """
    match = _SPECIAL.search(text)
    if match is None:
        return
    depth, end = 0, len(text)
    for i in range(match.end() - 1, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            end = i + 1
            break
    term = text[match.start() : end]
    kind = UNSUPPORTED_TERMS[match.group("name")]
    raise FormulaError(
        f"{term} is not supported by screenformula (brms {kind}); remove it from {text!r}"
    )


def variables_of(rhs: str) -> set[str]:
    """Every variable name a right-hand side (without group blocks) uses."""
    return _variables_of(rhs)


def _variables_of(rhs: str) -> set[str]:
    if not rhs.strip():
        return set()
    try:
        description = fm.model_description(rhs)
    except Exception as err:  # formulae raises many kinds of parse errors
        raise FormulaError(f"cannot parse {rhs!r}: {err}") from None
    names: set[str] = set()
    for term in description.terms:
        names |= set(getattr(term, "var_names", set()) or set())
    return names


def parse_formula(text: str, *, dispersion: bool = False) -> ParsedFormula:
    """Split a brms-style formula.

    Parameters
    ----------
    text : str
        E.g. ``"count ~ 1 + treatment + (1 + treatment | gene) + (1 + treatment | gene:sgrna)"``.
    dispersion : bool
        True when parsing a distributional formula (``alpha ~ ...``), whose response must
        be one of ``alpha``, ``phi`` or ``shape``.

    Returns
    -------
    ParsedFormula

    Raises
    ------
    FormulaError
        For a missing ``~``, unbalanced parentheses, an empty group block, an
        unreadable grouping factor or a brms term screenformula does not fit
        (`UNSUPPORTED_TERMS`: ``s(x)``, ``gp(x)``, ``mo(x)``, ...).
    """
    if not isinstance(text, str) or text.count("~") != 1:
        raise FormulaError(f"a formula needs exactly one '~', got {text!r}")
    check_supported(text)
    lhs, rhs = (part.strip() for part in text.split("~"))
    if not _IDENT.match(lhs):
        raise FormulaError(f"the response of {text!r} must be a single name, got {lhs!r}")
    if dispersion and lhs not in DISPERSION_NAMES:
        raise FormulaError(
            f"a dispersion formula must start with one of {', '.join(DISPERSION_NAMES)}, "
            f"got {lhs!r}"
        )
    common: list[str] = []
    groups: list[GroupBlock] = []
    for piece in _split_top_level(rhs, text):
        inner = piece[1:-1] if piece.startswith("(") and piece.endswith(")") else None
        if inner is None or "|" not in inner:
            common.append(piece)
            continue
        if inner.count("|") not in (1, 2) or (inner.count("|") == 2 and "||" not in inner):
            raise FormulaError(f"cannot read group term {piece!r}")
        correlated = "||" not in inner
        expr, factor = (s.strip() for s in inner.split("||" if not correlated else "|"))
        if not expr:
            raise FormulaError(f"group term {piece!r} has no effects before '|'")
        if not factor:
            raise FormulaError(f"group term {piece!r} has no grouping factor after '|'")
        factor, dist = _group_options(factor, piece)
        for fac in _expand_factor(factor, piece):
            groups.append(GroupBlock(expr, fac, correlated, piece, dist))
    common_text = ""
    for piece in common:
        if piece.startswith("-"):
            common_text += f" - {piece[1:].strip()}" if common_text else f"-{piece[1:].strip()}"
        else:
            common_text += f" + {piece}" if common_text else piece
    common_text = common_text or "1"
    parsed = ParsedFormula(lhs, common_text, tuple(groups), text)
    parsed.variables  # noqa: B018 - parse every part now so errors surface here
    return parsed
