"""Convergence checks (R-hat, ESS, divergences) via arviz-stats, and what they say in words.

`convergence_table` computes the checks per posterior variable; `variable_labels` says
what each variable is in a biologist's words (``z_gene`` and ``r_gene`` are gene
effects, ``L_gene`` their correlation); `Convergence` holds a fit's verdict and words it,
with the settings to change, for the interface the user is in (`PYTHON_WORDING`, or a
command line's flags).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from screenformula._constants import ESS_MIN, RHAT_MAX
from screenformula.spec import names


def convergence_table(
    idata: Any,
    var_names: list[str] | None = None,
    *,
    rhat_max: float = RHAT_MAX,
    ess_min: float = ESS_MIN,
) -> pd.DataFrame:
    """Worst R-hat and smallest bulk/tail ESS of each posterior variable.

    Entries that are constant across draws (the diagonal of a correlation matrix)
    are skipped. The number of divergent transitions is in ``attrs["divergences"]``.
    """
    import arviz_stats  # noqa: F401 - registers the .azstats accessor

    post = idata["posterior"].to_dataset()
    names = var_names or [v for v in post.data_vars]
    rows = []
    for name in names:
        da = post[name]
        varying = da.std(("chain", "draw")) > 1e-12
        if not bool(varying.any()):
            continue
        da = da.where(varying)
        rhat = da.azstats.rhat(sample_dims=["chain", "draw"]) if da.sizes["chain"] > 1 else None
        bulk = da.azstats.ess(sample_dims=["chain", "draw"], method="bulk")
        tail = da.azstats.ess(sample_dims=["chain", "draw"], method="tail")
        row = {
            "variable": name,
            "size": int(np.prod([da.sizes[d] for d in da.dims if d not in ("chain", "draw")])),
            "rhat_max": float(rhat.max()) if rhat is not None else np.nan,
            "ess_bulk_min": float(bulk.min()),
            "ess_tail_min": float(tail.min()),
        }
        rows.append(row)
    table = pd.DataFrame(rows).set_index("variable")
    if not table.empty:
        table["ok"] = (table["rhat_max"].fillna(1.0) <= rhat_max) & (
            table[["ess_bulk_min", "ess_tail_min"]].min(axis=1) >= ess_min
        )
    divergences = 0
    if "sample_stats" in idata.children and "diverging" in idata["sample_stats"]:
        divergences = int(idata["sample_stats"]["diverging"].sum())
    table.attrs["divergences"] = divergences
    return table


def describe_storage(options: dict[str, Any]) -> list[str]:
    """Lines saying what a fit kept of its guide-level draws and log-likelihood, and why."""
    info = options.get("storage")
    if not info:
        return []
    lines = []
    size = _bytes(info["sgrna_draws_bytes"])
    budget = _bytes(info["sgrna_budget_bytes"])
    if options.get("store_sgrna"):
        lines.append(f"guide-level draws kept ({info['store_sgrna']}): {size}")
    else:
        lines.append(
            f"guide-level draws not kept ({info['store_sgrna']}: they would take {size}, "
            f"budget {budget}); guide results come from summaries kept during the fit"
        )
    ll_size = _bytes(info["log_likelihood_bytes"])
    state = "computed" if options.get("log_likelihood") else "not computed"
    lines.append(
        f"pointwise log-likelihood {state} ({info['log_likelihood']}): it takes {ll_size}, "
        f"budget {_bytes(info['log_likelihood_budget_bytes'])}"
        + ("" if options.get("store_sgrna") else ", and it needs the guide-level draws")
    )
    return lines


def _bytes(n: int) -> str:
    for unit, size in (("GB", 2**30), ("MB", 2**20), ("kB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


# ------------------------------------------------------------------ in words
#: How an interface words a setting that would help a fit converge: setting name (``draws``,
#: ``target_accept``, ``chains``, ``stage1_draws``, ``method``) and suggested value -> text.
Wording = Mapping[str, Callable[[str], str]]

#: The settings as keywords of ``ScreenModel.fit``.
PYTHON_WORDING: Wording = {
    "method": lambda v: f"method={v!r}",
    "draws": lambda v: f"draws={v}, tune={v}",
    "target_accept": lambda v: f"target_accept={v}",
    "chains": lambda v: f"chains={v}",
    "stage1_draws": lambda v: f"stage1_draws={v}, stage1_tune={v}",
}

_LEVEL_WORDS = {"gene": "gene", "sgrna": "guide", "group": "gene-group"}


def _coef_words(coefs: Sequence[str]) -> str:
    """``baselines and LFCs (treatment[drug])`` for the coefficients of a group term."""
    parts = []
    if "Intercept" in coefs:
        parts.append("baselines")
    effects = [c for c in coefs if c != "Intercept"]
    if len(effects) > 2:
        parts.append(f"LFCs ({', '.join(effects[:2])}, ...)")
    elif effects:
        parts.append(f"LFCs ({', '.join(effects)})")
    return " and ".join(parts) or "effects"


def variable_labels(spec: Any) -> dict[str, str]:
    """What each posterior variable of a model is, in a biologist's words.

    ``r_gene`` and the variables it is sampled through (``z_gene``, ``t_gene__...``) are
    "gene baselines and LFCs (...)", ``sd_gene`` their sd, ``cor_gene`` and its Cholesky
    factor ``L_gene`` their correlation, ``phi`` the guide dispersion. Names not listed
    are their own label (`describe_variable`).
    """
    labels = {
        names.INTERCEPT: "baseline log count (intercept)",
        names.B_POOL: "effect of the pool abundance",
        names.PHI_RATE: "spread of guide dispersions",
        names.PHI_TREND_INTERCEPT: "dispersion trend with abundance (level)",
        names.PHI_TREND_SLOPE: "dispersion trend with abundance (slope)",
        names.PHI_SD: "spread of guide dispersions around the trend",
        names.PHI_Z: "guide dispersion",
        names.PHI_POOL: "pool dispersion",
        names.POOL_INTERCEPT: "pool baseline",
        names.POOL_SHIFT: "pool shift from the screen baseline",
        names.PHI: "guide dispersion",
    }
    common = tuple(getattr(getattr(spec.mean, "common", None), "names", ()) or ())
    labels[names.B] = "population-level effects" + (f" ({', '.join(common)})" if common else "")
    dispersion = getattr(spec, "dispersion", None)
    if getattr(dispersion, "mode", None) == "shared":
        labels[names.PHI] = "dispersion (shared by all guides)"
    alpha = names.population_names("alpha_")
    labels[alpha.intercept] = "dispersion formula: intercept"
    labels[alpha.b] = "dispersion formula: population-level effects"
    terms = list(spec.groups)
    predictor = getattr(dispersion, "predictor", None)
    terms += list(getattr(predictor, "groups", ()) or ())
    for term in terms:
        n = term.names
        level = _LEVEL_WORDS.get(term.level, term.name)
        if n.term.startswith("alpha_"):
            level = f"dispersion formula: {level}"
        coefs = tuple(term.coef_names)
        what = f"{level} {_coef_words(coefs)}"
        labels[n.effects] = labels[n.raw] = labels[n.raw_t] = labels[n.mix] = what
        labels[n.sd] = f"sd of {what}"
        labels[n.cor] = labels[n.chol] = f"correlation of {what}"
        labels[n.df] = f"tail weight (Student-t df) of {level} effects"
        for coef in coefs:
            labels[n.sd_of(coef)] = f"sd of {level} {_coef_words((coef,))}"
        # raw centred blocks are named after their coefficients (t_gene__Intercept__...)
        for k in range(1, len(coefs) + 1):
            for block in itertools.combinations(coefs, k):
                labels[n.raw_centered(block)] = f"{level} {_coef_words(block)}"
    return labels


def describe_variable(name: str, labels: Mapping[str, str]) -> str:
    """The label of posterior variable ``name`` (``name`` itself when it has none)."""
    return labels.get(name, name)


@dataclass(frozen=True)
class Convergence:
    """What a fit's convergence checks say, in words a biologist reads.

    Attributes
    ----------
    method : str
        How the fit was made (``"nuts"``, ``"two-stage"``, ``"advi"``, ...).
    approximate : bool
        The posterior is an approximation: R-hat and ESS do not apply.
    problems : tuple of str
        Each failed check, naming the quantities (`variable_labels`) it failed on.
    rhat_max, ess_min : float
        The worst R-hat and the smallest bulk / tail ESS over all checked variables.
    divergences : int
        Divergent transitions.
    settings : dict
        The fit's ``draws``, ``tune``, ``chains``, ``target_accept`` (those it recorded).
    """

    method: str
    approximate: bool
    problems: tuple[str, ...] = ()
    rhat_max: float = float("nan")
    ess_min: float = float("nan")
    divergences: int = 0
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def trusted(self) -> bool:
        """True when the posterior passed every check (never for an approximate fit)."""
        return not self.approximate and not self.problems

    @property
    def provisional(self) -> bool:
        """True when the fit's calls are provisional: it failed a check, or is approximate."""
        return not self.trusted

    def advice(self, wording: Wording = PYTHON_WORDING) -> str:
        """What to do, worded for the interface (`PYTHON_WORDING` or the command line's)."""
        if self.approximate:
            return f"confirm the hits that matter with a NUTS fit ({wording['method']('nuts')})"
        two_stage = self.method == "two-stage"
        stage1 = self.settings.get("stage1_draws") if two_stage else None
        if two_stage:
            target = float(self.settings.get("ess_target") or ESS_MIN)
            more = str(enough_draws(int(stage1 or 500), self.ess_min, 1000, target))
            steps = [f"give its first stage more draws ({wording['stage1_draws'](more)})"]
        else:
            used = self.settings
            draws = max(int(used.get("draws") or 1000), int(used.get("tune") or 0))
            more = str(enough_draws(draws, self.ess_min, 2000))
            steps = [f"run longer ({wording['draws'](more)})"]
        chains = self.settings.get("chains")
        if not two_stage and chains is not None and int(chains) < 4:
            steps.append(f"use 4 chains ({wording['chains']('4')})")
        accept = float(self.settings.get("target_accept") or 0.8)
        higher = "0.99" if accept >= 0.95 else "0.95"
        if self.divergences:
            steps.append(f"raise the target acceptance ({wording['target_accept'](higher)})")
        else:
            steps.append(
                f"if that is not enough, raise the target acceptance "
                f"({wording['target_accept'](higher)}) or simplify the model"
            )
        return "; ".join(steps)

    def message(self, wording: Wording = PYTHON_WORDING) -> str:
        """A few lines saying why the posterior cannot be trusted and what to do ('' if it can).

        For an approximate fit: that its calls are provisional until confirmed with NUTS.
        """
        if self.trusted:
            return ""
        if self.approximate:
            return (
                f"APPROXIMATE posterior ({self.method}): hits are provisional; "
                + self.advice(wording)
                + "."
            )
        lines = ["WARNING: this posterior cannot be trusted yet (convergence checks failed):"]
        lines += [f"  - {p}" for p in self.problems]
        lines.append(f"  Hits are PROVISIONAL. To fix: {self.advice(wording)}.")
        return "\n".join(lines)

    def summary(self) -> str:
        """One line: ``converged`` or what failed."""
        if self.trusted:
            return "convergence checks passed"
        if self.approximate:
            return f"approximate posterior ({self.method}): convergence checks do not apply"
        return "NOT CONVERGED: " + "; ".join(self.problems)


