"""brms's summaries of a fit: `summary`, `fixef`, `ranef` and `VarCorr`, from the posterior.

Each is a NumPy/xarray computation on ``fit.posterior`` returning pandas objects with
brms's row and column names, so a brms user reads them as in R:

- coefficient names as brms writes them (``treatmentdrugA`` for the model's
  ``treatment[drugA]``; `brms_name`);
- group-level terms under their grouping factor as the formula writes it (``gene``,
  ``gene:sgrna``), with rows ``sd(Intercept)`` and ``cor(Intercept,treatmentdrugA)``;
- statistics ``Estimate`` (posterior mean), ``Est.Error`` (posterior sd), equal-tailed
  ``l-95% CI`` / ``u-95% CI`` (``Q2.5`` / ``Q97.5`` in `fixef` and `ranef`), and in
  `summary` ``Rhat``, ``Bulk_ESS`` and ``Tail_ESS`` (arviz-stats, as `fit.diagnostics`).

`BrmsSummary` prints in brms's layout; its ``fixed``, ``random`` and ``spec_pars`` are
brms's ``$fixed``, ``$random`` and ``$spec_pars``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from screenformula.errors import FitError
from screenformula.results.draws import correlation_draws, flatten_draws
from screenformula.spec import names
from screenformula.spec.names import cor_pairs

if TYPE_CHECKING:
    from screenformula.results.fit import ScreenFit
    from screenformula.spec.terms import GroupTerm

__all__ = [
    "BrmsSummary",
    "VarCorr",
    "brms_name",
    "describe_draws",
    "fixef",
    "group_terms",
    "population_draws",
    "ranef",
    "summarize_fit",
]

#: Columns of `summary`'s tables (brms's ``summary.brmsfit``).
SUMMARY_COLUMNS = ["Estimate", "Est.Error", "l-95% CI", "u-95% CI", "Rhat", "Bulk_ESS", "Tail_ESS"]
#: Variables of the dispersion and the pool, in the order `summary` lists them.
FURTHER = (
    names.PHI,
    names.PHI_RATE,
    names.PHI_TREND_INTERCEPT,
    names.PHI_TREND_SLOPE,
    names.PHI_SD,
    names.POOL_INTERCEPT,
    names.PHI_POOL,
)
#: Guide-level summaries are computed this many levels at a time (memory).
CHUNK = 4096


def brms_name(coef: str) -> str:
    """The name brms gives a coefficient: ``treatment[drugA]`` -> ``treatmentdrugA``."""
    return coef.replace("[", "").replace("]", "")


def _label(ci: float) -> tuple[str, str]:
    pct = f"{100 * ci:g}"
    return f"l-{pct}% CI", f"u-{pct}% CI"


def describe_draws(
    draws: np.ndarray, probs: Sequence[float] = (0.025, 0.975), chunk: int = CHUNK
) -> pd.DataFrame:
    """``Estimate``, ``Est.Error`` and quantile columns (``Q2.5``...) of draws x items.

    Items are summarised ``chunk`` at a time, so a genome's guides need no second copy
    of their draws.
    """
    draws = np.asarray(draws, dtype=float)
    if draws.ndim == 1:
        draws = draws[:, None]
    n_items = draws.shape[1]
    out = {"Estimate": np.empty(n_items), "Est.Error": np.empty(n_items)}
    qcols = [f"Q{100 * p:g}" for p in probs]
    quant = np.empty((len(probs), n_items))
    for i0 in range(0, n_items, chunk):
        block = draws[:, i0 : i0 + chunk]
        out["Estimate"][i0 : i0 + chunk] = block.mean(axis=0)
        out["Est.Error"][i0 : i0 + chunk] = block.std(axis=0, ddof=1 if len(block) > 1 else 0)
        quant[:, i0 : i0 + chunk] = np.quantile(block, probs, axis=0)
    return pd.DataFrame({**out, **dict(zip(qcols, quant, strict=True))})


def _summary_rows(da: xr.DataArray, row_names: list[str], ci: float) -> pd.DataFrame:
    """`SUMMARY_COLUMNS` for a (chain, draw, k) DataArray, one row per k."""
    import arviz_stats  # noqa: F401 - registers the .azstats accessor

    da = da.transpose("chain", "draw", ...)
    values = np.asarray(da.values, dtype=float).reshape(da.sizes["chain"], da.sizes["draw"], -1)
    flat = values.reshape(-1, values.shape[2])
    lo, hi = (1 - ci) / 2, 1 - (1 - ci) / 2
    table = describe_draws(flat, (lo, hi))
    table.columns = ["Estimate", "Est.Error", *_label(ci)]
    arr = xr.DataArray(values, dims=("chain", "draw", "k"))
    dims = ["chain", "draw"]
    with np.errstate(all="ignore"):
        rhat = (
            arr.azstats.rhat(sample_dims=dims).values
            if values.shape[0] > 1
            else np.full(values.shape[2], np.nan)
        )
        bulk = arr.azstats.ess(sample_dims=dims, method="bulk").values
        tail = arr.azstats.ess(sample_dims=dims, method="tail").values
    table["Rhat"] = rhat
    table["Bulk_ESS"] = np.floor(bulk)
    table["Tail_ESS"] = np.floor(tail)
    table.index = pd.Index(row_names)
    return table


def group_terms(fit: ScreenFit) -> list[GroupTerm]:
    """Group terms of the mean formula and, when it has one, of the dispersion formula."""
    spec = fit.model.spec
    terms = list(spec.groups)
    if spec.dispersion.mode == "formula" and spec.dispersion.predictor is not None:
        terms += list(spec.dispersion.predictor.groups)
    return terms


def _term_key(term: GroupTerm, prefix: str = "") -> str:
    return f"{prefix}{term.factor}"


def _iter_group_terms(fit: ScreenFit) -> Iterator[tuple[str, GroupTerm, str]]:
    """(group label as the formula writes it, term, coefficient-name prefix)."""
    spec = fit.model.spec
    for term in spec.groups:
        yield _term_key(term), term, ""
    if spec.dispersion.mode == "formula" and spec.dispersion.predictor is not None:
        for term in spec.dispersion.predictor.groups:
            yield _term_key(term, "alpha_"), term, "alpha_"


# ------------------------------------------------------------------ population
def population_draws(fit: ScreenFit, prefix: str = "") -> xr.DataArray:
    """Population-level coefficients as a (chain, draw, coef) DataArray, brms's names.

    ``Intercept`` first, then the slopes (``treatmentdrugA``), then ``pool`` (the slope of
    the log pool abundance, ``pool="covariate"``). ``prefix="alpha_"`` gives the
    dispersion formula's coefficients.
    """
    post = fit.posterior
    pop = names.population_names(prefix)
    parts: list[xr.DataArray] = []
    labels: list[str] = []
    if pop.intercept in post:
        parts.append(post[pop.intercept].expand_dims(coef=1, axis=-1))
        labels.append(pop.intercept)
    if pop.b in post:
        b = post[pop.b].rename({pop.b_coef_dim: "coef"})
        parts.append(b.drop_vars("coef", errors="ignore"))
        labels += [f"{prefix}{brms_name(str(c))}" for c in post[pop.b][pop.b_coef_dim].values]
    if not prefix and names.B_POOL in post:
        parts.append(post[names.B_POOL].expand_dims(coef=1, axis=-1))
        labels.append("pool")
    if not parts:
        return xr.DataArray(
            np.zeros((post.sizes.get("chain", 1), post.sizes["draw"], 0)),
            dims=("chain", "draw", "coef"),
            coords={"coef": []},
        )
    parts = [p.drop_vars([c for c in p.coords if c not in ("chain", "draw")]) for p in parts]
    out = xr.concat(parts, dim="coef").transpose("chain", "draw", "coef")
    return out.assign_coords(coef=labels)


def fixef(
    fit: ScreenFit, *, summary: bool = True, probs: Sequence[float] = (0.025, 0.975)
) -> pd.DataFrame:
    """Population-level effects (brms's ``fixef``).

    Returns one row per coefficient (brms's names) with ``Estimate``, ``Est.Error`` and
    the ``probs`` quantiles (``Q2.5``, ``Q97.5``); with ``summary=False`` the draws
    (draws x coefficients, chains stacked).
    """
    da = population_draws(fit)
    flat = flatten_draws(da)
    coefs = [str(c) for c in da["coef"].values]
    if not summary:
        return pd.DataFrame(flat, columns=coefs)
    table = describe_draws(flat, probs)
    table.index = pd.Index(coefs)
    return table


# ------------------------------------------------------------------ group level
def _term_by_group(fit: ScreenFit, group: str) -> tuple[GroupTerm, str]:
    found = {key: (term, prefix) for key, term, prefix in _iter_group_terms(fit)}
    if group not in found:
        raise FitError(
            f"no group-level term over {group!r}; the formula's groups are: "
            f"{', '.join(found) or 'none'}"
        )
    return found[group]


def group_effect_draws(fit: ScreenFit, group: str) -> xr.DataArray:
    """The deviations ``r_<term>`` of one grouping factor (chain, draw, level, coef).

    Coefficients are named as brms names them; raises a `FitError` when the fit did not
    keep them (guide-level draws of genome-scale fits).
    """
    term, prefix = _term_by_group(fit, group)
    post = fit.posterior
    if term.names.effects not in post:
        raise FitError(
            f"the deviations of {group!r} ({term.names.effects}) were not stored in this fit "
            "(guide-level draws are dropped for genome-scale libraries): refit with "
            "store_sgrna=True"
        )
    da = post[term.names.effects]
    da = da.rename({term.names.level_dim: "level", term.names.coef_dim: "coef"})
    return da.assign_coords(
        level=[str(v) for v in term.level_names],
        coef=[f"{prefix}{brms_name(c)}" for c in term.coef_names],
    ).transpose("chain", "draw", "level", "coef")


def ranef(
    fit: ScreenFit,
    *,
    groups: Sequence[str] | None = None,
    summary: bool = True,
    probs: Sequence[float] = (0.025, 0.975),
) -> dict[str, pd.DataFrame] | dict[str, xr.DataArray]:
    """Group-level deviations per level (brms's ``ranef``), by grouping factor.

    Returns ``{group: DataFrame}``, ``group`` as the formula writes it (``"gene"``,
    ``"gene:sgrna"``); each table has one row per level (gene, guide, ...) and columns
    ``(coef, statistic)``: ``ranef(fit)["gene"]["treatmentdrugA"]`` is brms's
    ``ranef(fit)$gene[, , "treatmentdrugA"]``. They are the deviations from the population
    effects (``r_gene``), not the gene's total effect. With ``summary=False`` the draws, as
    (chain, draw, level, coef) DataArrays. Terms whose draws were not stored are left out.
    """
    wanted = list(groups) if groups is not None else [k for k, _, _ in _iter_group_terms(fit)]
    out: dict[str, Any] = {}
    for group in wanted:
        term, _ = _term_by_group(fit, group)
        if term.names.effects not in fit.posterior and groups is None:
            continue
        da = group_effect_draws(fit, group)
        if not summary:
            out[group] = da
            continue
        flat = flatten_draws(da)  # (draws, level, coef)
        n_draws, n_levels, n_coefs = flat.shape
        stats = describe_draws(flat.reshape(n_draws, -1), probs)
        cols = list(stats.columns)
        values = stats.to_numpy().reshape(n_levels, n_coefs, len(cols))
        coefs = [str(c) for c in da["coef"].values]
        table = pd.DataFrame(
            values.reshape(n_levels, -1),
            index=pd.Index([str(v) for v in da["level"].values], name=group),
            columns=pd.MultiIndex.from_product([coefs, cols], names=["coef", "statistic"]),
        )
        out[group] = table
    return out


def VarCorr(  # noqa: N802 - brms's name
    fit: ScreenFit, probs: Sequence[float] = (0.025, 0.975)
) -> dict[str, dict[str, pd.DataFrame]]:
    """Sds and correlations of the group-level effects (brms's ``VarCorr``).

    Returns ``{group: {"sd": DataFrame, "cor": DataFrame}}``: ``sd`` has one row per
    coefficient, ``cor`` one row per pair (index ``(coef, coef)``, empty without
    correlations), each with ``Estimate``, ``Est.Error`` and the ``probs`` quantiles.
    """
    out: dict[str, dict[str, pd.DataFrame]] = {}
    post = fit.posterior
    for group, term, prefix in _iter_group_terms(fit):
        if term.names.sd not in post:  # not kept by this fit's engine
            continue
        coefs = [f"{prefix}{brms_name(c)}" for c in term.coef_names]
        sd = describe_draws(flatten_draws(post[term.names.sd]).reshape(-1, term.n_coefs), probs)
        sd.index = pd.Index(coefs, name="coef")
        pairs, cor_draws = _cor_pairs(post, term, coefs)
        if pairs:
            cor = describe_draws(cor_draws, probs)
            cor.index = pd.MultiIndex.from_tuples(pairs, names=["coef", "coef_"])
        else:
            empty = pd.MultiIndex.from_tuples([], names=["coef", "coef_"])
            cor = pd.DataFrame(columns=sd.columns, index=empty)
        out[group] = {"sd": sd, "cor": cor}
    return out


def _cor_pairs(
    post: xr.Dataset, term: GroupTerm, coefs: list[str]
) -> tuple[list[tuple[str, str]], np.ndarray]:
    """Lower-triangle pairs of a term's correlation and their draws (draws, pairs)."""
    cor = correlation_draws(post, term)
    if cor is None:
        return [], np.zeros((0, 0))
    pairs = [(coefs[i], coefs[j]) for i, j in cor_pairs(term.n_coefs)]  # brms's order
    return pairs, flatten_draws(cor)


# ---------------------------------------------------------------------- summary
@dataclass
class BrmsSummary:
    """brms's ``summary(fit)``: its tables, and its printed layout as ``repr``.

    Attributes
    ----------
    fixed : DataFrame
        Regression coefficients (brms's ``$fixed``).
    random : dict of str to DataFrame
        Per grouping factor, ``sd(...)`` and ``cor(...,...)`` rows (``$random``).
    spec_pars : DataFrame
        Dispersion and pool parameters (``$spec_pars``: brms's ``shape`` is ``phi``).
    header : list of str
        The lines above the tables (family, formula, data, draws).
    notes : list of str
        Lines below them (how the draws were made; convergence verdict).
    """

    fixed: pd.DataFrame
    random: dict[str, pd.DataFrame]
    spec_pars: pd.DataFrame
    header: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    levels: dict[str, int] = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        """Every row in one table, with a ``section`` column (and ``group`` for sds)."""
        parts = [self.fixed.assign(section="fixed", group="")]
        parts += [t.assign(section="random", group=g) for g, t in self.random.items()]
        parts.append(self.spec_pars.assign(section="spec_pars", group=""))
        return pd.concat([p for p in parts if len(p)], axis=0)

    def tables_text(self) -> str:
        """The tables of the printed summary, without its header and notes."""
        lines: list[str] = []
        if self.random:
            lines += ["", "Multilevel Hyperparameters:"]
            for group, table in self.random.items():
                lines.append(f"~{group} (Number of levels: {self.levels.get(group, 0)})")
                lines.append(format_table(table))
                lines.append("")
            lines.pop()
        if len(self.fixed):
            lines += ["", "Regression Coefficients:", format_table(self.fixed)]
        if len(self.spec_pars):
            lines += ["", "Further Distributional Parameters:", format_table(self.spec_pars)]
        return "\n".join(lines).lstrip("\n")

    def __repr__(self) -> str:
        return "\n".join([*self.header, "", self.tables_text(), "", *self.notes])

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:  # IPython
        p.text(repr(self))


def format_table(table: pd.DataFrame, digits: int = 2) -> str:
    """A table as brms prints it: estimates to ``digits`` places, ESS as integers."""
    shown = pd.DataFrame(index=table.index)
    for col in table.columns:
        values = table[col].to_numpy(dtype=float)
        if col in ("Bulk_ESS", "Tail_ESS"):
            shown[col] = [("NA" if not np.isfinite(v) else f"{int(v)}") for v in values]
        else:
            shown[col] = [("NA" if not np.isfinite(v) else f"{v:.{digits}f}") for v in values]
    return shown.to_string()


def _further(fit: ScreenFit, ci: float) -> pd.DataFrame:
    """Dispersion (and pool) parameters, one row per scalar, with `SUMMARY_COLUMNS`."""
    post = fit.posterior
    spec = fit.model.spec
    tables = []
    for name in FURTHER:
        if name not in post:
            continue
        da = post[name]
        rest = [d for d in da.dims if d not in ("chain", "draw")]
        if name == names.PHI and rest:  # per guide: summarised by fixef-like rows elsewhere
            continue
        if rest:
            labels = [f"{name}[{v}]" for v in da[rest[0]].values]
            da = da.rename({rest[0]: "k"})
        else:
            labels = [name]
            da = da.expand_dims(k=1, axis=-1)
        tables.append(_summary_rows(da, labels, ci))
    if spec.replicate_scale.active and names.REPLICATE_SCALE in post:
        da = post[names.REPLICATE_SCALE].rename({names.REPLICATE_DIM: "k"})
        labels = [f"{names.REPLICATE_SCALE}[{n}]" for n in spec.replicate_scale.names]
        tables.append(_summary_rows(da, labels, ci))
    if spec.dispersion.mode == "formula":
        pop = population_draws(fit, prefix="alpha_")
        if pop.sizes["coef"]:
            tables.append(_summary_rows(pop, [str(c) for c in pop["coef"].values], ci))
    if not tables:
        return pd.DataFrame(columns=_columns(ci))
    return pd.concat(tables)


def _columns(ci: float) -> list[str]:
    return ["Estimate", "Est.Error", *_label(ci), "Rhat", "Bulk_ESS", "Tail_ESS"]


def summarize_fit(fit: ScreenFit, prob: float = 0.95) -> BrmsSummary:
    """The ``summary(fit, prob = 0.95)`` of brms for a fit (see `BrmsSummary`)."""
    if not 0 < prob < 1:
        raise FitError(f"prob must be between 0 and 1, got {prob}")
    post = fit.posterior
    pop = population_draws(fit)
    if pop.sizes["coef"]:
        fixed = _summary_rows(pop, [str(c) for c in pop["coef"].values], prob)
    else:
        fixed = pd.DataFrame(columns=_columns(prob))
    random: dict[str, pd.DataFrame] = {}
    levels: dict[str, int] = {}
    for group, term, prefix in _iter_group_terms(fit):
        if term.names.sd not in post:  # not kept by this fit's engine
            continue
        coefs = [f"{prefix}{brms_name(c)}" for c in term.coef_names]
        sd = post[term.names.sd].rename({term.names.coef_dim: "k"})
        parts = [_summary_rows(sd, [f"sd({c})" for c in coefs], prob)]
        if term.names.df in post:
            df = post[term.names.df].expand_dims(k=1, axis=-1)
            parts.append(_summary_rows(df, ["df"], prob))
        pairs, _ = _cor_pairs(post, term, coefs)
        if pairs:
            da = correlation_draws(post, term)
            parts.append(_summary_rows(da, [f"cor({a},{b})" for a, b in pairs], prob))
        random[group] = pd.concat(parts)
        levels[group] = term.n_levels
    return BrmsSummary(
        fixed=fixed,
        random=random,
        spec_pars=_further(fit, prob),
        header=_header(fit),
        notes=_notes(fit),
        levels=levels,
    )


def _header(fit: ScreenFit) -> list[str]:
    spec = fit.model.spec
    fam = spec.family
    disp = spec.dispersion
    links = "mu = log" + ("" if fam.dispersion is None else "; phi = identity")
    if disp.mode == "formula":
        links = "mu = log; phi = log"
    n_obs = int(spec.counts.size)
    pool = ""
    if spec.pool.mode == "joint" and spec.pool.counts is not None:
        pool = f"; pool: {int(spec.pool.counts.size)}"
    lines = [
        f" Family: {fam.brms.removesuffix('()')}",
        f"  Links: {links}",
        f"Formula: {spec.formula}",
    ]
    if disp.mode != "none":
        lines.append(f"         phi: {disp.formula if disp.mode == 'formula' else disp.mode}")
    lines.append(
        f"   Data: {spec.data.n_sgrnas} guides x {len(spec.samples)} samples "
        f"(Number of observations: {n_obs}{pool})"
    )
    post = fit.posterior
    n_chain, n_draw = post.sizes.get("chain", 1), post.sizes["draw"]
    tune = fit.options.get("tune")
    draws_line = f"  Draws: {n_chain} chains, each with {n_draw} draws"
    if tune is not None:
        draws_line += f" after {tune} warmup"
    lines += [draws_line, f"         total post-warmup draws = {n_chain * n_draw}"]
    return lines


def _notes(fit: ScreenFit) -> list[str]:
    if fit.approximate:
        return [
            f"Draws were made by {fit.method}, an approximation: Rhat and ESS do not apply",
            "(independent draws of the approximate posterior).",
        ]
    notes = [
        f"Draws were sampled using {fit.method} (screenformula). For each parameter, Bulk_ESS",
        "and Tail_ESS are effective sample size measures, and Rhat is the potential",
        "scale reduction factor on split chains (at convergence, Rhat = 1).",
    ]
    try:
        verdict = fit.convergence()
    except Exception:  # noqa: BLE001 - a summary prints even when the checks cannot run
        return notes
    if not verdict.trusted:
        notes.append(verdict.message())
    return notes
