"""Per-gene HMC for the genes whose Laplace proposal is poor.

Genes are independent given the globals, so one vectorised sampler runs a separate chain
per gene: each gene has its own step size (dual averaging in warm-up), its own
accept/reject and its own metric, the inverse of its Laplace precision (the sampler
works in whitened coordinates ``x = mode + T z``). Trajectories are short, of fixed
length with a jittered step size, so no gene waits on a slow tree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from screenformula.inference.two_stage.laplace import LaplaceFit, segsum


@dataclass
class HMCState:
    """Per-gene step sizes carried from one global draw's chain to the next."""

    log_eps: np.ndarray


def hmc_chain(
    density,  # noqa: ANN001 - BlockDensity
    glob: list[np.ndarray],
    fit: LaplaceFit,
    n_draws: int,
    rng: np.random.Generator,
    *,
    n_warmup: int = 100,
    path_length: float = 1.5,
    max_steps: int = 32,
    target_accept: float = 0.8,
    state: HMCState | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], HMCState]:
    """One chain per gene of the density's genes, given one set of globals.

    Returns
    -------
    G, U : (n_draws, n_genes, a), (n_draws, n_sgrna, c)
    stats : dict
        Per gene: ``accept`` (mean acceptance probability over the draws),
        ``divergences`` (energy error above 1000), ``step_size``, ``n_steps``.
    state : HMCState
        Adapted step sizes, to warm-start the next chain.
    """
    f = fit.factor
    M = f.M
    gog = f.gene_of_guide
    n_genes = fit.G.shape[0]

    def position(zG: np.ndarray, zU: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dG, dU = f.transform(zG, zU)
        return fit.G + dG, fit.U + dU

    def potential_grad(zG, zU):  # noqa: ANN001, ANN202
        G, U = position(zG, zU)
        lp, gG, gU = density.logp_grad(glob, G, U)
        tG, tU = f.transpose(gG, gU)
        return -lp, -tG, -tU

    def kinetic(pG, pU):  # noqa: ANN001, ANN202
        return 0.5 * ((pG**2).sum(1) + segsum(M, (pU**2).sum(1)))

    zG = np.zeros_like(fit.G)
    zU = np.zeros_like(fit.U)
    pot, gG, gU = potential_grad(zG, zU)
    log_eps = np.full(n_genes, np.log(0.5)) if state is None else state.log_eps.copy()
    # dual averaging (Hoffman & Gelman 2014), per gene
    mu = np.log(10 * np.exp(log_eps))
    h_bar = np.zeros(n_genes)
    log_eps_bar = np.zeros(n_genes)
    outG = np.empty((n_draws,) + fit.G.shape)
    outU = np.empty((n_draws,) + fit.U.shape)
    acc_sum = np.zeros(n_genes)
    div = np.zeros(n_genes, dtype=np.int64)
    total = n_warmup + n_draws
    for it in range(total):
        eps = np.exp(log_eps) * rng.uniform(0.8, 1.2, n_genes)
        n_steps = np.clip(np.ceil(path_length / eps), 1, max_steps).astype(int)
        pG = rng.standard_normal(zG.shape)
        pU = rng.standard_normal(zU.shape)
        h0 = pot + kinetic(pG, pU)
        qG, qU, rG, rU = zG.copy(), zU.copy(), pG.copy(), pU.copy()
        g_G, g_U, pot_new = gG.copy(), gU.copy(), pot.copy()
        for step in range(int(n_steps.max())):
            live = step < n_steps
            e_g = np.where(live, eps, 0.0)
            e_u = e_g[gog]
            rG -= 0.5 * e_g[:, None] * g_G
            rU -= 0.5 * e_u[:, None] * g_U
            qG += e_g[:, None] * rG
            qU += e_u[:, None] * rU
            pot_new, g_G, g_U = potential_grad(qG, qU)
            rG -= 0.5 * e_g[:, None] * g_G
            rU -= 0.5 * e_u[:, None] * g_U
        h1 = pot_new + kinetic(rG, rU)
        delta = h0 - h1
        delta = np.where(np.isfinite(delta), delta, -np.inf)
        accept_p = np.exp(np.minimum(delta, 0.0))
        take = np.log(rng.random(n_genes)) < delta
        zG = np.where(take[:, None], qG, zG)
        zU = np.where(take[gog, None], qU, zU)
        pot = np.where(take, pot_new, pot)
        gG = np.where(take[:, None], g_G, gG)
        gU = np.where(take[gog, None], g_U, gU)
        if it < n_warmup:
            t = it + 1
            h_bar = (1 - 1 / (t + 10)) * h_bar + (target_accept - accept_p) / (t + 10)
            log_eps = mu - np.sqrt(t) / 0.05 * h_bar
            w = t**-0.75
            log_eps_bar = w * log_eps + (1 - w) * log_eps_bar
            if it == n_warmup - 1:
                log_eps = log_eps_bar
        else:
            d = it - n_warmup
            outG[d], outU[d] = position(zG, zU)
            acc_sum += accept_p
            div += -delta > 1000
    stats = {
        "accept": acc_sum / max(n_draws, 1),
        "divergences": div,
        "step_size": np.exp(log_eps),
        "n_steps": np.clip(np.ceil(path_length / np.exp(log_eps)), 1, max_steps),
    }
    return outG, outU, stats, HMCState(log_eps)
