"""Draws of the model's predictions and pointwise log-likelihood, from the posterior.

brms's ``posterior_epred`` (the expected count ``mu`` of every observation),
``posterior_predict`` (new counts drawn from the negative binomial) and ``loo`` /
``loo_compare`` (PSIS-LOO by arviz), computed with NumPy from the posterior draws: the
linear predictor is rebuilt as the backend builds it (`screenformula.backend.model`):

    log mu[s, j] = Intercept + X[j] b + offset[j] + sum over terms of Z[j] r[level(s)]
                   + log L_j  (+ the pool offset or covariate)
    y[s, j] ~ NB(mu[s, j], phi[s, j])              Var = mu + mu^2 / phi

An observation is one guide ``s`` in one screen sample ``j``; predictions are
``xarray.DataArray`` objects with dims ``(draw, sgrna, sample)``, brms's draws x
observations matrix being ``.values.reshape(ndraws, -1)``. Draws x observations can be
large for a genome-wide screen, so by default at most `MAX_CELLS` values are made (fewer
draws, evenly spaced over chains); ``ndraws`` or ``draw_ids`` choose them as in brms.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr
from scipy.special import gammaln

from screenformula._constants import DIM_POOL_SAMPLE, DIM_SAMPLE, DIM_SGRNA
from screenformula.errors import FitError
from screenformula.results.draws import flatten_draws
from screenformula.spec import names

if TYPE_CHECKING:
    from screenformula.results.fit import ScreenFit
    from screenformula.spec.terms import LinearPredictor

__all__ = [
    "MAX_CELLS",
    "choose_draws",
    "log_likelihood",
    "log_mu_draws",
    "loo",
    "loo_compare",
    "nb_logpmf",
    "phi_draws",
    "posterior_epred",
    "posterior_predict",
]

#: Default cap on draws x observations of a prediction (160 MB of float64).
MAX_CELLS = 20_000_000
#: As the backend's predictive draws: log mu clipped here before exp.
MAX_LOG_MU = 35.0
DRAW = "draw"


def n_total_draws(fit: ScreenFit) -> int:
    """Number of posterior draws (chains x draws)."""
    post = fit.posterior
    return int(post.sizes.get("chain", 1) * post.sizes["draw"])


def choose_draws(
    fit: ScreenFit, ndraws: int | None = None, draw_ids: Sequence[int] | None = None
) -> np.ndarray:
    """Indices into the chain-stacked draws: ``draw_ids``, else ``ndraws`` evenly spaced.

    Without either, every draw when draws x observations stays under `MAX_CELLS`,
    else as many as fit in it.
    """
    total = n_total_draws(fit)
    if draw_ids is not None:
        ids = np.asarray(draw_ids, dtype=np.int64).ravel()
        if ids.size == 0 or ids.min() < 0 or ids.max() >= total:
            raise FitError(f"draw_ids must lie in 0..{total - 1}")
        return ids
    if ndraws is None:
        n_obs = max(1, int(fit.model.spec.counts.size))
        ndraws = max(1, min(total, MAX_CELLS // n_obs))
    ndraws = int(ndraws)
    if not 1 <= ndraws <= total:
        raise FitError(f"ndraws must be between 1 and {total} (the posterior's draws)")
    return np.unique(np.linspace(0, total - 1, ndraws).round().astype(np.int64))


def _take(post: xr.Dataset, name: str, idx: np.ndarray) -> np.ndarray:
    if name not in post:
        raise FitError(
            f"posterior variable {name} was not stored in this fit, so predictions cannot be "
            "made from it (guide-level draws are dropped for genome-scale libraries: refit "
            "with store_sgrna=True)"
        )
    return flatten_draws(post[name])[idx]


def predictor_draws(
    post: xr.Dataset,
    lp: LinearPredictor,
    idx: np.ndarray,
    n_sgrna: int,
    prefix: str = "",
    scale: np.ndarray | None = None,
) -> np.ndarray:
    """One linear predictor per draw: (draws, guides or 1, samples).

    ``scale`` (draws, samples; `scale_draws`) multiplies each sample's treatment part, as
    the model's replicate scales do (`backend.terms.predictor_tensor`).
    """
    common = lp.common
    pop = names.population_names(prefix)
    k, n_samples = idx.size, common.X.shape[0]
    scale = np.ones((k, n_samples)) if scale is None else scale
    eta = np.zeros((k, 1, n_samples))
    if common.intercept:
        eta += _take(post, pop.intercept, idx)[:, None, None]
    if common.names:
        eta += ((_take(post, pop.b, idx) @ common.X.T) * scale)[:, None, :]
    eta += common.offset[None, None, :]
    for term in lp.groups:
        r = _take(post, term.names.effects, idx)  # (draws, levels, coefs)
        if term.level == "sample":
            eta += np.einsum("kjc,jc->kj", r[:, term.index, :], term.Z)[:, None, :]
        else:
            if eta.shape[1] == 1:
                eta = np.repeat(eta, n_sgrna, axis=1)
            varying = term.varying
            eta += r[:, term.index][..., ~varying] @ term.Z[:, ~varying].T
            eta += (r[:, term.index][..., varying] @ term.Z[:, varying].T) * scale[:, None, :]
    return eta


def scale_draws(fit: ScreenFit, idx: np.ndarray) -> np.ndarray | None:
    """Every screen sample's replicate scale per draw (draws, samples), or None without."""
    scales = fit.model.spec.replicate_scale
    if not scales.active:
        return None
    factors = _take(fit.posterior, names.REPLICATE_SCALE, idx)
    return scales.full(factors, len(fit.model.spec.samples))


