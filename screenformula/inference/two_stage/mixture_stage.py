"""Guide states with several effects per gene: the mixture stage 2 over chunks of genes.

`fit_mixture_globals` chooses the chance that a guide fails, a factor on stage 1's gene
slope sds and the guide slope's sd by the marginal likelihood of a random gene subset
(empirical Bayes, as the grid does for one effect); `run_mixture_chunk` gives every gene
of a chunk its draws from the mixture of Laplace approximations (`state_mixture`), a
pure function of the chunk's arrays run by `grid_stage` on an executor.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import optimize, special

from screenformula.inference.two_stage.grid import ChunkDraws, guide_rows, guides_by_count
from screenformula.inference.two_stage.state_mixture import (
    BlockFit,
    laplace_states,
    log_state_prior,
    mixture_draws,
    state_vectors,
)

__all__ = ["MixtureGlobals", "fit_mixture_globals", "gene_blocks", "run_mixture_chunk"]


@dataclass(frozen=True)
class MixtureGlobals:
    """The mixture's hyper-parameters: failing chance, gene-slope sd factor, guide slope sd."""

    pi: float
    scale: float
    sd_d: float

    def to_dict(self) -> dict[str, float]:
        """As a plain dict (a fit's options)."""
        return asdict(self)


def gene_blocks(pieces: Any, rows: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """The guides of the genes of ``rows`` (sorted by gene), grouped by guide count.

    Returns ``(genes, idx)`` pairs: local gene indices and their guides' positions in
    ``rows`` (genes x k), as `grid.guides_by_count`.
    """
    return list(guides_by_count(pieces.gene[rows]).values())


def _fit_group(
    pieces: Any, rows: np.ndarray, idx: np.ndarray, states: str, g: MixtureGlobals, start: Any
) -> tuple[BlockFit, np.ndarray]:
    """Laplace fits of one guide-count group of genes under its state vectors."""
    at = rows[idx]  # genes x k: rows of the screen
    works = state_vectors(idx.shape[1], states)
    fit = laplace_states(
        pieces.counts[at],
        pieces.base[at],
        pieces.weights[at],
        pieces.guide_weight[at],
        pieces.phi[at],
        works,
        pieces.b,
        pieces.cov * g.scale**2,
        pieces.a_mean,
        pieces.a_sd,
        g.sd_d,
        start=start,
    )
    return fit, works


def fit_mixture_globals(
    pieces: Any, rows: np.ndarray, states: str, max_evals: int = 60
) -> tuple[MixtureGlobals, int]:
    """``pi``, the gene-slope sd factor and ``sd_d`` maximising the summed marginal likelihood.

    Nelder-Mead over ``(log scale, log sd_d)`` from stage 1's values; ``pi`` maximised
    within each evaluation (it enters the state vectors' prior only). Newton starts from
    the previous evaluation's modes.
    """
    groups = gene_blocks(pieces, rows)
    starts: dict[int, Any] = {}

    def fits(scale: float, sd_d: float) -> list[tuple[np.ndarray, np.ndarray]]:
        out = []
        for j, (_, idx) in enumerate(groups):
            fit, works = _fit_group(
                pieces, rows, idx, states, MixtureGlobals(0.1, scale, sd_d), starts.get(j)
            )
            starts[j] = fit
            out.append((fit.log_z, works))
        return out

    def best_pi(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[float, float]:
        if states == "none":
            return 0.0, -sum(float(lz[:, 0].sum()) for lz, _ in parts)

        def loss(logit: float) -> float:
            pi = float(special.expit(logit))
            return -sum(
                float(special.logsumexp(lz + log_state_prior(w, pi)[None], axis=1).sum())
                for lz, w in parts
            )

        res = optimize.minimize_scalar(loss, bounds=(-8.0, 3.0), method="bounded")
        return float(special.expit(res.x)), float(res.fun)

    def loss(theta: np.ndarray) -> float:
        scale, sd_d = np.exp(np.clip(theta, np.log(1e-3), np.log(5.0)))
        return best_pi(fits(float(scale), float(sd_d)))[1]

    res = optimize.minimize(
        loss,
        np.array([0.0, np.log(max(pieces.sd_d, 0.02))]),
        method="Nelder-Mead",
        options={"xatol": 1e-2, "fatol": 0.1, "maxfev": max_evals},
    )
    scale, sd_d = np.exp(np.clip(res.x, np.log(1e-3), np.log(5.0)))
    pi, _ = best_pi(fits(float(scale), float(sd_d)))
    return MixtureGlobals(pi, float(scale), float(sd_d)), int(res.nfev)


def run_mixture_chunk(shared: Any, part: Any) -> Any:
    """The mixture stage for one chunk of genes (a pure function of its arrays).

    Returns a `grid.ChunkDraws` whose ``beta`` is draws x genes x L.
    """
    start = time.perf_counter()
    p, g = shared.pieces, shared.globals_
    rows = guide_rows(p.gene, part.genes)
    _, local = np.unique(p.gene[rows], return_inverse=True)
    n_genes, n_l = local.max() + 1, len(p.b)
    rng = np.random.default_rng(part.seed)
    beta = np.empty((shared.draws, n_genes, n_l))
    a = np.empty((shared.draws, len(rows)))
    d = np.empty((shared.draws, len(rows)))
    for genes, idx in gene_blocks(p, rows):
        fit, works = _fit_group(p, rows, idx, shared.states, g, None)
        log_w = fit.log_z + log_state_prior(works, g.pi)[None]
        beta_k, a_k, d_k, _ = mixture_draws(fit, log_w, shared.draws, rng)
        beta[:, genes] = beta_k
        a[:, idx.ravel()] = a_k.reshape(shared.draws, -1)
        d[:, idx.ravel()] = d_k.reshape(shared.draws, -1)
    alpha = a.mean(0) - p.a_mean
    seconds = time.perf_counter() - start
    return ChunkDraws.split_intercepts(
        rows, beta, d, local, alpha, p.gene_int_share, np.zeros(n_genes), seconds
    )
