"""``ScreenModel.fit(method=...)``: dispatch to an inference method, return a `ScreenFit`."""

from __future__ import annotations

import time
import warnings
from typing import TYPE_CHECKING, Any

import xarray as xr

from screenformula.backend.model import OBSERVED, OBSERVED_POOL
from screenformula.errors import FitError
from screenformula.inference.approx import APPROX_NOTICE, ApproximateWarning, fit_advi
from screenformula.inference.log_likelihood import add_log_likelihood
from screenformula.inference.nuts import sample_nuts, sgrna_store_default, stored_variables
from screenformula.results.fit import ScreenFit

if TYPE_CHECKING:
    from screenformula.model import ScreenModel

METHODS = ("nuts", "advi", "approx")

#: Compute the pointwise log-likelihood by default only below this many numbers.
LOG_LIKELIHOOD_BUDGET = 50_000_000


def fit_model(
    model: ScreenModel,
    method: str = "nuts",
    *,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    cores: int | None = None,
    random_seed: int | None = None,
    engine: str = "nutpie",
    target_accept: float = 0.8,
    progress: bool = True,
    store_sgrna: bool | str = "auto",
    log_likelihood: bool | str = "auto",
    **kwargs: Any,
) -> ScreenFit:
    """Fit ``model``; see `ScreenModel.fit` for the parameters."""
    pymc_model = model.pymc_model
    if method in ("advi", "approx"):
        chains = 1  # one set of draws from the fitted approximation
    total_draws = draws * chains
    if store_sgrna == "auto":
        store_sgrna = sgrna_store_default(pymc_model, total_draws)
    n_obs = model.spec.counts.size
    if log_likelihood == "auto":
        log_likelihood = bool(store_sgrna) and n_obs * total_draws <= LOG_LIKELIHOOD_BUDGET
    if log_likelihood and not store_sgrna:
        raise FitError("log_likelihood=True needs store_sgrna=True (every draw of every guide)")
    start = time.perf_counter()
    match method:
        case "nuts":
            idata = sample_nuts(
                pymc_model,
                draws=draws,
                tune=tune,
                chains=chains,
                cores=cores,
                random_seed=random_seed,
                engine=engine,
                var_names=stored_variables(pymc_model, bool(store_sgrna)),
                progress=progress,
                target_accept=target_accept,
                **kwargs,
            )
        case "advi" | "approx":
            # "approx" is an alias: mean-field ADVI is the approximate method chosen by
            # measured agreement with NUTS (benchmarks/README.md, "Approximate inference")
            method = "advi"
            idata, vi_stats = fit_advi(
                pymc_model,
                stored_variables(pymc_model, bool(store_sgrna)),
                draws=draws,
                random_seed=random_seed,
                progress=progress,
                **kwargs,
            )
            warnings.warn(APPROX_NOTICE, ApproximateWarning, stacklevel=3)
        case _:
            raise FitError(f"unknown method {method!r}: choose one of {', '.join(METHODS)}")
    elapsed = time.perf_counter() - start
    for name in [n for n in idata.children if n.startswith("warmup")]:
        del idata[name]
    observed = {OBSERVED: pymc_model[OBSERVED]}
    if OBSERVED_POOL in pymc_model.named_vars:
        observed[OBSERVED_POOL] = pymc_model[OBSERVED_POOL]
    idata["observed_data"] = xr.DataTree(
        xr.Dataset(
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
    )
    if log_likelihood:
        add_log_likelihood(idata, pymc_model, list(observed))
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
    }
    if method == "advi":
        options.update(tune=None, engine="pymc.fit", target_accept=None, advi=vi_stats)
    return ScreenFit(model, idata, method, options)
