"""PyMC pieces for the terms of `screenformula.spec.terms` (its mirror, as in Bambi).

Every function here adds variables to the model on the context stack and returns
tensors; nothing is ever laid out per observation or per (row, level) pair.
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from screenformula.spec.model_spec import ModelSpec
from screenformula.spec.names import (
    LOG_SCALE,
    REPLICATE_DIM,
    REPLICATE_SCALE,
    cor_label,
    cor_pairs,
    population_names,
    scale_names,
)
from screenformula.spec.priors import Prior
from screenformula.spec.terms import GroupTerm, LinearPredictor


def prior_variable(name: str, prior: Prior, **kwargs) -> pt.TensorVariable:
    """A PyMC random variable named ``name`` drawn from ``prior``.

    ``Constant`` (brms's ``constant()``) gives its value, with no variable to sample.
    """
    if prior.name == "Constant":
        return pt.constant(float(prior.args["value"]), dtype="float64")
    dist = getattr(pm, prior.name)
    return dist(name, **prior.args, **kwargs)


def level_dim(term: GroupTerm) -> str:
    """The dimension name of a term's levels (``sgrna``, ``gene``, ``group`` or its own)."""
    return term.names.level_dim


def coef_dim(term: GroupTerm) -> str:
    """The dimension name of a term's varying effects."""
    return term.names.coef_dim


def add_term_coords(model: pm.Model, term: GroupTerm) -> None:
    """Register the coordinates a term needs (level coords are shared between terms)."""
    if level_dim(term) not in model.coords:
        model.add_coord(level_dim(term), list(term.level_names))
    model.add_coord(coef_dim(term), list(term.coef_names))
    if term.uses_lkj:
        coefs = list(term.coef_names)
        pairs = cor_pairs(len(coefs))
        model.add_coord(term.names.cor_dim, [cor_label(coefs[i], coefs[j]) for i, j in pairs])


def term_sds(term: GroupTerm, spec: ModelSpec) -> pt.TensorVariable:
    """The sds of a term's effects: one vector variable when the priors agree."""
    names = term.names
    priors = [spec.prior(names.sd_of(c)) for c in term.coef_names]
    if all(p == priors[0] for p in priors):
        return prior_variable(names.sd, priors[0], dims=names.coef_dim)
    parts = [
        prior_variable(names.sd_of(c), p) for c, p in zip(term.coef_names, priors, strict=True)
    ]
    return pm.Deterministic(names.sd, pt.stack(parts), dims=names.coef_dim)


def group_effects(
    term: GroupTerm, spec: ModelSpec, centers: list[pt.TensorVariable | float]
) -> pt.TensorVariable:
    """Add a term's sds, LKJ correlation and effects; return ``r`` (levels x effects).

    ``( ... | g)`` gives correlated effects with an LKJ prior on their correlation,
    ``( ... || g)`` independent ones. A non-centred component is ``sd * z`` (through the
    Cholesky factor ``L`` when correlated). A centred component is sampled as the level's
    *total* effect, ``t ~ Normal(center, sd)``, where ``center`` is the population
    coefficient plus every coarser level's effect for that coefficient, and
    ``r = t - center`` (hierarchical centring: where the counts pin ``t`` down, the sampler
    no longer walks the ridge between a global coefficient and thousands of deviations).
    Any subset of components may be centred: the centred block is drawn from its marginal
    (multivariate normal when correlated) and the non-centred rest conditioned on it
    through ``L``, which gives exactly the same joint distribution.
    """
    sd = term_sds(term, spec)
    levels, coefs = level_dim(term), coef_dim(term)
    n_levels = term.n_levels
    # Student-t effects (gr(..., dist = "student")) as a scale mixture of normals:
    # r_l ~ MvNormal(0, Sigma / w_l), w_l ~ Gamma(df / 2, df / 2)
    scale = df = None
    if term.has_df:
        df = prior_variable(term.names.df, spec.prior(term.names.df))
    if term.dist == "student":
        w = pm.Gamma(term.names.mix, alpha=df / 2, beta=df / 2, dims=levels)
        scale = 1.0 / pt.sqrt(w)
    # gr(..., dist = "student_slopes"): each slope's standardised innovation is Student-t
    # (no per-level weight to sample), the intercepts' normal, correlated through L
    slope_t = term.t_coefs
    centered = np.asarray(term.centered, dtype=bool)
    mu = [pt.as_tensor_variable(c) for c in centers]
    # Centred components first: the LKJ density is exchangeable, so the Cholesky factor
    # can be taken in this order and the correlation permuted back for reporting.
    perm = np.concatenate([np.flatnonzero(centered), np.flatnonzero(~centered)])
    inverse = np.argsort(perm)
    k = int(centered.sum())
    sd_p = sd[perm]
    chol = None
    if term.uses_lkj:
        chol = pm.LKJCorr(term.names.chol, n=term.n_coefs, eta=spec.prior(term.names.cor))
        corr = (chol @ chol.T)[inverse][:, inverse]
        # the pairs only, as brms stores them: the diagonal is always 1, and R-hat / MCSE
        # of a constant divide 0 by 0 (arviz's summary warns)
        rows, cols = np.array(cor_pairs(term.n_coefs), dtype=int).T
        pm.Deterministic(term.names.cor, corr[rows, cols], dims=term.names.cor_dim)
    parts = []  # standardised effects (levels x components), in permuted order
    if k:
        idx = perm[:k]
        center = pt.stack([pt.zeros(n_levels) + mu[q] for q in idx], axis=1)
        raw_name = term.names.raw_centered([term.coef_names[q] for q in idx])
        if chol is not None and k > 1:
            chol_c = chol[:k, :k]
            cov_chol = sd_p[:k, None] * chol_c
            if scale is not None:
                cov_chol = scale[:, None, None] * cov_chol[None, :, :]
            total = pm.MvNormal(raw_name, mu=center, chol=cov_chol, shape=(n_levels, k))
            scaled = (total - center) / sd_p[None, :k]
            parts.append(pt.linalg.solve_triangular(chol_c, scaled.T, lower=True).T)
        else:
            sigma = sd_p[None, :k] if scale is None else scale[:, None] * sd_p[None, :k]
            if slope_t[idx].any():  # centred slopes only (spec.terms refuses a mix)
                total = pm.StudentT(raw_name, nu=df, mu=center, sigma=sigma, shape=(n_levels, k))
            else:
                total = pm.Normal(raw_name, center, sigma, shape=(n_levels, k))
            parts.append((total - center) / sd_p[None, :k])
    if k < term.n_coefs:
        rest = perm[k:]
        shape = (n_levels, term.n_coefs - k)
        heavy = slope_t[rest]
        if heavy.all():
            raw = pm.StudentT(term.names.raw, nu=df, mu=0.0, sigma=1.0, shape=shape)
        elif heavy.any():  # normal intercept beside t slopes, in the columns' order
            light_raw = pm.Normal(term.names.raw, 0.0, 1.0, shape=(n_levels, int((~heavy).sum())))
            heavy_raw = pm.StudentT(
                term.names.raw_t, nu=df, mu=0.0, sigma=1.0, shape=(n_levels, int(heavy.sum()))
            )
            order = np.argsort(np.concatenate([np.flatnonzero(~heavy), np.flatnonzero(heavy)]))
            raw = pt.concatenate([light_raw, heavy_raw], axis=1)[:, order]
        else:
            raw = pm.Normal(term.names.raw, 0.0, 1.0, shape=shape)
        parts.append(raw if scale is None else raw * scale[:, None])
    z = pt.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
    if chol is not None:
        z = z @ chol.T
    effects = (z * sd_p[None, :])[:, inverse]
    return pm.Deterministic(term.names.effects, effects, dims=(levels, coefs))


def replicate_scale_tensor(spec: ModelSpec) -> pt.TensorVariable | None:
    """Each screen sample's effect scale (`spec.replicate_scale`), or None without scales.

    One ``log_scale__<condition>`` zero-sum vector per scaled condition (its replicates),
    and the Deterministic ``replicate_scale`` over the scaled replicates (dimension
    ``replicate``); every other screen sample's factor is 1.
    """
    scales = spec.replicate_scale
    if not scales.active:
        return None
    model = pm.modelcontext(None)
    prior = spec.prior(LOG_SCALE)
    parts = []
    for group in scales.groups:
        name, dim = scale_names(group.label)
        model.add_coord(dim, list(group.names))
        parts.append(prior_variable(name, prior, dims=dim))
    model.add_coord(REPLICATE_DIM, list(scales.names))
    factors = pm.Deterministic(REPLICATE_SCALE, pt.exp(pt.concatenate(parts)), dims=REPLICATE_DIM)
    return pt.set_subtensor(pt.ones(len(spec.samples))[np.asarray(scales.samples)], factors)


def predictor_tensor(
    lp: LinearPredictor,
    spec: ModelSpec,
    *,
    prefix: str = "",
    scale: pt.TensorVariable | None = None,
) -> tuple[pt.TensorVariable, dict[str, pt.TensorVariable]]:
    """Build a linear predictor over the guide x screen-sample matrix.

    ``scale`` (n_screen_samples,) multiplies each sample's treatment part: every
    population-level slope and every gene/guide-level effect whose design differs between
    samples (`replicate_scale_tensor`).

    Returns
    -------
    eta : tensor broadcastable to (n_sgrna, n_screen_samples)
    effects : dict
        ``r`` of each group term, by term name.
    """
    model = pm.modelcontext(None)
    n_samples = len(spec.samples)
    eta = pt.as_tensor_variable(np.zeros((1, n_samples)))
    # per coefficient name, the part of each guide's effect built so far (for centring)
    guide_parts: dict[str, pt.TensorVariable] = {}
    population = population_names(prefix)
    if lp.common.intercept:
        intercept = prior_variable(population.intercept, spec.prior(population.intercept))
        eta = eta + intercept
        guide_parts["Intercept"] = intercept
    if lp.common.names:
        dim = population.b_coef_dim
        model.add_coord(dim, list(lp.common.names))
        priors = [spec.prior(f"{prefix}b_{c}") for c in lp.common.names]
        if all(p == priors[0] for p in priors):
            b = prior_variable(population.b, priors[0], dims=dim)
        else:
            parts = [
                prior_variable(f"{prefix}b_{c}", p)
                for c, p in zip(lp.common.names, priors, strict=True)
            ]
            b = pm.Deterministic(population.b, pt.stack(parts), dims=dim)
        slopes = pt.dot(lp.common.X, b)
        eta = eta + (slopes if scale is None else slopes * scale)[None, :]
        guide_parts.update({c: b[i] for i, c in enumerate(lp.common.names)})
    if lp.common.offset.any():
        eta = eta + lp.common.offset[None, :]
    effects: dict[str, pt.TensorVariable] = {}
    order = {"group": 0, "gene": 1, "sgrna": 2, "sample": 3}
    for term in sorted(lp.groups, key=lambda t: order[t.level]):  # coarse to fine
        add_term_coords(model, term)
        centers: list[pt.TensorVariable | float] = [0.0] * term.n_coefs
        if term.level != "sample":
            first_guide = np.unique(term.index, return_index=True)[1]
            for q, coef in enumerate(term.coef_names):
                if term.centered[q] and coef in guide_parts:
                    part = guide_parts[coef]
                    centers[q] = part[first_guide] if part.ndim else part
        r = group_effects(term, spec, centers)
        effects[term.name] = r
        eta = eta + term_contribution(term, r, scale)
        if term.level != "sample":
            for q, coef in enumerate(term.coef_names):
                guide_parts[coef] = guide_parts.get(coef, 0.0) + r[:, q][term.index]
    return eta, effects


def term_contribution(
    term: GroupTerm, r: pt.TensorVariable, scale: pt.TensorVariable | None = None
) -> pt.TensorVariable:
    """A term's part of the linear predictor, broadcastable to (n_sgrna, n_samples).

    ``scale`` multiplies the columns that differ between samples (not a sample-level term).
    """
    if term.level == "sample":
        return pt.sum(r[term.index] * term.Z, axis=1)[None, :]
    part = 0.0
    varying = np.flatnonzero(term.varying)
    fixed = np.flatnonzero(~term.varying)
    if fixed.size:  # e.g. the intercept: one value per guide, broadcast over samples
        part = part + pt.dot(r[:, fixed], term.Z[0, fixed])[term.index][:, None]
    if varying.size:
        slopes = pt.dot(r[:, varying][term.index], term.Z[:, varying].T)
        part = part + (slopes if scale is None else slopes * scale[None, :])
    return part
