"""``ScreenModel.fit(method=...)``: what every inference method shares, around its runner.

The method itself comes from the registry (`screenformula.inference.registry`); here,
once for all methods: what to keep of the guide-level draws and the log-likelihood, a
scratch folder for draws on disk, the observed data, the kept guide summaries, and the
`ScreenFit`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import xarray as xr
from threadpoolctl import threadpool_limits

from screenformula._constants import DIM_SGRNA
from screenformula.errors import FitError
from screenformula.inference.log_likelihood import add_log_likelihood
from screenformula.inference.nuts import (
    SGRNA_STORE_BUDGET,
    from_zarr,
    sgrna_draw_numbers,
    sgrna_variables,
    stored_variables,
)
from screenformula.inference.registry import METHODS as METHOD_LIST
from screenformula.inference.registry import FitRequest, choose_method, get_method, method_names
from screenformula.results.fit import ScreenFit
from screenformula.results.guide_summary import (
    GUIDE_DELTAS,
    SUMMARY_GROUP,
    compute_guide_summaries,
)
from screenformula.spec.names import OBSERVED, OBSERVED_POOL, PHI

if TYPE_CHECKING:
    from screenformula.model import ScreenModel

#: Every name ``fit(method=...)`` accepts (`screenformula.inference.registry`).
METHODS = tuple(method_names())

#: Compute the pointwise log-likelihood by default only below this many numbers.
LOG_LIKELIHOOD_BUDGET = 50_000_000


def fit_model(
    model: ScreenModel,
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
    """Fit ``model``; see `ScreenModel.fit` for the parameters."""
    if method == "auto":
        chosen, reason = choose_method(
            model.data.n_genes, model.spec.effects_per_gene, model.spec.guide_states
        )
        if progress:
            print(reason, flush=True)
    else:
        chosen, reason = get_method(method), None
    if model.spec.guide_states != "none" and chosen.name != "two-stage":
        raise FitError(
            f"guide_states={model.spec.guide_states!r} is summed on the two-stage engine's "
            f"grid: use method='two-stage' (or 'auto'), not {chosen.name!r}"
        )
    asked = [k for k, v in (("client", client), ("checkpoint", checkpoint)) if v is not None]
    if asked and not chosen.resumable:
        takes = [m.name for m in METHOD_LIST if m.resumable]
        why = f" (method='auto' chose {chosen.name!r})" if reason else ""
        raise FitError(
            f"{' and '.join(k + '=' for k in asked)} apply to method={takes[0]!r} only, not "
            f"{chosen.name!r}{why}"
        )
    method = chosen.name
    pymc_model = model.pymc_model
    if chosen.single_chain:
        chains = 1  # one set of draws from the fitted approximation
    total_draws = draws * chains
    sgrna_numbers = sgrna_draw_numbers(pymc_model, total_draws)
    store_choice = store_sgrna
    if model.spec.guide_states != "none":
        if store_sgrna is True or log_likelihood is True:
            raise FitError(
                "guide states: the grid stage keeps guide summaries, not every guide's raw "
                "draws or the pointwise log-likelihood (store_sgrna / log_likelihood False)"
            )
        store_sgrna = log_likelihood = False
    if store_sgrna == "auto":  # sgrna_store_default, from the count just made
        store_sgrna = sgrna_numbers <= SGRNA_STORE_BUDGET
    n_obs = model.spec.counts.size
    log_lik_choice = log_likelihood
    if log_likelihood == "auto":
        log_likelihood = bool(store_sgrna) and n_obs * total_draws <= LOG_LIKELIHOOD_BUDGET
    if log_likelihood and not store_sgrna:
        raise FitError("log_likelihood=True needs store_sgrna=True (every draw of every guide)")
    var_names = stored_variables(pymc_model, bool(store_sgrna))
    streamed = [] if store_sgrna else summary_variables(pymc_model, model.spec)
    var_names += [name for name in streamed if name not in var_names]
    with _scratch_folder(bool(streamed)) as scratch:
        request = FitRequest(
            draws=draws,
            tune=tune,
            chains=chains,
            cores=cores,
            random_seed=random_seed,
            engine=engine,
            target_accept=target_accept,
            progress=progress,
            var_names=var_names,
            on_disk=tuple(streamed),
            scratch=scratch,
            kwargs=kwargs,
            client=client,
            checkpoint=None if checkpoint is None else os.fspath(checkpoint),
            force=force,
        )
        start = time.perf_counter()
        with threadpool_limits(limits=1, user_api="blas"):
            # one BLAS thread while sampling: the samplers' chains (and two-stage's
            # workers) are the parallelism, and a PyMC (C backend) gradient on a 300-gene
            # screen took 367 ms with OpenBLAS's two threads on this 2-core machine
            # against 0.6 ms with one (nutpie's numba gradients: no change)
            idata, method_options = chosen.run(model, request)
        elapsed = time.perf_counter() - start
        for name in [n for n in idata.children if n.startswith("warmup")]:
            del idata[name]
        from_zarr(idata)
        posterior = idata["posterior"].to_dataset()
        extra = [name for name in posterior.data_vars if name not in var_names]
        if extra:  # a zarr store keeps every variable; keep what was asked for
            idata["posterior"] = xr.DataTree(posterior.drop_vars(extra))
        idata["observed_data"] = xr.DataTree(_observed_data(pymc_model))
        if log_likelihood:
            add_log_likelihood(idata, pymc_model, _observed_names(pymc_model))
        _drop_cholesky_factors(idata, model.spec)
        options = {
            "draws": draws,
            "tune": tune,
            "chains": chains,
            "random_seed": random_seed,
            "engine": engine,
            "target_accept": target_accept,
            "store_sgrna": bool(store_sgrna),
            "log_likelihood": bool(log_likelihood),
            "wall_seconds": round(elapsed, 2),
            "storage": {
                "store_sgrna": _choice(store_choice, store_sgrna),
                "sgrna_draws_bytes": int(sgrna_numbers * 8),
                "sgrna_budget_bytes": int(SGRNA_STORE_BUDGET * 8),
                "log_likelihood": _choice(log_lik_choice, log_likelihood),
                "log_likelihood_bytes": int(n_obs * total_draws * 8),
                "log_likelihood_budget_bytes": int(LOG_LIKELIHOOD_BUDGET * 8),
            },
        }
        options.update(method_options)
        options["approximate"] = chosen.approximate
        if reason is not None:
            options["auto"] = reason
        fit = ScreenFit(model, idata, method, options)
        if streamed:
            summary_start = time.perf_counter()
            deltas = tuple(sorted({*GUIDE_DELTAS, *(float(d) for d in summary_deltas)}))
            summary = compute_guide_summaries(fit, deltas=deltas)
            posterior = idata["posterior"].to_dataset().drop_vars(streamed)
            idata["posterior"] = xr.DataTree(posterior)
            if summary is not None:
                idata[SUMMARY_GROUP] = xr.DataTree(summary)
            fit.options["sgrna_summary_seconds"] = round(time.perf_counter() - summary_start, 2)
        fit.idata = idata.load()  # nothing may still read from the scratch folder
    return fit


def summary_variables(pymc_model: Any, spec: Any) -> list[str]:
    """Guide-level variables the kept guide summaries are computed from.

    ``r_<term>`` of every guide-level term, and the per-guide dispersion ``phi``.
    """
    per_guide = sgrna_variables(pymc_model)
    names = [t.names.effects for t in spec.groups if t.level == DIM_SGRNA]
    names.append(PHI)
    return [name for name in names if name in per_guide]


def _drop_cholesky_factors(idata: Any, spec: Any) -> None:
    """Leave the LKJ Cholesky factors (``L_<term>``) out of the posterior a user gets.

    They are sampled (and the log-likelihood, computed from every free variable, needs
    them), but their entries above the diagonal are always 0 and the first is always 1, on
    which ``az.summary``'s R-hat and MCSE divide 0 by 0 and warn; ``cor_<term>`` holds
    the same correlations, pair by pair.
    """
    predictor = getattr(spec.dispersion, "predictor", None)
    terms = [*spec.groups, *(getattr(predictor, "groups", ()) or ())]
    posterior = idata["posterior"].to_dataset()
    chol = [t.names.chol for t in terms if t.names.chol in posterior.data_vars]
    if chol:
        idata["posterior"] = xr.DataTree(posterior.drop_vars(chol))


def _choice(asked: bool | str, decided: bool) -> str:
    return f"auto: {'yes' if decided else 'no'}" if asked == "auto" else "as asked"


@contextmanager
def _scratch_folder(needed: bool) -> Iterator[str | None]:
    """A temporary folder for draws on disk (``$TMPDIR``), removed afterwards."""
    if not needed:
        yield None
        return
    folder = tempfile.mkdtemp(prefix="screenformula-draws-")
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _observed_names(pymc_model: Any) -> list[str]:
    names = [OBSERVED]
    if OBSERVED_POOL in pymc_model.named_vars:
        names.append(OBSERVED_POOL)
    return names


def _observed_data(pymc_model: Any) -> xr.Dataset:
    observed = {name: pymc_model[name] for name in _observed_names(pymc_model)}
    return xr.Dataset(
        {
            name: (pymc_model.named_vars_to_dims[name], var.data)
            for name, var in ((n, pymc_model.rvs_to_values[v]) for n, v in observed.items())
        },
        coords={
            d: list(pymc_model.coords[d])
            for n in observed
            for d in pymc_model.named_vars_to_dims[n]
        },
    )
