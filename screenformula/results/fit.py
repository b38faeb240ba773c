"""`ScreenFit`: the posterior (an arviz DataTree) with the model that produced it.

A fit saves to one netCDF file holding the posterior, the screen data and the model
settings, so `load_fit` gives back a working fit without refitting.
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

from screenformula.errors import FitError
from screenformula.io.screen_data import ScreenData
from screenformula.results.diagnostics import convergence_table
from screenformula.results.guide_summary import SUMMARY_GROUP
from screenformula.spec.priors import Prior

if TYPE_CHECKING:
    from screenformula.model import ScreenModel

DATA_GROUP = "screen_data"
FORMAT_VERSION = 1


class ConvergenceWarning(UserWarning):
    """Raised (as a warning) when R-hat, ESS or divergences say a fit is not to be trusted."""


class ScreenFit:
    """A fitted screen model.

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
        """True when the posterior comes from an approximate method, not NUTS."""
        return self.method != "nuts"

    def __repr__(self) -> str:
        post = self.posterior
        n_chain, n_draw = post.sizes.get("chain", 1), post.sizes.get("draw", 0)
        kind = "APPROXIMATE posterior" if self.approximate else "posterior"
        return f"ScreenFit ({self.method}, {kind}: {n_chain} chains x {n_draw} draws)\n" + repr(
            self.model
        )

    # ------------------------------------------------------------- diagnostics
    def diagnostics(
        self,
        var_names: list[str] | None = None,
        *,
        rhat_max: float = 1.01,
        ess_min: float = 400.0,
        warn: bool = True,
    ) -> pd.DataFrame:
        """R-hat, bulk and tail ESS per variable, and divergences, with a verdict.

        Parameters
        ----------
        var_names : list of str, optional
            Variables to check (default: all stored ones).
        rhat_max, ess_min : float
            Thresholds (Vehtari et al. 2021 recommend 1.01 and 100 per chain).
        warn : bool
            Emit a `ConvergenceWarning` naming what failed.

        Returns
        -------
        DataFrame
            One row per variable: ``rhat_max``, ``ess_bulk_min``, ``ess_tail_min``, ``ok``;
            the divergence count is in ``.attrs["divergences"]``. Empty for an approximate
            fit, whose draws are independent draws of the approximation (R-hat and ESS say
            nothing about it); ``.attrs["problems"]`` says so.
        """
        if self.approximate:  # independent draws of an approximation: nothing to check
            table = pd.DataFrame(
                columns=["rhat_max", "ess_bulk_min", "ess_tail_min", "ok"],
                index=pd.Index([], name="variable"),
            )
            table.attrs["divergences"] = 0
        else:
            table = convergence_table(self.idata, var_names, rhat_max=rhat_max, ess_min=ess_min)
        problems = []
        if self.approximate:
            problems.append(f"{self.method} is approximate: R-hat/ESS do not apply")
        else:
            bad = table.index[~table["ok"]].tolist()
            if bad:
                problems.append(
                    f"R-hat > {rhat_max} or ESS < {ess_min:g} for {', '.join(bad[:6])}"
                    + (" ..." if len(bad) > 6 else "")
                )
            if table.attrs["divergences"]:
                problems.append(f"{table.attrs['divergences']} divergent transitions")
        table.attrs["problems"] = problems
        if warn and problems and not self.approximate:
            warnings.warn(
                "fit did not converge cleanly: "
                + "; ".join(problems)
                + " (run longer, raise target_accept, or simplify the model)",
                ConvergenceWarning,
                stacklevel=2,
            )
        return table

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
                "settings": self.model.settings,
                "method": self.method,
                "options": _jsonable(self.options),
                "versions": package_versions(),
            }
        )
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            tree.to_netcdf(tmp)
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
        return path

    # --------------------------------------------------------------- contrasts
    def contrast(
        self,
        factor: str = "treatment",
        ref: str | None = None,
        a: str | None = None,
        b: str | None = None,
        delta: float = 0.0,
        hdi_prob: float = 0.94,
        fdr_target: float = 0.05,
    ) -> Any:
        """Gene, guide and gene-group contrasts of ``factor`` (a `ContrastResult`).

        Every level against ``ref`` (default: the model's reference level), or ``a``
        against ``b``. ``delta`` is the minimum |LFC| on the log2 scale (as the ``lfc``
        column). See `screenformula.results.contrasts` for every column's meaning.
        """
        from screenformula.results.contrasts import compute_contrasts

        return compute_contrasts(
            self, factor, ref=ref, a=a, b=b, delta=delta, hdi_prob=hdi_prob, fdr_target=fdr_target
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


def load_fit(path: str | os.PathLike) -> ScreenFit:
    """Load a fit written by `ScreenFit.save`, with its data and model rebuilt.

    Raises
    ------
    FitError
        When the file is missing or was not written by screenformula.
    """
    from screenformula.model import ScreenModel

    path = Path(path)
    if not path.exists():
        raise FitError(f"{path}: no such file")
    try:
        tree = xr.open_datatree(path).load()
    except Exception as err:  # netCDF/HDF5 errors come in many types
        raise FitError(f"{path}: cannot read as a saved fit ({err})") from None
    meta_text = tree.attrs.get("screenformula")
    if meta_text is None or DATA_GROUP not in tree.children:
        raise FitError(f"{path}: not a screenformula fit")
    meta = json.loads(meta_text)
    data = screen_data_from_dataset(tree[DATA_GROUP].to_dataset())
    settings = dict(meta["settings"])
    settings["priors"] = {
        k: (Prior(v["name"], **v["args"]) if isinstance(v, dict) else v)
        for k, v in settings.get("priors", {}).items()
    }
    model = ScreenModel(
        settings["formula"],
        data,
        family=settings["family"],
        dispersion=settings["dispersion"],
        pool=settings["pool"],
        priors=settings["priors"],
        lkj_eta=settings["lkj_eta"],
        parameterization=settings["parameterization"],
        reference=settings.get("reference") or None,
    )
    idata = tree.copy()
    del idata[DATA_GROUP]
    fit = ScreenFit(model, idata, meta["method"], meta["options"])
    fit.options["versions_at_fit"] = meta.get("versions", {})
    return fit


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


def screen_data_to_dataset(data: ScreenData) -> xr.Dataset:
    """The screen data as an xarray Dataset (saved inside a fit file)."""
    ds = xr.Dataset(
        {
            "counts": (("sgrna", "sample"), data.counts),
            "gene": ("sgrna", data.genes_of_sgrna.astype(str)),
            "control": ("sgrna", data.controls.astype(np.int8)),
            "size_factor": ("sample", data.size_factors.to_numpy()),
        },
        coords={
            "sgrna": data.sgrnas.astype(str).to_numpy(),
            "sample": data.samples.index.astype(str).to_numpy(),
        },
    )
    columns = []
    for column in data.samples.columns:
        values = data.samples[column]
        if values.dtype == bool:
            ds[f"sheet_{column}"] = ("sample", values.to_numpy().astype(np.int8))
            kind = "bool"
        elif pd.api.types.is_numeric_dtype(values):
            ds[f"sheet_{column}"] = ("sample", values.to_numpy())
            kind = "number"
        else:
            ds[f"sheet_{column}"] = ("sample", values.astype(str).to_numpy())
            kind = "text"
        columns.append([column, kind])
    if data.gene_groups is not None:
        ds["gene_group"] = ("gene_name", data.gene_groups.to_numpy().astype(str))
        ds = ds.assign_coords(gene_name=data.gene_names.astype(str).to_numpy())
    ds.attrs["sheet_columns"] = json.dumps(columns)
    ds.attrs["size_factor_method"] = data.size_factor_method
    ds.attrs["source"] = data.source or ""
    return ds


def screen_data_from_dataset(ds: xr.Dataset) -> ScreenData:
    """Rebuild `ScreenData` from `screen_data_to_dataset`'s output."""
    sheet = pd.DataFrame(index=pd.Index(ds["sample"].values.astype(str), name="sample"))
    for column, kind in json.loads(ds.attrs["sheet_columns"]):
        values = ds[f"sheet_{column}"].values
        sheet[column] = (
            values.astype(bool)
            if kind == "bool"
            else (values if kind == "number" else values.astype(str))
        )
    groups = None
    if "gene_group" in ds:
        groups = pd.Series(ds["gene_group"].values.astype(str), index=ds["gene_name"].values)
    method = ds.attrs.get("size_factor_method", "given")
    return (
        ScreenData(
            ds["counts"].values.astype(np.int64),
            ds["sgrna"].values.astype(str),
            ds["gene"].values.astype(str),
            sheet,
            gene_groups=groups,
            controls=ds["control"].values.astype(bool),
            size_factors=ds["size_factor"].values,
            source=ds.attrs.get("source") or None,
        )
        if method == "given"
        else ScreenData(
            ds["counts"].values.astype(np.int64),
            ds["sgrna"].values.astype(str),
            ds["gene"].values.astype(str),
            sheet,
            gene_groups=groups,
            controls=ds["control"].values.astype(bool),
            size_factors=method,
            source=ds.attrs.get("source") or None,
        )
    )