def log_mu_draws(fit: ScreenFit, idx: np.ndarray) -> np.ndarray:
    """``log mu`` of every screen count, (draws, guides, screen samples)."""
    spec = fit.model.spec
    post = fit.posterior
    n_sgrna = spec.data.n_sgrnas
    log_mu = predictor_draws(post, spec.mean, idx, n_sgrna, scale=scale_draws(fit, idx))
    log_mu = log_mu + spec.log_size_factors[None, None, :]
    if spec.pool.mode == "offset":
        log_mu = log_mu + spec.pool.log_abundance[None]
    elif spec.pool.mode == "covariate":
        b_pool = _take(post, names.B_POOL, idx)
        log_mu = log_mu + b_pool[:, None, None] * spec.pool.log_abundance[None]
    return np.broadcast_to(log_mu, (idx.size, n_sgrna, len(spec.samples)))


def phi_draws(fit: ScreenFit, idx: np.ndarray) -> np.ndarray | None:
    """The dispersion of every screen count, broadcastable to (draws, guides, samples).

    None for a Poisson family.
    """
    spec = fit.model.spec
    post = fit.posterior
    disp = spec.dispersion
    match disp.mode:
        case "none":
            return None
        case "shared":
            return _take(post, names.PHI, idx)[:, None, None]
        case "sgrna":
            return _take(post, names.PHI, idx)[:, :, None]
        case "trend":
            phi = _take(post, names.PHI, idx)  # (draws, guides, classes)
            return phi[:, :, np.asarray(disp.sample_class)]
        case "formula":
            eta = predictor_draws(post, disp.predictor, idx, spec.data.n_sgrnas, "alpha_")
            return np.exp(eta)
    raise AssertionError(disp.mode)


def _as_array(fit: ScreenFit, values: np.ndarray, idx: np.ndarray, name: str) -> xr.DataArray:
    spec = fit.model.spec
    return xr.DataArray(
        values,
        dims=(DRAW, DIM_SGRNA, DIM_SAMPLE),
        coords={
            DRAW: idx,
            DIM_SGRNA: [str(s) for s in spec.data.sgrnas],
            DIM_SAMPLE: list(spec.samples),
        },
        name=name,
    )


