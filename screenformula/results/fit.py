"""`ScreenFit`: the posterior (an arviz DataTree) with the model that produced it.

A fit saves to one netCDF file holding the posterior, the screen data and the model
settings, so `screenformula.model.load_fit` gives back a working fit without refitting.
"""

from __future__ import annotations

import json
import os
import warnings
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from screenformula._constants import ESS_MIN, ESS_PER_CHAIN, RHAT_MAX, rhat_for_ess
from screenformula.errors import FitError
from screenformula.io.atomic import atomic_path
from screenformula.io.dataset import screen_data_to_dataset
from screenformula.results.brms_vocabulary import BrmsVocabulary
from screenformula.results.contrast_core import DEFAULT_DELTA
from screenformula.results.diagnostics import (
    PYTHON_WORDING,
    Convergence,
    convergence_problems,
    convergence_table,
    variable_labels,
)
from screenformula.results.guide_summary import SUMMARY_GROUP

if TYPE_CHECKING:
    from screenformula.model import ScreenModel

DATA_GROUP = "screen_data"
#: Groups of a two-stage fit: its stage-1 (NUTS on a gene subsample) draws and per-gene
#: diagnostics of stage 2.
STAGE1_GROUP = "stage1_posterior"
GENE_DIAGNOSTICS_GROUP = "gene_diagnostics"
#: Pareto k-hat above which an importance-sampling correction is not to be trusted.
KHAT_MAX = 0.7
FORMAT_VERSION = 1


class ConvergenceWarning(UserWarning):
    """Raised (as a warning) when R-hat, ESS or divergences say a fit is not to be trusted."""


