"""Assemble the PyMC model from a `ModelSpec`: mean, dispersion, likelihoods."""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from screenformula._constants import DIM_POOL_SAMPLE, DIM_SAMPLE, DIM_SGRNA
from screenformula.backend.likelihood import negative_binomial
from screenformula.backend.terms import (
    predictor_tensor,
    prior_variable,
    replicate_scale_tensor,
)
from screenformula.spec.model_spec import ModelSpec
from screenformula.spec.names import (
    B_POOL,
    INTERCEPT,
    OBSERVED,
    OBSERVED_POOL,
    PHI,
    PHI_CLASS_DIM,
    PHI_POOL,
    PHI_RATE,
    PHI_SD,
    PHI_TREND_INTERCEPT,
    PHI_TREND_SLOPE,
    PHI_Z,
    POOL_INTERCEPT,
    POOL_SHIFT,
)


def build_pymc_model(spec: ModelSpec) -> pm.Model:
    """Build the PyMC model of a screen.

    The likelihood is laid out on the guide x screen-sample matrix: per-guide and
    per-sample parts of the linear predictor are computed once and combined by
    broadcasting, and counts are one (n_sgrna, n_samples) observed variable.
    """
    coords = {DIM_SGRNA: list(map(str, spec.data.sgrnas)), DIM_SAMPLE: list(spec.samples)}
    with pm.Model(coords=coords) as model:
        eta, effects = predictor_tensor(spec.mean, spec, scale=replicate_scale_tensor(spec))
        log_mu = eta + spec.log_size_factors[None, :]
        pool = spec.pool
        if pool.mode == "offset":
            log_mu = log_mu + pool.log_abundance
        elif pool.mode == "covariate":
            b_pool = prior_variable(B_POOL, spec.prior(B_POOL))
            log_mu = log_mu + b_pool * pool.log_abundance

        phi = dispersion_tensor(spec)
        if phi is None:
            pm.Poisson(
                OBSERVED, mu=pt.exp(log_mu), observed=spec.counts, dims=(DIM_SGRNA, DIM_SAMPLE)
            )
        else:
            negative_binomial(OBSERVED, log_mu, phi, spec.counts, (DIM_SGRNA, DIM_SAMPLE))

        if pool.mode == "joint":
            add_pool_likelihood(spec, effects)
    return model


def dispersion_tensor(spec: ModelSpec) -> pt.TensorVariable | None:
    """``phi`` broadcastable to (n_sgrna, n_samples), or None for a Poisson family."""
    disp = spec.dispersion
    match disp.mode:
        case "none":
            return None
        case "shared":
            return prior_variable(PHI, spec.prior(PHI))
        case "sgrna":
            rate = prior_variable(PHI_RATE, spec.prior(PHI_RATE))
            return pm.Gamma(PHI, alpha=1.0, beta=rate, dims=DIM_SGRNA)[:, None]
        case "trend":
            return trend_dispersion(spec)
        case "formula":
            log_phi, _ = predictor_tensor(disp.predictor, spec, prefix="alpha_")
            return pt.exp(log_phi)
    raise AssertionError(disp.mode)


def trend_dispersion(spec: ModelSpec) -> pt.TensorVariable:
    """``dispersion="trend"``: a log-linear trend in guide abundance per sample class.

    ``log phi[s, c] = phi_trend_Intercept[c] + phi_trend_slope[c] * x[s]``: every guide
    follows its class's trend (the default, ``guide_scatter`` off). With a prior on
    ``sd_phi`` each guide also deviates from it, ``+ sd_phi[c] * z_phi[s]``,
    ``z_phi ~ Normal(0, 1)``, shrunk by an sd learned from all guides (as DESeq2 and edgeR
    shrink each feature's dispersion toward a mean-dispersion trend); measured on the
    panel, that deviation lets depleted guides pass as noisy ones
    (`screenformula.spec.model_spec.DispersionSpec.guide_scatter`). ``phi`` (guides x
    classes) is stored.
    """
    disp = spec.dispersion
    model = pm.modelcontext(None)
    model.add_coord(PHI_CLASS_DIM, list(disp.class_names))
    intercept = prior_variable(
        PHI_TREND_INTERCEPT, spec.prior(PHI_TREND_INTERCEPT), dims=PHI_CLASS_DIM
    )
    slope = prior_variable(PHI_TREND_SLOPE, spec.prior(PHI_TREND_SLOPE), dims=PHI_CLASS_DIM)
    x = pt.as_tensor_variable(np.asarray(disp.abundance, dtype=float))
    sd = z = None
    if disp.guide_scatter:
        sd = prior_variable(PHI_SD, spec.prior(PHI_SD), dims=PHI_CLASS_DIM)
        z = pm.Normal(PHI_Z, 0.0, 1.0, dims=DIM_SGRNA)
    if len(disp.class_names) == 1:
        # indexed to scalars, so the column is statically broadcastable over samples
        # (lgamma(phi) once per guide)
        log_phi = intercept[0] + slope[0] * x
        if z is not None:
            log_phi = log_phi + sd[0] * z
        log_phi = log_phi[:, None]
    else:
        log_phi = intercept[None, :] + slope[None, :] * x[:, None]
        if z is not None:
            log_phi = log_phi + sd[None, :] * z[:, None]
    phi = pm.Deterministic(PHI, pt.exp(log_phi), dims=(DIM_SGRNA, PHI_CLASS_DIM))
    if len(disp.class_names) == 1:
        return phi
    return phi[:, np.asarray(disp.sample_class)]


def guide_baseline(spec: ModelSpec, effects: dict[str, pt.TensorVariable]) -> pt.TensorVariable:
    """Each guide's varying baseline ``a_s``: the intercept of its sgRNA-level term."""
    for term in spec.groups:
        if term.level == DIM_SGRNA and term.coef_names[0] == "Intercept":
            return effects[term.name][:, 0]
    raise AssertionError("pool='joint' without a guide-level intercept")


def add_pool_likelihood(spec: ModelSpec, effects: dict[str, pt.TensorVariable]) -> None:
    """The pool as a second negative-binomial measurement of each guide's baseline."""
    pool = spec.pool
    model = pm.modelcontext(None)
    model.add_coord(DIM_POOL_SAMPLE, list(pool.samples))
    if INTERCEPT in model.named_vars:
        # sampled relative to the screen intercept: the two move together otherwise
        shift = prior_variable(POOL_SHIFT, spec.prior(POOL_SHIFT))
        intercept = pm.Deterministic(POOL_INTERCEPT, model[INTERCEPT] + shift)
    else:
        intercept = prior_variable(POOL_INTERCEPT, spec.prior(POOL_INTERCEPT))
    phi_pool = prior_variable(PHI_POOL, spec.prior(PHI_POOL))
    log_mu = intercept + guide_baseline(spec, effects)[:, None] + pool.log_size_factors[None, :]
    negative_binomial(
        OBSERVED_POOL, log_mu, phi_pool, np.asarray(pool.counts), (DIM_SGRNA, DIM_POOL_SAMPLE)
    )