def posterior_epred(
    fit: ScreenFit, ndraws: int | None = None, draw_ids: Sequence[int] | None = None
) -> xr.DataArray:
    """Draws of the expected count ``mu`` of every screen count (brms's ``posterior_epred``).

    Returns a (draw, sgrna, sample) DataArray; ``draw`` holds the indices of the chosen
    draws in the chain-stacked posterior (`choose_draws`). Every group-level effect is
    included (brms's default ``re_formula = NULL``).
    """
    idx = choose_draws(fit, ndraws, draw_ids)
    mu = np.exp(np.minimum(log_mu_draws(fit, idx), MAX_LOG_MU))
    return _as_array(fit, mu, idx, "epred")


def posterior_predict(
    fit: ScreenFit,
    ndraws: int | None = None,
    draw_ids: Sequence[int] | None = None,
    seed: int | np.random.Generator | None = None,
) -> xr.DataArray:
    """New counts drawn from the fitted model (brms's ``posterior_predict``).

    One negative-binomial (gamma-Poisson) count per draw and observation, at that draw's
    ``mu`` and ``phi``; dims as `posterior_epred`.
    """
    rng = np.random.default_rng(seed)
    idx = choose_draws(fit, ndraws, draw_ids)
    mu = np.exp(np.minimum(log_mu_draws(fit, idx), MAX_LOG_MU))
    phi = phi_draws(fit, idx)
    if phi is None:
        counts = rng.poisson(mu)
    else:
        phi = np.clip(np.broadcast_to(phi, mu.shape), 1e-8, 1e12)
        counts = rng.poisson(np.minimum(rng.gamma(phi, mu / phi), 1e15))
    return _as_array(fit, counts.astype(np.int64), idx, "predict")


def nb_logpmf(y: np.ndarray, log_mu: np.ndarray, phi: np.ndarray | None) -> np.ndarray:
    """Negative-binomial (or, with ``phi`` None, Poisson) log-probability of counts ``y``."""
    y = np.asarray(y, dtype=float)
    if phi is None:
        return y * log_mu - np.exp(log_mu) - gammaln(y + 1)
    log_phi = np.log(phi)
    log_total = np.logaddexp(log_mu, log_phi)
    return (
        gammaln(y + phi)
        - gammaln(phi)
        - gammaln(y + 1)
        + phi * (log_phi - log_total)
        + y * (log_mu - log_total)
    )