class ScreenFit(BrmsVocabulary):
    """A fitted screen model.

    Besides contrasts, a fit has brms's post-processing methods (`BrmsVocabulary`):
    ``summary()``, ``fixef()``, ``ranef()``, ``VarCorr()``, ``posterior_epred()``,
    ``posterior_predict()``, ``pp_check()``, ``loo()``, ``loo_compare()``,
    ``hypothesis()`` and ``conditional_effects()``. ArviZ functions take ``fit.idata``.

    Attributes
    ----------
    model : ScreenModel
        The model (formula, data, priors) that was fitted.
    idata : xarray.DataTree
        ``posterior``, ``sample_stats``, ``observed_data`` and, where it fits in memory,
        ``log_likelihood``.
    method : str
        ``"nuts"`` or the approximate method used.
    options : dict
        The fitting options (draws, chains, engine, seed, ...).
    """

    def __init__(
        self, model: ScreenModel, idata: Any, method: str, options: dict[str, Any]
    ) -> None:
        self.model = model
        self.idata = idata
        self.method = method
        self.options = dict(options)
        self._convergence: tuple[int, Convergence] | None = None
        self._tables: dict[tuple[Any, ...], pd.DataFrame] = {}
        self._warned = False

    # ------------------------------------------------------------------ access
    @property
    def posterior(self) -> xr.Dataset:
        """The posterior draws as an xarray Dataset (chain, draw, ...)."""
        return self.idata["posterior"].to_dataset()

    @property
    def sgrna_summary(self) -> xr.Dataset | None:
        """Guide-level contrast statistics kept at fit time instead of guide draws, or None.

        See `screenformula.results.guide_summary`: they give the guide table and
        ``sgrna_summary.txt`` when the fit kept no guide-level draws.
        """
        if SUMMARY_GROUP not in self.idata.children:
            return None
        return self.idata[SUMMARY_GROUP].to_dataset()

    @property
    def approximate(self) -> bool:
        """True when the posterior comes from an approximate method (ADVI).

        The method registry says which methods are (``fit.options["approximate"]``); a fit
        saved before it recorded that counts every method but NUTS as approximate.
        """
        return bool(self.options.get("approximate", self.method != "nuts"))

    def __repr__(self) -> str:
        post = self.posterior
        n_chain, n_draw = post.sizes.get("chain", 1), post.sizes.get("draw", 0)
        kind = "APPROXIMATE posterior" if self.approximate else "posterior"
        head = f"ScreenFit ({self.method}, {kind}: {n_chain} chains x {n_draw} draws)"
        if not self.approximate:
            try:
                verdict = self.convergence()
            except Exception as err:  # noqa: BLE001 - a repr must not fail
                head += f"\nconvergence not checked ({type(err).__name__}: {err})"
            else:
                head += "\n" + (
                    "Convergence: checks passed (R-hat, ESS, divergences)"
                    if verdict.trusted
                    else verdict.message() + "\n  (fit.diagnostics() has the table)"
                )
        return head + "\n" + repr(self.model) + self._estimates_text()

    def _estimates_text(self) -> str:
        """The tables of `summary` (brms's print), or a line saying why they are missing."""
        try:
            tables = self.summary().tables_text()
        except Exception as err:  # noqa: BLE001 - a repr must not fail
            return f"\nestimates not available ({type(err).__name__}: {err})"
        return (
            "\n\nEstimates (posterior mean, sd, 95% interval; fit.summary() prints brms's "
            "summary):\n" + tables
        )

    # ------------------------------------------------------------- diagnostics
    def diagnostics(
        self,
        var_names: list[str] | None = None,
        *,
        rhat_max: float | None = None,
        ess_min: float | None = None,
        warn: bool = True,
    ) -> pd.DataFrame:
        """R-hat, bulk and tail ESS per variable, and divergences, with a verdict.

        Parameters
        ----------
        var_names : list of str, optional
            Variables to check (default: all stored ones).
        rhat_max, ess_min : float
            Thresholds (Vehtari et al. 2021 recommend 1.01 and 100 per chain). The default
            ``ess_min`` is 400 (100 per chain of a NUTS fit's default four), ``rhat_max``
            1.01; for a two-stage fit, whose stage 1 is what is checked, what its early
            stop asks (its ``stage1_ess_per_chain`` setting times its chains: 50 x 2 = 100
            by default, and the R-hat converged chains show at that ESS, 1.0198:
            `screenformula._constants.rhat_for_ess`).
        warn : bool
            Emit a `ConvergenceWarning` naming what failed.

        Returns
        -------
        DataFrame
            One row per variable (its name in ``fit.idata``): ``quantity`` (what it is, in
            words: "gene baselines and LFCs (...)" for ``r_gene`` and the ``z_gene`` it is
            sampled through, "correlation of ..." for ``cor_*`` and ``L_*``), ``rhat_max``,
            ``ess_bulk_min``, ``ess_tail_min``, ``ok``; the divergence count is in
            ``.attrs["divergences"]``, and each failed check, naming those quantities, in
            ``.attrs["problems"]``. Computed once per thresholds. Empty for an approximate
            fit, whose draws are independent draws of the approximation (R-hat and ESS say
            nothing about it); ``.attrs["problems"]`` says so.
        """
        ess_min = self.ess_target() if ess_min is None else ess_min
        rhat_max = self.rhat_target() if rhat_max is None else rhat_max
        key = (id(self.idata), tuple(var_names or ()), float(rhat_max), float(ess_min))
        cached = self._tables.get(key)
        if cached is None:
            cached = self._tables[key] = self._diagnostics(var_names, rhat_max, ess_min)
        table = cached.copy()
        table.attrs = {k: (list(v) if isinstance(v, list) else v) for k, v in cached.attrs.items()}
        problems = table.attrs["problems"]
        if warn and problems and not self.approximate:
            verdict = self._verdict(table)
            warnings.warn(
                "fit did not converge cleanly: "
                + "; ".join(problems)
                + f". Its hits are provisional; to fix: {verdict.advice()}",
                ConvergenceWarning,
                stacklevel=2,
            )
        return table

    def ess_target(self) -> float:
        """The smallest ESS `diagnostics` asks by default (see there)."""
        config = self.options.get("config")
        if self.method == "two-stage" and isinstance(config, dict):
            # a fit saved before this setting existed: checked as it was then
            per_chain = float(config.get("stage1_ess_per_chain", ESS_PER_CHAIN))
            return per_chain * int(config.get("stage1_chains", 2))
        return ESS_MIN

    def rhat_target(self) -> float:
        """The largest R-hat `diagnostics` accepts by default (see there)."""
        config = self.options.get("config")
        if self.method == "two-stage" and isinstance(config, dict):
            if config.get("stage1_rhat_max") is not None:
                return float(config["stage1_rhat_max"])
            if "stage1_rhat_max" in config:  # None: derived from the ESS asked
                return rhat_for_ess(float(config.get("stage1_ess_per_chain", ESS_PER_CHAIN)))
        return RHAT_MAX  # NUTS, or a two-stage fit saved before the setting: 1.01

    def _diagnostics(
        self, var_names: list[str] | None, rhat_max: float, ess_min: float
    ) -> pd.DataFrame:
        """The table of `diagnostics` (computed once per thresholds, then kept)."""
        if self.approximate:  # independent draws of an approximation: nothing to check
            table = pd.DataFrame(
                columns=["rhat_max", "ess_bulk_min", "ess_tail_min", "ok"],
                index=pd.Index([], name="variable"),
            )
            table.attrs["divergences"] = 0
        elif STAGE1_GROUP in self.idata.children:  # two-stage: its NUTS stage is what mixes
            stage1 = xr.DataTree.from_dict({"posterior": self.idata[STAGE1_GROUP].to_dataset()})
            table = convergence_table(stage1, var_names, rhat_max=rhat_max, ess_min=ess_min)
            stage1 = self.options.get("stage1")
            if not table.attrs["divergences"] and isinstance(stage1, dict):
                table.attrs["divergences"] = int(stage1.get("divergences") or 0)
        else:
            table = convergence_table(self.idata, var_names, rhat_max=rhat_max, ess_min=ess_min)
        labels = variable_labels(self.model.spec)
        table.insert(0, "quantity", [labels.get(str(v), str(v)) for v in table.index])
        problems = []
        if self.approximate:
            problems.append(f"{self.method} is approximate: R-hat/ESS do not apply")
        else:
            problems += convergence_problems(table, labels, rhat_max=rhat_max, ess_min=ess_min)
            if table.attrs["divergences"]:
                problems.append(
                    f"{table.attrs['divergences']} divergent transitions (the sampler could "
                    "not follow the posterior everywhere)"
                )
            problems += self._gene_problems()
        table.attrs["problems"] = problems
        return table

    def convergence(self) -> Convergence:
        """The verdict of the default checks (`diagnostics`), in words; computed once.

        ``fit.convergence().trusted`` says whether the posterior passed every check;
        ``.message()`` says what failed (which quantity: gene LFCs, guide dispersion, ...)
        and what to do. Contrasts of a fit that is not trusted mark their hits as
        provisional; ``repr(fit)`` and the report say so first.
        """
        key = id(self.idata)
        if self._convergence is None or self._convergence[0] != key:
            self._convergence = (key, self._verdict(self.diagnostics(warn=False)))
        return self._convergence[1]

    def _verdict(self, table: pd.DataFrame) -> Convergence:
        if self.approximate:
            return Convergence(self.method, True)
        ess = table[["ess_bulk_min", "ess_tail_min"]].min(axis=1) if not table.empty else None
        settings = {
            k: self.options[k]
            for k in ("draws", "tune", "chains", "target_accept")
            if self.options.get(k) is not None
        }
        config = self.options.get("config")
        if isinstance(config, dict) and "stage1_draws" in config:
            settings["stage1_draws"] = config["stage1_draws"]
            settings["ess_target"] = self.ess_target()
        return Convergence(
            self.method,
            False,
            tuple(table.attrs.get("problems", ())),
            float(table["rhat_max"].max()) if not table.empty else float("nan"),
            float(ess.min()) if ess is not None else float("nan"),
            int(table.attrs.get("divergences", 0)),
            settings,
        )

    def _warn_once(self) -> Convergence:
        """The verdict; a `ConvergenceWarning` the first time it says the fit is not trusted."""
        verdict = self.convergence()
        if not verdict.approximate and not verdict.trusted and not self._warned:
            self._warned = True
            # stack: here, compute_contrasts, ScreenFit.contrast, the user's call
            warnings.warn(verdict.message(PYTHON_WORDING), ConvergenceWarning, stacklevel=4)
        return verdict

    def _gene_problems(self) -> list[str]:
        """Per-gene checks of the two-stage engine: importance k-hat and per-gene HMC."""
        if GENE_DIAGNOSTICS_GROUP not in self.idata.children:
            return []
        genes = self.idata[GENE_DIAGNOSTICS_GROUP].to_dataset()
        problems = []
        if "khat" in genes and "refit_hmc" in genes:
            poor = (genes["khat"].values > KHAT_MAX) & ~genes["refit_hmc"].values.astype(bool)
            if poor.any():
                problems.append(
                    f"{int(poor.sum())} genes whose importance-sampling correction is not "
                    f"reliable (k-hat > {KHAT_MAX}) were not refitted with HMC"
                )
        if "hmc_divergences" in genes and int(genes["hmc_divergences"].values.sum()):
            problems.append(
                f"{int(genes['hmc_divergences'].values.sum())} divergent transitions in the "
                "per-gene HMC refits"
            )
        return problems

    # ---------------------------------------------------------------- save/load
    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the fit (posterior, data, model settings) to one netCDF file.

        The file is written under a temporary name and renamed, so an interrupted save
        leaves no half file; an existing file is kept unless ``overwrite=True``.
        """
        path = Path(path)
        if path.exists() and not overwrite:
            raise FitError(f"{path} exists; pass overwrite=True to replace it")
        tree = self.idata.copy()
        for group in list(tree.children):
            ds = tree[group].to_dataset()
            drop = [v for v in ds.data_vars if ds[v].dtype == object]
            if drop:
                ds = ds.drop_vars(drop)
            ds.attrs = _netcdf_attrs(ds.attrs)
            tree[group] = xr.DataTree(ds)
        tree.attrs = _netcdf_attrs(tree.attrs)
        tree[DATA_GROUP] = xr.DataTree(screen_data_to_dataset(self.model.data))
        tree.attrs["screenformula"] = json.dumps(
            {
                "format": FORMAT_VERSION,
                "settings": self.model.settings.to_dict(),
                "method": self.method,
                "options": _jsonable(self.options),
                "versions": package_versions(),
            }
        )
        with atomic_path(path) as tmp:
            tree.to_netcdf(tmp)
        return path

    # --------------------------------------------------------------- contrasts
    def contrast(
        self,
        factor: str = "treatment",
        ref: str | None = None,
        a: str | None = None,
        b: str | None = None,
        delta: float = DEFAULT_DELTA,
        hdi_prob: float = 0.94,
        fdr_target: float = 0.05,
        call_rule: str = "local",
    ) -> Any:
        """Gene, guide and gene-group contrasts of ``factor`` (a `ContrastResult`).

        Every level against ``ref`` (default: the model's reference level), or ``a``
        against ``b``. ``delta`` is the minimum |LFC| on the log2 scale (as the ``lfc``
        column) that a call must exceed: 0.5 by default, as on the command line (1.41-fold);
        ``delta=0`` asks only whether the sign is known, and with many genes a small shared
        shift then makes almost every gene a "hit". See `screenformula.results.contrasts`
        for every column's meaning.

        ``call_rule="local"`` (the default) calls a gene when its own posterior chance of
        not being changed beyond ``delta`` in its direction (its local error) is at most
        ``fdr_target``; the list's Bayesian FDR is then at most ``fdr_target`` as well.
        ``call_rule="qvalue"`` calls every gene whose q-value (the FDR of the list down to
        it) is at most ``fdr_target``: more calls, but behind thousands of certain hits
        that list takes in genes with a 20 % chance of being wrong each (measured on HAP1,
        where it called 5 non-essential genes and MAGeCK none; `benchmarks/bench_panel.py`).

        A fit that failed its convergence checks (`convergence`) gives provisional hits: a
        `ConvergenceWarning` says so once, ``result.provisional`` is True and the gene
        table's ``provisional`` column marks its hits.
        """
        from screenformula.results.contrasts import compute_contrasts

        return compute_contrasts(
            self,
            factor,
            ref=ref,
            a=a,
            b=b,
            delta=delta,
            hdi_prob=hdi_prob,
            fdr_target=fdr_target,
            call_rule=call_rule,
        )

    def guide_correlation(self, hdi_prob: float = 0.94) -> pd.DataFrame:
        """Posterior correlations of the guide-level effects (see `results.pool`).

        With ``pool="joint"`` the guide baseline is what the pool measures: its correlation
        with a treatment deviation says whether guides that start rare respond differently.
        """
        from screenformula.results.pool import guide_correlation

        return guide_correlation(self, hdi_prob)

    def compare(
        self, other: ScreenFit, factor: str = "treatment", ref: str | None = None
    ) -> pd.DataFrame:
        """Per gene, how the LFC and its sd change from ``other`` to this fit.

        E.g. ``fit_joint.compare(fit_without_pool)`` shows what the pool changed.
        """
        from screenformula.results.pool import compare_gene_lfcs

        return compare_gene_lfcs(self, other, factor, ref)

    def expected_counts(self, reference_depth: float | None = None, **kwargs: Any) -> pd.DataFrame:
        """Posterior expected ("real") read count per gene x condition at a reference depth.

        See `screenformula.results.expected.expected_counts` (``by``, ``hdi_prob``,
        ``aggregate`` are passed through).
        """
        from screenformula.results.expected import expected_counts

        return expected_counts(self, reference_depth, **kwargs)


def package_versions() -> dict[str, str]:
    """Versions of the packages a fit depends on (saved with it)."""
    out = {}
    for pkg in ("screenformula", "pymc", "pytensor", "nutpie", "arviz", "numpy", "bambi"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _netcdf_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    """Attributes netCDF can hold: nested values (a sampler's settings) as JSON text."""
    out = {}
    for key, value in attrs.items():
        if isinstance(value, dict | list | tuple) or value is None:
            value = json.dumps(_jsonable(value))
        elif isinstance(value, bool | np.bool_):
            value = int(value)
        out[key] = value
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return repr(value)
