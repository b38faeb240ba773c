"""Guide states for several effects per gene: one Laplace approximation per state vector.

JACKS's design (one effect per cell line, one guide efficacy shared by every line) has
several effects per gene, which no grid holds. But given which of a gene's guides fail,
the gene's posterior is log-concave (negative-binomial likelihoods are concave in the
log mean, the priors normal), so Laplace's method fits it well. The posterior with
states is then a mixture: one Laplace approximation per allowed state vector (at most
``(k - 1) // 2`` of ``k`` guides failing, and at most `MOST_FAILING` in all), weighted by
its marginal likelihood times the state vector's prior. `laplace_states` fits every
gene's block under every state vector at once (NumPy, the block's "arrowhead" Hessian
solved through its Schur complement); `mixture_draws` samples the mixture.

The block of gene ``g`` under state vector ``works``: its effects ``beta`` (one per line),
each guide's intercept ``a_s`` and deviation ``d_s``, with

``log mu[s,j] = base[s,j] + a_s + sum_l W[s,j,l] (works_s beta_l + (1 - works_s) b_l)
+ wd[s,j] d_s``,

``beta ~ N(b, cov)``, ``a_s ~ N(a_mean, a_sd)``, ``d_s ~ N(0, sd_d)``: a failing guide
shows the screen's typical effect ``b``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy import special

__all__ = ["MOST_FAILING", "BlockFit", "laplace_states", "mixture_draws", "state_vectors"]

#: At most this many failing guides per gene are enumerated (a gene of 7 or more guides
#: would have hundreds of state vectors under the majority rule; 2 keeps 29 for 7 guides).
MOST_FAILING = 2


def state_vectors(k: int, states: str) -> np.ndarray:
    """The allowed state vectors of a gene of ``k`` guides (rows; True: the guide works).

    ``"majority"``: at most ``min((k - 1) // 2, MOST_FAILING)`` failing; ``"any"``: at most
    ``min(k, MOST_FAILING)``; ``"none"``: every guide works.
    """
    most = {"none": 0, "any": k, "majority": (k - 1) // 2}[states]
    most = min(most, MOST_FAILING)
    rows = [np.ones(k, dtype=bool)]
    for m in range(1, most + 1):
        for fails in itertools.combinations(range(k), m):
            row = np.ones(k, dtype=bool)
            row[list(fails)] = False
            rows.append(row)
    return np.array(rows)


def log_state_prior(works: np.ndarray, pi: float) -> np.ndarray:
    """Each state vector's log prior: the binomial, normalised over the vectors given."""
    if pi <= 0:
        return np.where(works.all(1), 0.0, -np.inf)
    m = (~works).sum(1)
    k = works.shape[1]
    log_p = m * np.log(pi) + (k - m) * np.log1p(-pi)
    return log_p - special.logsumexp(log_p)


@dataclass
class BlockFit:
    """Laplace fits of genes x state vectors (leading axes ``G, C``)."""

    beta: np.ndarray  # G, C, L: modes
    a: np.ndarray  # G, C, k
    d: np.ndarray  # G, C, k
    log_z: np.ndarray  # G, C: log marginal likelihood (up to a constant per gene)
    schur: np.ndarray  # G, C, L, L: beta's marginal precision
    xa: np.ndarray  # G, C, k, L: D_s^-1 B_s^T, the a and d rows (conditional means' slopes)
    xd: np.ndarray
    daa: np.ndarray  # G, C, k: each guide's 2 x 2 precision block
    dad: np.ndarray
    ddd: np.ndarray


def laplace_states(
    y: np.ndarray,
    base: np.ndarray,
    W: np.ndarray,
    wd: np.ndarray,
    phi: np.ndarray,
    works: np.ndarray,
    b: np.ndarray,
    cov: np.ndarray,
    a_mean: float,
    a_sd: float,
    sd_d: float,
    start: BlockFit | None = None,
    iterations: int = 40,
) -> BlockFit:
    """Laplace fits of every gene's block under every state vector.

    Parameters
    ----------
    y, base, wd, phi : ndarray
        ``G x k x J``: counts, log-mean offsets, the guide slope's weights, dispersions of
        the ``k`` guides of each of ``G`` genes in ``J`` samples.
    W : ndarray
        ``G x k x J x L``: the gene slopes' weights (design column x replicate scale).
    works : ndarray
        ``C x k`` bool: the state vectors.
    b, cov : ndarray
        The gene slopes' prior mean (``L``) and covariance (``L x L``).
    start : BlockFit, optional
        Modes to start Newton from (a fit with other hyper-parameters).
    """
    G, k, J = y.shape
    L = W.shape[-1]
    C = len(works)
    prec = np.linalg.inv(cov)
    wk = works[None, :, :, None].astype(float)  # 1, C, k, 1
    Weff = W[:, None] * wk[..., None]  # G, C, k, J, L
    fixed = base[:, None] + (1 - wk) * (W @ b)[:, None]  # failing guides show b
    y4, phi4, wd4 = y[:, None], phi[:, None], wd[:, None]
    if start is None:
        beta = np.broadcast_to(b, (G, C, L)).copy()
        mu0 = np.exp(np.minimum(fixed + (Weff @ b), 30.0))
        a = np.log(y4.sum(-1) + 0.5) - np.log(mu0.sum(-1))
        d = np.zeros((G, C, k))
    else:
        beta, a, d = start.beta.copy(), start.a.copy(), start.d.copy()
    for _ in range(iterations):
        eta = _eta(fixed, Weff, wd4, beta, a, d)
        mu = np.exp(np.minimum(eta, 30.0))
        g = (y4 - mu) * phi4 / (mu + phi4)
        h = mu * phi4 * (y4 + phi4) / (mu + phi4) ** 2
        fit = _blocks(Weff, wd4, g, h, beta, a, d, b, prec, a_mean, a_sd, sd_d)
        step_b, step_a, step_d = fit
        beta += np.clip(step_b, -1.0, 1.0)
        a += np.clip(step_a, -1.0, 1.0)
        d += np.clip(step_d, -1.0, 1.0)
        biggest = max(np.abs(step_b).max(), np.abs(step_a).max(), np.abs(step_d).max())
        if biggest < 1e-6:
            break
    eta = _eta(fixed, Weff, wd4, beta, a, d)
    mu = np.exp(np.minimum(eta, 30.0))
    h = mu * phi4 * (y4 + phi4) / (mu + phi4) ** 2
    log_lik = (phi4 * (np.log(phi4) - np.log(phi4 + mu)) + y4 * (eta - np.log(phi4 + mu))).sum(
        (-1, -2)
    )
    schur, xa, xd, daa, dad, ddd, _, _ = _curvature(Weff, wd4, h, prec, a_sd, sd_d)
    dev = beta - b
    log_prior = (
        -0.5 * np.einsum("gcl,lm,gcm->gc", dev, prec, dev)
        - 0.5 * np.linalg.slogdet(cov)[1]
        - 0.5 * L * np.log(2 * np.pi)
        + (-0.5 * ((a - a_mean) / a_sd) ** 2 - np.log(a_sd) - 0.5 * np.log(2 * np.pi)).sum(-1)
        + (-0.5 * (d / sd_d) ** 2 - np.log(sd_d) - 0.5 * np.log(2 * np.pi)).sum(-1)
    )
    log_det = np.linalg.slogdet(schur)[1] + np.log(daa * ddd - dad**2).sum(-1)
    log_z = log_lik + log_prior + 0.5 * (L + 2 * k) * np.log(2 * np.pi) - 0.5 * log_det
    return BlockFit(beta, a, d, log_z, schur, xa, xd, daa, dad, ddd)


def _eta(fixed, Weff, wd4, beta, a, d):  # noqa: ANN001, ANN202
    """Every block's log means (G x C x k x J) at ``beta``, ``a``, ``d``."""
    return fixed + a[..., None] + (Weff @ beta[:, :, None, :, None])[..., 0] + wd4 * d[..., None]


def _curvature(Weff, wd4, h, prec, a_sd, sd_d):  # noqa: ANN001, ANN202
    """The block Hessian's parts: beta's Schur complement and each guide's 2 x 2 block."""
    hbb = np.einsum("gckjl,gckj,gckjm->gclm", Weff, h, Weff) + prec
    ba = np.einsum("gckjl,gckj->gckl", Weff, h)
    bd = np.einsum("gckjl,gckj->gckl", Weff, h * wd4)
    daa = h.sum(-1) + 1 / a_sd**2
    dad = (h * wd4).sum(-1)
    ddd = (h * wd4**2).sum(-1) + 1 / sd_d**2
    det = daa * ddd - dad**2
    xa = (ddd[..., None] * ba - dad[..., None] * bd) / det[..., None]
    xd = (-dad[..., None] * ba + daa[..., None] * bd) / det[..., None]
    schur = hbb - np.einsum("gckl,gckm->gclm", ba, xa) - np.einsum("gckl,gckm->gclm", bd, xd)
    return schur, xa, xd, daa, dad, ddd, ba, bd


def _blocks(Weff, wd4, g, h, beta, a, d, b, prec, a_mean, a_sd, sd_d):  # noqa: ANN001, ANN202
    """One Newton step of every block: (beta, a, d) steps."""
    schur, xa, xd, daa, dad, ddd, ba, bd = _curvature(Weff, wd4, h, prec, a_sd, sd_d)
    grad_b = np.einsum("gckjl,gckj->gcl", Weff, g) - (beta - b) @ prec
    grad_a = g.sum(-1) - (a - a_mean) / a_sd**2
    grad_d = (g * wd4).sum(-1) - d / sd_d**2
    rhs = grad_b - np.einsum("gckl,gck->gcl", xa, grad_a) - np.einsum("gckl,gck->gcl", xd, grad_d)
    step_b = np.linalg.solve(schur, rhs[..., None])[..., 0]
    ga = grad_a - np.einsum("gckl,gcl->gck", ba, step_b)
    gd = grad_d - np.einsum("gckl,gcl->gck", bd, step_b)
    det = daa * ddd - dad**2
    return step_b, (ddd * ga - dad * gd) / det, (-dad * ga + daa * gd) / det


def mixture_draws(
    fit: BlockFit, log_weights: np.ndarray, draws: int, rng: np.random.Generator, block: int = 100
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Draws of the mixture: a state vector by its weight, then the block from its Laplace fit.

    Returns ``beta`` (draws x G x L), ``a`` and ``d`` (draws x G x k), and the state vector
    index of every draw (draws x G). ``block`` draws at a time bound the memory.
    """
    G, C, L = fit.beta.shape
    k = fit.a.shape[-1]
    w = np.exp(log_weights - log_weights.max(1, keepdims=True))
    cdf = np.cumsum(w / w.sum(1, keepdims=True), axis=1)
    pick = (rng.random((draws, G))[..., None] > cdf[None]).sum(-1).clip(0, C - 1)
    chol = np.linalg.cholesky(fit.schur)  # precision = chol chol^T
    beta = np.empty((draws, G, L))
    a = np.empty((draws, G, k))
    d = np.empty((draws, G, k))
    gi = np.arange(G)[None, :]
    for lo in range(0, draws, block):
        p = pick[lo : lo + block]
        z = rng.standard_normal((len(p), G, L))
        # N(0, schur^-1): solve chol^T x = z
        dev = np.linalg.solve(np.swapaxes(chol[gi, p], -1, -2), z[..., None])[..., 0]
        beta[lo : lo + block] = fit.beta[gi, p] + dev
        # each guide given beta: its mean moves by -D^-1 B^T (beta - mode), covariance D^-1
        shift_a = np.einsum("ngkl,ngl->ngk", fit.xa[gi, p], dev)
        shift_d = np.einsum("ngkl,ngl->ngk", fit.xd[gi, p], dev)
        daa, dad, ddd = fit.daa[gi, p], fit.dad[gi, p], fit.ddd[gi, p]
        det = daa * ddd - dad**2
        var_a, cov_ad, var_d = ddd / det, -dad / det, daa / det
        u1, u2 = rng.standard_normal((2, *var_a.shape))
        root_a = np.sqrt(var_a)
        a[lo : lo + block] = fit.a[gi, p] - shift_a + root_a * u1
        d[lo : lo + block] = (
            fit.d[gi, p]
            - shift_d
            + cov_ad / root_a * u1
            + np.sqrt(np.maximum(var_d - cov_ad**2 / var_a, 0)) * u2
        )
    return beta, a, d, pick