def log_likelihood(fit: ScreenFit, draw_ids: Sequence[int] | None = None) -> xr.Dataset:
    """Pointwise log-likelihood of the screen counts (and pool counts), from the posterior.

    What the inference step stores as ``fit.idata["log_likelihood"]`` (variables
    ``count``, dims (chain, draw, sgrna, sample), and ``pool_count`` for
    ``pool="joint"``), computed with NumPy for fits that did not store it. All draws
    unless ``draw_ids`` are given (then a ``draw`` dimension of those indices).
    """
    spec = fit.model.spec
    post = fit.posterior
    n_chain, n_draw = post.sizes.get("chain", 1), post.sizes["draw"]
    idx = np.arange(n_chain * n_draw) if draw_ids is None else choose_draws(fit, None, draw_ids)
    out: dict[str, Any] = {}
    chunk = max(1, MAX_CELLS // max(1, int(spec.counts.size)))
    count = np.empty((idx.size, *spec.counts.shape))
    for i0 in range(0, idx.size, chunk):
        part = idx[i0 : i0 + chunk]
        count[i0 : i0 + chunk] = nb_logpmf(
            spec.counts[None], log_mu_draws(fit, part), phi_draws(fit, part)
        )
    coords: dict[str, Any] = {
        DIM_SGRNA: [str(s) for s in spec.data.sgrnas],
        DIM_SAMPLE: list(spec.samples),
    }
    arrays = {names.OBSERVED: count}
    if spec.pool.mode == "joint":
        arrays[names.OBSERVED_POOL] = _pool_log_likelihood(fit, idx)
        coords[DIM_POOL_SAMPLE] = list(spec.pool.samples)
    dims = {
        names.OBSERVED: (DIM_SGRNA, DIM_SAMPLE),
        names.OBSERVED_POOL: (DIM_SGRNA, DIM_POOL_SAMPLE),
    }
    if draw_ids is None:
        for name, arr in arrays.items():
            shaped = arr.reshape(n_chain, n_draw, *arr.shape[1:])
            out[name] = (("chain", "draw", *dims[name]), shaped)
        coords.update({"chain": post["chain"].values, "draw": post["draw"].values})
    else:
        for name, arr in arrays.items():
            out[name] = ((DRAW, *dims[name]), arr)
        coords[DRAW] = idx
    return xr.Dataset(out, coords=coords)


def _pool_log_likelihood(fit: ScreenFit, idx: np.ndarray) -> np.ndarray:
    """Log-likelihood of the pool counts under ``pool="joint"`` (draws, guides, pools)."""
    spec = fit.model.spec
    post = fit.posterior
    pool = spec.pool
    guide = next(t for t in spec.groups if t.level == DIM_SGRNA and t.coef_names[0] == "Intercept")
    baseline = _take(post, guide.names.effects, idx)[:, :, 0]
    log_mu = (
        _take(post, names.POOL_INTERCEPT, idx)[:, None, None]
        + baseline[:, :, None]
        + pool.log_size_factors[None, None, :]
    )
    phi = _take(post, names.PHI_POOL, idx)[:, None, None]
    return nb_logpmf(np.asarray(pool.counts)[None], log_mu, phi)


def _with_log_likelihood(fit: ScreenFit) -> xr.DataTree:
    """``fit.idata``, with a NumPy-computed ``log_likelihood`` group when it has none."""
    tree = fit.idata
    if "log_likelihood" in tree.children:
        return tree
    groups = {g: tree[g].to_dataset() for g in tree.children}
    groups["log_likelihood"] = log_likelihood(fit)
    return xr.DataTree.from_dict(groups)


def loo(fit: ScreenFit, var_name: str = names.OBSERVED, pointwise: bool = False) -> Any:
    """PSIS-LOO of the screen counts (brms's ``loo``), via arviz's ``loo``.

    Uses the fit's stored pointwise log-likelihood, or computes it (`log_likelihood`)
    when the fit did not keep one; ``var_name="pool_count"`` scores the pool counts of a
    ``pool="joint"`` fit instead. Returns arviz's ``ELPDData`` (``elpd``, ``se``, ``p``,
    Pareto k per observation with ``pointwise=True``).
    """
    import arviz_stats

    tree = _with_log_likelihood(fit)
    if var_name not in tree["log_likelihood"]:
        raise FitError(
            f"no log-likelihood {var_name!r}; this fit has "
            f"{', '.join(tree['log_likelihood'].data_vars)}"
        )
    return arviz_stats.loo(tree, pointwise=pointwise, var_name=var_name)


def loo_compare(
    fits: dict[str, ScreenFit] | Sequence[ScreenFit], var_name: str = names.OBSERVED
) -> pd.DataFrame:
    """Compare fits by PSIS-LOO (brms's ``loo_compare``), via arviz's ``compare``.

    ``fits`` is ``{name: fit}`` or a list (named ``fit1``, ``fit2``, ...). Returns arviz's
    table (best model first) with brms's ``elpd_diff`` and ``se_diff`` columns: the
    difference from the best model (0 for it; negative for the others) and its standard
    error.
    """
    import arviz_stats

    named = dict(fits) if isinstance(fits, dict) else {f"fit{i + 1}": f for i, f in enumerate(fits)}
    if len(named) < 2:
        raise FitError("loo_compare needs at least two fits")
    table = arviz_stats.compare(
        {name: loo(fit, var_name, pointwise=True) for name, fit in named.items()},
        round_to="none",
    )
    table["elpd_diff"] = table["elpd"] - table["elpd"].max()
    table["se_diff"] = table["dse"]
    return table
