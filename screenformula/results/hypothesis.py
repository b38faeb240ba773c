"""brms's ``hypothesis``: string hypotheses on population and group-level effects.

``hypothesis(fit, "treatmentdrugA - treatmentdrugB < 0")`` evaluates the left side minus
the right side on every posterior draw and summarises it as brms does:

- ``Estimate`` / ``Est.Error``: posterior mean / sd of ``left - right``;
- ``CI.Lower`` / ``CI.Upper``: equal-tailed interval, 95% (``alpha = 0.05``) for a point
  hypothesis (``=``), 90% (``alpha``, ``1 - alpha`` quantiles) for a one-sided one;
- ``Post.Prob``: the share of draws where the hypothesis holds; ``Evid.Ratio`` its odds
  ``Post.Prob / (1 - Post.Prob)`` (``inf`` when every draw agrees). A point hypothesis
  needs prior draws for its Bayes factor, which a fit does not keep: both are NaN;
- ``Star``: ``*`` when a one-sided hypothesis has ``Post.Prob > 1 - alpha``, or a point
  hypothesis's value lies outside its interval.

Names are brms's (``Intercept``, ``treatmentdrugA``) or the model's
(``treatment[drugA]``). With ``group="gene"`` and ``scope="coef"`` the hypothesis is
evaluated for every gene on its coefficients (population effect plus the gene's
deviation, brms's ``coef``), with ``scope="ranef"`` on the deviations alone; the
result then has a ``Group`` column (the gene).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from screenformula.errors import FitError
from screenformula.results.brms_summary import group_effect_draws, population_draws
from screenformula.results.draws import flatten_draws

if TYPE_CHECKING:
    from screenformula.results.fit import ScreenFit

__all__ = ["COLUMNS", "evaluate", "hypothesis", "parse_hypothesis"]

COLUMNS = [
    "Hypothesis",
    "Estimate",
    "Est.Error",
    "CI.Lower",
    "CI.Upper",
    "Evid.Ratio",
    "Post.Prob",
    "Star",
]
_SIGNS = ("<=", ">=", "==", "<", ">", "=")
_FUNCTIONS = {"exp": np.exp, "log": np.log, "abs": np.abs, "sqrt": np.sqrt, "log2": np.log2}
_BINOPS = {
    ast.Add: np.add,
    ast.Sub: np.subtract,
    ast.Mult: np.multiply,
    ast.Div: np.divide,
    ast.Pow: np.power,
}


def parse_hypothesis(text: str) -> tuple[str, str, str]:
    """Split ``"left < right"`` into (left, sign, right); sign is ``<``, ``>`` or ``=``."""
    if not isinstance(text, str):
        raise FitError(f"a hypothesis is a string such as 'treatmentdrugA < 0', got {text!r}")
    found = [s for s in _SIGNS if s in text]
    if not found:
        raise FitError(
            f"hypothesis {text!r} must be of the form 'left (= or < or >) right', e.g. "
            "'treatmentdrugA - treatmentdrugB < 0'"
        )
    sign = found[0]
    left, _, right = text.partition(sign)
    if any(s in right for s in _SIGNS) or not left.strip() or not right.strip():
        raise FitError(f"hypothesis {text!r} must have exactly one '=', '<' or '>'")
    return left.strip(), sign.rstrip("=") or "=", right.strip()


def _compact(expr: str) -> str:
    return re.sub(r"\s+", "", expr)


def evaluate(expr: str, variables: dict[str, np.ndarray]) -> np.ndarray:
    """Evaluate an arithmetic expression of ``variables`` (their names as keys).

    Names may hold ``[``, ``]`` and ``:`` (``treatment[drugA]:dose``); only numbers,
    ``+ - * / **``, parentheses and ``exp``, ``log``, ``log2``, ``sqrt``, ``abs`` are read.
    """
    tokens: dict[str, str] = {}
    text = expr
    for i, name in enumerate(sorted(variables, key=len, reverse=True)):
        token = f"__v{i}__"
        pattern = r"(?<![A-Za-z0-9_.\[\]])" + re.escape(name) + r"(?![A-Za-z0-9_.\[\]])"
        text, n = re.subn(pattern, token, text)
        if n:
            tokens[token] = name
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise FitError(f"cannot read hypothesis expression {expr!r}") from None

    def walk(node: ast.AST) -> np.ndarray | float:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return float(node.value)
        if isinstance(node, ast.Name):
            if node.id in tokens:
                return variables[tokens[node.id]]
            raise FitError(
                f"{node.id!r} in hypothesis {expr!r} is not a parameter of the model; "
                f"parameters: {', '.join(_shown(variables))}"
            )
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            return _BINOPS[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            value = walk(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in _FUNCTIONS
            and len(node.args) == 1
            and not node.keywords
        ):
            return _FUNCTIONS[node.func.id](walk(node.args[0]))
        raise FitError(
            f"cannot read {ast.unparse(node)!r} in hypothesis {expr!r}: use parameter names, "
            "numbers, + - * / ** and exp, log, log2, sqrt, abs"
        )

    return np.asarray(walk(tree), dtype=float)


def _shown(variables: dict[str, np.ndarray]) -> list[str]:
    return [n for n in variables if "[" not in n] or list(variables)


def _summarise(label: str, draws: np.ndarray, sign: str, alpha: float) -> dict[str, float | str]:
    draws = np.asarray(draws, dtype=float).ravel()
    probs = (alpha / 2, 1 - alpha / 2) if sign == "=" else (alpha, 1 - alpha)
    low, high = np.quantile(draws, probs)
    if sign == "=":
        ratio = prob = np.nan
        star = not (low <= 0 <= high)
    else:
        prob = float(np.mean(draws < 0)) if sign == "<" else float(np.mean(draws > 0))
        ratio = np.inf if prob == 1 else prob / (1 - prob)
        star = prob > 1 - alpha
    return {
        "Hypothesis": label,
        "Estimate": float(draws.mean()),
        "Est.Error": float(draws.std(ddof=1)) if draws.size > 1 else 0.0,
        "CI.Lower": float(low),
        "CI.Upper": float(high),
        "Evid.Ratio": float(ratio),
        "Post.Prob": float(prob),
        "Star": "*" if star else "",
    }


def _population_variables(fit: ScreenFit) -> dict[str, np.ndarray]:
    """Draws (chains stacked) of each population coefficient under both spellings."""
    da = population_draws(fit)
    flat = flatten_draws(da)
    out = {str(c): flat[:, i] for i, c in enumerate(da["coef"].values)}
    spec = fit.model.spec
    for coef in spec.mean.common.names:  # the model's own spelling, treatment[drugA]
        brms = coef.replace("[", "").replace("]", "")
        if brms in out:
            out[coef] = out[brms]
    return out


def hypothesis(
    fit: ScreenFit,
    hypotheses: str | Sequence[str],
    *,
    group: str | None = None,
    scope: Literal["standard", "coef", "ranef"] = "standard",
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Test string hypotheses on the posterior (brms's ``hypothesis``).

    Parameters
    ----------
    fit : ScreenFit
    hypotheses : str or list of str
        E.g. ``"treatmentdrugA - treatmentdrugB < 0"``, ``"treatmentdrugA = 0"``,
        ``"exp(treatmentdrugA) > 1.5"``.
    group : str, optional
        A grouping factor as the formula writes it (``"gene"``); needed by
        ``scope="coef"`` and ``"ranef"``.
    scope : {"standard", "coef", "ranef"}
        ``"standard"``: population effects. ``"coef"``: for every level of ``group``, its
        coefficients (population effect plus that level's deviation, brms's ``coef``);
        coefficients without a deviation in the term are the population effect.
        ``"ranef"``: the deviations alone (names missing from the term are errors).
    alpha : float
        As brms: the interval is 1 - alpha for a point hypothesis, 1 - 2 alpha for a
        one-sided one, and ``Star`` marks ``Post.Prob > 1 - alpha``.

    Returns
    -------
    DataFrame
        One row per hypothesis (per hypothesis x level with ``group``; a ``Group`` column
        then names the level) with brms's columns `COLUMNS`.
    """
    if not 0 < alpha < 0.5:
        raise FitError(f"alpha must be between 0 and 0.5, got {alpha}")
    items = [hypotheses] if isinstance(hypotheses, str) else list(hypotheses)
    parsed = [parse_hypothesis(h) for h in items]
    if scope not in ("standard", "coef", "ranef"):
        raise FitError(f"scope must be 'standard', 'coef' or 'ranef', not {scope!r}")
    if scope != "standard" and group is None:
        raise FitError(f"scope={scope!r} needs group=, e.g. group='gene'")
    population = _population_variables(fit)
    rows: list[dict[str, float | str]] = []
    if scope == "standard":
        for left, sign, right in parsed:
            label, draws = _difference(left, sign, right, population)
            rows.append(_summarise(label, draws, sign, alpha))
        return pd.DataFrame(rows, columns=COLUMNS)
    da = group_effect_draws(fit, str(group))  # (chain, draw, level, coef)
    r = flatten_draws(da)
    coefs = [str(c) for c in da["coef"].values]
    levels = [str(v) for v in da["level"].values]
    for left, sign, right in parsed:
        variables: dict[str, np.ndarray] = {}
        if scope == "coef":
            variables.update({k: v[:, None] for k, v in population.items()})
        for q, coef in enumerate(coefs):
            base = population.get(coef, 0.0) if scope == "coef" else 0.0
            value = r[:, :, q] + (base[:, None] if isinstance(base, np.ndarray) else base)
            variables[coef] = value
            model_name = _model_name(fit, coef)
            if model_name:
                variables[model_name] = value
        label, draws = _difference(left, sign, right, variables)
        draws = np.broadcast_to(draws, (r.shape[0], len(levels)))
        for i, level in enumerate(levels):
            rows.append({**_summarise(label, draws[:, i], sign, alpha), "Group": level})
    return pd.DataFrame(rows, columns=[*COLUMNS, "Group"])


def _model_name(fit: ScreenFit, brms: str) -> str | None:
    for term in fit.model.spec.groups:
        for coef in term.coef_names:
            if coef.replace("[", "").replace("]", "") == brms and coef != brms:
                return coef
    return None


def _difference(
    left: str, sign: str, right: str, variables: dict[str, np.ndarray]
) -> tuple[str, np.ndarray]:
    """The label ``(left)-(right) sign 0`` (brms's) and the draws of ``left - right``."""
    label = f"({_compact(left)})"
    if _compact(right) != "0":
        label += f"-({_compact(right)})"
    values = evaluate(left, variables) - evaluate(right, variables)
    return f"{label} {sign} 0", values