#: Below this ESS the chains hardly move, and their ESS per draw says nothing about how
#: many draws would be enough; the advice then only doubles the draws.
ESS_EXTRAPOLATE = 20.0


def enough_draws(draws: int, ess_min: float, floor: int, target: float = ESS_MIN) -> int:
    """Draws per chain to suggest after a fit of ``draws`` per chain with ESS ``ess_min``.

    At least twice ``draws`` and ``floor``; where the chains mix, only too slowly (ESS
    from `ESS_EXTRAPOLATE` to the check's ``target``), as many as their ESS per draw needs
    for ``target`` with a quarter to spare: the demo's leukemia fit had ESS 43 after 4 x 500 draws,
    where doubling to 2,000 would have left it near 170. Rounded up to 500 (1,000 above
    10,000).
    """
    need = max(floor, 2 * draws)
    if np.isfinite(ess_min) and ESS_EXTRAPOLATE <= ess_min < target:
        need = max(need, math.ceil(draws * target / ess_min * 1.25))
    step = 500 if need <= 10_000 else 1000
    return int(math.ceil(need / step) * step)


def convergence_problems(
    table: pd.DataFrame, labels: Mapping[str, str], *, rhat_max: float, ess_min: float
) -> list[str]:
    """The failed R-hat / ESS checks of a `convergence_table`, naming the quantities.

    R-hat and ESS are explained in a few words: R-hat says whether the chains agree, ESS
    how many independent draws the chains are worth.
    """
    if table.empty:
        return []
    problems = []
    rhat = table["rhat_max"]
    bad_rhat = table.index[rhat.notna() & (rhat > rhat_max)]
    if len(bad_rhat):
        worst = float(rhat.loc[bad_rhat].max())
        problems.append(
            f"the chains disagree (R-hat > {rhat_max:g}; worst {worst:.2f}) on "
            + _quantities(table.loc[bad_rhat].sort_values("rhat_max", ascending=False), labels)
        )
    ess = table[["ess_bulk_min", "ess_tail_min"]].min(axis=1)
    bad_ess = table.index[ess < ess_min]
    if len(bad_ess):
        problems.append(
            f"too few independent draws (ESS < {ess_min:g}; lowest {float(ess.min()):.0f}) "
            "for " + _quantities(table.loc[ess.loc[bad_ess].sort_values().index], labels)
        )
    return problems


def _quantities(rows: pd.DataFrame, labels: Mapping[str, str], most: int = 5) -> str:
    """The distinct labels of ``rows`` (worst first), at most ``most`` then a count."""
    seen = list(dict.fromkeys(describe_variable(str(v), labels) for v in rows.index))
    text = ", ".join(seen[:most])
    return text + (f" and {len(seen) - most} more" if len(seen) > most else "")
