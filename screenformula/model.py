"""`ScreenModel`: the user-facing model class (the compute lives in spec/ and backend/)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
import xarray as xr

from screenformula.errors import FitError
from screenformula.io.dataset import screen_data_from_dataset
from screenformula.io.screen_data import ScreenData
from screenformula.results.fit import DATA_GROUP, ScreenFit
from screenformula.spec.guide_states import grid_shape
from screenformula.spec.model_spec import ModelSpec, PoolMode, build_spec
from screenformula.spec.replicate_scale import DEFAULT_REPLICATE_SCALE
from screenformula.spec.settings import ModelSettings


class ScreenModel:
    """A Bayesian hierarchical model of a pooled CRISPR screen from a brms-style formula.

    Parameters
    ----------
    formula : str
        brms-style, e.g.
        ``"count ~ 1 + treatment + (1 + treatment | gene) + (1 + treatment | gene:sgrna)"``.
        ``( ... | g)`` gives LKJ-correlated varying effects, ``( ... || g)`` independent
        ones; ``g`` may be ``gene``, ``sgrna``, ``group``, a nesting such as ``gene/sgrna``
        or ``group/gene/sgrna``, or a sample-sheet column. Population-level terms and
        ``offset(...)`` use sample-sheet columns. Size factors enter as an offset
        automatically.
    data : ScreenData
        The screen (see `read_counts` and `simulate_screen`).
    family : {"negativebinomial", "poisson"}
        The count family. Negative binomial: ``Var = mu + mu^2 / phi``.
    dispersion : str, default "trend"
        ``"trend"`` (``log phi`` linear in each guide's log abundance per sample class,
        guides shrunk toward the trend; chosen on the panel of real screens in
        ``benchmarks/results/panel.md``), ``"sgrna"`` (``phi[s] ~ Gamma(1, phi_rate)``,
        partially pooled: the default until the panel), ``"trend-sample"`` (the same
        with one trend per sequenced sample instead of per condition, as Chronos fits one
        dispersion per replicate: for replicates of unequal noise, such as a bottlenecked
        one), ``"shared"`` (one ``phi``) or a formula for ``log phi`` such as
        ``"alpha ~ 1 + (1 | sgrna)"``.
    replicate_scale : {"condition", "none"}, default "condition"
        ``"condition"`` gives every replicate of a condition with two or more samples its
        own factor on the treatment effects (its selection strength: replicates often
        differ in doublings), ``log s ~ ZeroSumNormal(0.5)`` within the condition (prior
        key ``"log_scale"``), so the effect reported is the replicates' geometric mean's
        (`screenformula.spec.replicate_scale`); chosen on the panel of real screens
        (``benchmarks/results/panel.md``). ``"none"``: one effect for every replicate (the
        seed's model).
    pool : {"auto", "joint", "offset", "covariate", None}
        How the pool (plasmid / T0) samples enter (docs/MODEL.md). ``"auto"`` is ``"joint"``
        when the sheet marks pool samples and the formula has a guide-level term, else
        None. With None, pool samples, if any, are ordinary samples of the formula.
    priors : dict, optional
        brms-like keys: ``"Intercept"``, ``"b"`` (all slopes), ``"b_<coef>"``, ``"sd"``,
        ``"sd_<term>"``, ``"sd_<term>__<coef>"``, ``"cor"``/``"cor_<term>"`` (an LKJ eta),
        ``"phi"``, ``"phi_rate"``, ``"alpha_Intercept"``, ``"pool_Intercept"``,
        ``"phi_pool"``, ``"b_pool"``, ``"log_scale"``. Values are `Prior` (or
        ``bambi.Prior``) objects.
    lkj_eta : float
        Default LKJ shape of every correlated term (3, the seed's choice; brms uses 1).
    parameterization : "auto", bool or dict
        Centred (True) or non-centred (False) varying effects, globally or per term
        name, or per term a list of the effects to centre. ``"auto"`` centres the
        guide-level intercept and the gene-level slopes (well identified by the counts),
        and the guide-level slopes where the counts identify them too (each guide's
        sampling variance of a slope below a quarter of the scatter of a gene's guides,
        `screenformula.spec.identification`), and keeps the rest non-centred, as
        measured in ``benchmarks/``. ``print(model)`` shows the choice.
    reference : dict, optional
        Reference level per sample-sheet column, e.g. ``{"condition": "initial"}``.
        Without it, ``control`` (or a synonym, or a pool label such as ``T0``) is the
        reference when present, else the first level in sorted order.
    guide_states : {"none", "majority", "any"}, default "none"
        Guides that work or fail (`screenformula.spec.guide_states`): ``"majority"`` lets
        at most ``(k - 1) // 2`` of a gene's ``k`` guides fail (a failing guide shows the
        screen's typical effect, not its gene's), so one outlying guide cannot carry a
        gene; ``"any"`` lets each fail on its own. The two-stage engine sums the states
        (a gene whose guides split has two modes, which no sampler's chains cross): on
        an exact grid for one treatment effect per gene, by a mixture of Laplace
        approximations for several (JACKS's design).

    Examples
    --------
    >>> data, truth = sf.simulate_screen(n_genes=50, random_seed=1)  # doctest: +SKIP
    >>> model = sf.ScreenModel("count ~ 1 + treatment + (1 + treatment | gene)", data)
    >>> fit = model.fit(draws=500, tune=500, chains=2)  # doctest: +SKIP
    """

    def __init__(
        self,
        formula: str,
        data: ScreenData,
        *,
        family: str = "negativebinomial",
        dispersion: str = "trend",
        replicate_scale: str = DEFAULT_REPLICATE_SCALE,
        pool: PoolMode | str = "auto",
        priors: dict[str, Any] | None = None,
        lkj_eta: float = 3.0,
        parameterization: str | bool | dict[str, str | bool] = "auto",
        reference: dict[str, str] | None = None,
        guide_states: str = "none",
    ) -> None:
        given = ModelSettings(
            formula,
            family=family,
            dispersion=dispersion,
            replicate_scale=replicate_scale,
            pool=pool,
            priors=priors or {},
            lkj_eta=lkj_eta,
            parameterization=parameterization,
            reference=reference or {},
            guide_states=guide_states,
        )
        self.spec: ModelSpec = build_spec(given, data)
        #: The settings as resolved (family name, pool mode): what a saved fit rebuilds from.
        self.settings = given.replace(family=self.spec.family.name, pool=self.spec.pool.mode)
        self._pymc_model = None

    @classmethod
    def from_settings(cls, settings: ModelSettings, data: ScreenData) -> ScreenModel:
        """The model of ``settings`` (e.g. ``ModelSettings.from_dict`` of a saved fit)."""
        return cls(
            settings.formula,
            data,
            **{k: settings[k] for k in ModelSettings.keys() if k != "formula"},
        )

    @property
    def data(self) -> ScreenData:
        """The screen data the model was built on."""
        return self.spec.data

    @property
    def pymc_model(self):  # noqa: ANN201 - pymc type stays inside the backend
        """The PyMC model (built on first use)."""
        if self._pymc_model is None:
            from screenformula.backend.model import build_pymc_model

            self._pymc_model = build_pymc_model(self.spec)
        return self._pymc_model

    def fit(
        self,
        method: str = "auto",
        *,
        draws: int = 1000,
        tune: int = 1000,
        chains: int = 4,
        cores: int | None = None,
        random_seed: int | None = None,
        engine: str = "nutpie",
        target_accept: float | None = None,
        progress: bool = True,
        store_sgrna: bool | str = "auto",
        log_likelihood: bool | str = "auto",
        summary_deltas: tuple[float, ...] = (),
        client: Any = None,
        checkpoint: str | os.PathLike | None = None,
        force: bool = False,
        **kwargs: Any,
    ) -> ScreenFit:
        """Fit the model and return a `ScreenFit`.

        Parameters
        ----------
        method : {"auto", "nuts", "two-stage", "advi", "approx"}
            ``"auto"`` (the default) runs ``"nuts"`` up to 2,000 genes and the two-stage
            engine above that (counted in gene-level effects, 4,000: a model with more
            than a baseline and one slope per gene switches earlier), and prints which
            and why (``fit.options["auto"]``).
            ``"nuts"`` samples the posterior. ``"advi"`` is a fast, *approximate* first
            look: mean-field ADVI (PyMC's ``pm.fit``: Adam, step 0.1 halving every 200
            iterations down to 0.01, stopped when the window-averaged means move less
            than 0.15 variational sds per 100 iterations, at most 10,000; the last
            window's average is kept), then ``draws`` draws from the approximation as one
            chain (``tune``, ``chains``, ``engine`` and ``target_accept`` are unused).
            ``"approx"`` is an alias for the approximate method that measured best
            against NUTS, mean-field ADVI (MAP and Pathfinder collapsed a group sd to
            zero, a dense Laplace approximation does not fit in memory at genome scale;
            ``benchmarks/README.md``, "Approximate inference"). On a simulated 2,000-gene
            screen its gene LFC means correlated 0.998 with NUTS's and it ranked the true
            hits as well (AUC 0.9997 vs 1.000), but its posterior sds were about half of
            NUTS's (median ratio 0.52; the guide-slope sd shrank about 7x), so it called
            about twice as many hits at q = 0.05: use it to rank genes and confirm hits
            with ``"nuts"``. ``parameterization={"sgrna": True}`` (centred guide effects)
            narrows the gap (sd ratio 0.71, 1.5x NUTS's hits) at about 1.8x the time.
            An approximate fit says so (a `UserWarning` at fit time,
            ``fit.approximate``, ``repr(fit)``, ``fit.diagnostics()``). ADVI settings
            (``n``, ``learning_rate``, ``lr_floor``, ``lr_half_life``, ``obj_n_mc``,
            ``tolerance``, ``backend``) go through ``**kwargs``; see
            `screenformula.inference.approx.fit_advi`.
        draws, tune, chains : int
            Draws kept per chain, warm-up draws per chain, number of chains.
        cores : int, optional
            Chains run in parallel (default: one per chain).
        random_seed : int, optional
            Seed for reproducible draws.
        engine : {"nutpie", "pymc", "numpyro"}
            The NUTS implementation: nutpie (numba, the default) or PyMC's own, or
            numpyro through PyMC (needs ``jax`` and ``numpyro``).
        target_accept : float, optional
            NUTS target acceptance; raise it (0.9, 0.95) when there are divergences. The
            default is the method's: 0.8 for ``"nuts"``, 0.9 for the two-stage engine's
            stage 1 (on genome-wide HAP1 one of four fit seeds diverged once at 0.8,
            none at 0.9).
        progress : bool
            Show a progress bar.
        store_sgrna : bool or "auto"
            Keep the draws of guide-level variables. "auto" keeps them unless they would
            take more than about 500 MB (a genome-wide library). When they are not kept,
            they go to a temporary folder (``$TMPDIR``) during the fit and every guide's
            contrast statistics are computed from them there, a block of guides at a
            time, and kept in the fit (``fit.sgrna_summary``): the guide table and
            ``sgrna_summary.txt`` come from those (exact at the deltas and HDI
            probabilities of `screenformula.results.guide_summary`, and at
            ``summary_deltas``).
        log_likelihood : bool or "auto"
            Add the pointwise log-likelihood (for LOO); "auto" adds it when it fits in
            about 400 MB.
        summary_deltas : tuple of float
            More minimum effects (log2) at which guide statistics are kept when the guide
            draws are not (the ``delta`` you will use, if it is not on the default grid).
        client : distributed.Client or str, optional
            ``method="two-stage"``: run stage 2's chunks of genes on this Dask cluster (a
            client, or a scheduler's address ``"tcp://HOST:8786"``). The screen is sent to
            every worker once and each chunk's draws come back as arrays; with the same
            seed they are an in-process fit's draws (bit for bit when no gene is refitted
            by HMC; HMC amplifies the round-off by which a freshly compiled and a
            cache-loaded stage-2 function differ, so HMC-refitted genes can get other,
            equally valid draws). Needs the ``dask`` extra
            (``pip install 'screenformula[dask]'``).
        checkpoint : path, optional
            ``method="two-stage"``: a folder where stage 1's result and every finished
            chunk are kept as they are made. Fitting again with the same data, settings
            and seed after an interruption resumes from them, with the same result as an
            uninterrupted fit; a checkpoint made from other data or settings is refused
            (a `FitError` naming what differs). The folder stays after the fit.
        force : bool
            With ``checkpoint``: start over, removing the checkpoint's files first.
        **kwargs
            Passed to the engine (e.g. ``maxdepth`` for nutpie; `TwoStageConfig`'s
            fields such as ``chunk_genes`` for the two-stage engine).
        """
        from screenformula.inference.fit import fit_model

        return fit_model(
            self,
            method,
            draws=draws,
            tune=tune,
            chains=chains,
            cores=cores,
            random_seed=random_seed,
            engine=engine,
            target_accept=target_accept,
            progress=progress,
            store_sgrna=store_sgrna,
            log_likelihood=log_likelihood,
            summary_deltas=summary_deltas,
            client=client,
            checkpoint=checkpoint,
            force=force,
            **kwargs,
        )

    def sample_prior_predictive(self, draws: int = 500, random_seed: int | None = None) -> Any:
        """Draws from the prior and the prior predictive (an arviz DataTree)."""
        import pymc as pm

        with self.pymc_model:
            return pm.sample_prior_predictive(draws=draws, random_seed=random_seed)

    def prior_summary(self) -> pd.DataFrame:
        """Every prior with its class, coefficient, group and source (brms's ``prior_summary``)."""
        return self.spec.prior_table()

    def __repr__(self) -> str:
        spec = self.spec
        disp = spec.dispersion
        disp_text = {
            "shared": "phi (shared by all guides)",
            "sgrna": "phi[sgrna] ~ Gamma(1, phi_rate) (per guide, partially pooled)",
            "trend": "log phi[sgrna, class] = phi_trend_Intercept + phi_trend_slope * "
            + (
                "log abundance + sd_phi * z_phi[sgrna] (a trend per sample class: "
                + ", ".join(disp.class_names)
                + "; guides shrunk toward it)"
                if disp.guide_scatter
                else "log abundance (a trend per sample class: "
                + ", ".join(disp.class_names)
                + "; followed by every guide: a prior on sd_phi adds each guide's own "
                "scatter)"
            ),
            "formula": f"log phi: {disp.formula}",
            "none": "none (Poisson)",
        }[disp.mode]
        lines = [
            f"Formula: {spec.formula}",
            f" Family: {spec.family.name} (link: log; brms: {spec.family.brms})",
            f" Dispersion: {disp_text}",
            f"   Data: {spec.data.n_sgrnas:,} sgRNAs, {spec.data.n_genes:,} genes, "
            f"{len(spec.samples)} screen samples"
            + (
                f", pool: {spec.pool.mode} ({', '.join(spec.pool.samples)})"
                if spec.pool.mode
                else ", pool: none"
            ),
            "Offsets: log size factors"
            + (", log pool abundance" if spec.pool.mode == "offset" else ""),
        ]
        if spec.pool.n_zero:
            lines.append(
                f"   Note: {spec.pool.n_zero:,} guides have no pool reads"
                + (
                    ": their pool offset rests on the 0.5 pseudo-count"
                    if spec.pool.mode in ("offset", "covariate")
                    else ""
                )
            )
        if spec.pool.mode == "joint":
            lines.append(
                "Pool likelihood: pool_count[s,p] ~ NegativeBinomial(L_p * exp(pool_Intercept "
                "+ a_s), phi_pool), sharing the guide baseline a_s"
            )
        if spec.replicate_scale.active:
            lines.append(
                "Replicate scales: the treatment part of replicate r is x scale[r], "
                "log scale ~ ZeroSumNormal within "
                + "; ".join(
                    f"{g.label} ({', '.join(g.names)})" for g in spec.replicate_scale.groups
                )
            )
        if spec.guide_states != "none":
            lines.append(
                f"Guide states: {spec.guide_states} (each guide works, or fails and shows the "
                "screen's typical effect"
                + (
                    "; at most (k - 1) // 2 of a gene's k guides fail"
                    if spec.guide_states == "majority"
                    else "; each on its own"
                )
                + "), summed by the two-stage engine "
                + (
                    "on an exact grid"
                    if grid_shape(spec).on_grid
                    else "as a mixture of Laplace approximations, one per allowed state vector"
                )
            )
        lines.append("Group terms:")
        for term in spec.groups:
            kind = "correlated (LKJ)" if term.uses_lkj else "independent"
            if term.dist == "student":
                kind += f", Student-t (df: {term.names.df})"
            elif term.dist == "student_slopes":
                kind += f", Student-t slopes (df: {term.names.df}), normal intercepts"
            centred = [c for c, f in zip(term.coef_names, term.centered, strict=True) if f]
            lines.append(
                f"  ({term.expr} {'|' if term.correlated else '||'} {term.factor}): "
                f"{term.n_levels:,} levels x {term.n_coefs} effects, {kind}, name {term.name!r}"
                + (f"; centred: {', '.join(centred)}" if centred else "; non-centred")
            )
        lines.append("Priors:")
        table = self.prior_summary()
        width = max([14, *(len(str(c)) for c in table["class"])])
        for row in table.to_dict("records"):
            where = " ".join(
                text
                for key, text in (
                    ("coef", f"coef={row['coef']}"),
                    ("group", f"group={row['group']}"),
                )
                if row[key]
            )
            lines.append(
                f"  {row['class']:<{width}} {row['prior']:<38} {where:<36} ({row['source']})"
            )
        return "\n".join(lines)


def load_fit(path: str | os.PathLike) -> ScreenFit:
    """Load a fit written by `ScreenFit.save`, with its data and model rebuilt.

    The model is rebuilt from the saved settings (`ModelSettings.from_dict`) and data, so
    a fit saved by an earlier version loads as long as its settings still mean the same.

    Raises
    ------
    FitError
        When the file is missing, was not written by screenformula, or was written by a
        newer one.
    """
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
    try:
        settings = ModelSettings.from_dict(meta["settings"])
    except ValueError as err:
        raise FitError(f"{path}: {err}") from None
    model = ScreenModel.from_settings(settings, data)
    idata = tree.copy()
    del idata[DATA_GROUP]
    fit = ScreenFit(model, idata, meta["method"], meta["options"])
    fit.options["versions_at_fit"] = meta.get("versions", {})
    return fit
