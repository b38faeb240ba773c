"""Guide states on an exact grid: the NumPy core of the two-stage engine's grid stage 2.

Each guide either works (its effect is its gene's, ``beta``, plus its own deviation) or
fails (its effect is the screen's typical one, ``b0``, plus its deviation), as JACKS's
guide efficacy in two states. A gene whose guides split has a posterior with two modes,
which NUTS's chains and a Laplace proposal do not cross, so each gene's posterior of
``beta`` is computed on a fixed grid instead of sampled, given the global parameters:

1. **Per guide** (`guide_log_lik`): the guide's log-likelihood on the grid of its own
   effect, its intercept integrated out by Laplace's method (a vectorised Newton step;
   the negative binomial's log-likelihood is concave in it).
2. **Per guide** (`StateGrid.convolved`): that likelihood convolved with the guide's
   deviation ``N(0, sd_d)`` by FFT: ``I_s(beta)``.
3. **Per gene** (`StateGrid.log_post`): the gene-slope prior (Student-t or normal, location
   ``b0``, scale ``sd_b``) times the sum over its guides' states of
   ``prod (1 - pi) I_s(beta)`` (working) and ``pi I_s(b0)`` (failing). ``states``:
   ``"none"`` (every guide works), ``"any"`` (each guide on its own) or ``"majority"``
   (at most ``(k - 1) // 2`` of a gene's ``k`` guides fail, summed by dynamic programming
   over the number failing, under the binomial prior truncated there): a gene's effect is
   what most of its guides show, so one outlying guide cannot carry it.

`fit_state_globals` chooses ``b0, sd_b, sd_d, pi`` by the marginal likelihood summed over
genes (empirical Bayes, as stage 1 subsamples genes); `draw_from_grid` samples each
gene's ``beta``. Every function is pure NumPy over a chunk of guides or genes (the
PyDESeq2 pattern); `grid_stage` runs them over the screen. Measured on the panel of real
screens in ``benchmarks/results/guide_states.md`` and docs/DEFAULTS.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize, signal, special

__all__ = [
    "GRID",
    "ChunkDraws",
    "GRID_STEP",
    "STATES",
    "StateGlobals",
    "StateGrid",
    "draw_from_grid",
    "fit_state_globals",
    "guide_log_lik",
    "guide_rows",
    "guides_by_count",
    "interpolate",
]

#: Which guide states are summed (see the module's docstring).
STATES = ("none", "any", "majority")
#: Step of the grid of a guide's or gene's effect (natural log).
GRID_STEP = 0.025
#: The grid: -7.5 to 4 natural log (log2 -10.8 to 5.8), covering every effect measured.
GRID = np.arange(-7.5, 4.0 + GRID_STEP / 2, GRID_STEP)
#: The range `fit_state_globals` keeps the slope prior's and the deviations' sds in (natural log).
SD_RANGE = (1e-3, 3.0)
#: Guides per block of `guide_log_lik` (memory: guides x grid x samples floats).
GUIDE_BLOCK = 2000


def guide_log_lik(
    counts: np.ndarray,
    base: np.ndarray,
    weight: np.ndarray,
    phi: np.ndarray,
    a_mean: float,
    a_sd: float,
    grid: np.ndarray = GRID,
    block: int = GUIDE_BLOCK,
) -> tuple[np.ndarray, np.ndarray]:
    """Each guide's log-likelihood on ``grid``, its intercept integrated by Laplace.

    The model of guide ``s`` in sample ``j``: ``count ~ NB(exp(base + a + weight * beta),
    phi)``, ``a ~ N(a_mean, a_sd)``; terms constant in ``beta`` (the NB's log-gamma terms)
    are dropped.

    Parameters
    ----------
    counts, base, weight, phi : ndarray
        Guides x samples: counts, the log mean's offset (size factors and every fixed
        part but the intercept and the effect), the effect's weight (the design's
        treatment column times the replicate's scale) and the dispersion.
    a_mean, a_sd : float
        The prior of the guide's intercept (the population intercept; the gene- and
        guide-level intercept sds combined).
    grid : ndarray
        Values of ``beta``.

    Returns
    -------
    log_lik : ndarray
        Guides x grid.
    intercept : ndarray
        Guides x grid: the intercept's conditional mode at each grid value.
    """
    n = len(counts)
    out = np.empty((n, len(grid)))
    mode = np.empty((n, len(grid)))
    for lo in range(0, n, block):
        rows = slice(lo, min(lo + block, n))
        y, ph = counts[rows][:, None, :], phi[rows][:, None, :]
        offset = base[rows][:, None, :] + weight[rows][:, None, :] * grid[None, :, None]
        # start: the Poisson maximum of the intercept at each grid value
        a = np.log(y.sum(2) + 0.5) - np.log(np.exp(np.minimum(offset, 30.0)).sum(2))
        for _ in range(50):
            mu = np.exp(np.minimum(offset + a[:, :, None], 30.0))
            grad = ((y - mu) * ph / (mu + ph)).sum(2) - (a - a_mean) / a_sd**2
            curv = -(mu * ph * (y + ph) / (mu + ph) ** 2).sum(2) - 1 / a_sd**2
            step = np.clip(grad / curv, -2.0, 2.0)
            a -= step
            if np.abs(step).max() < 1e-7:
                break
        eta = offset + a[:, :, None]
        mu = np.exp(np.minimum(eta, 30.0))
        log_lik = (ph * (np.log(ph) - np.log(ph + mu)) + y * (eta - np.log(ph + mu))).sum(2)
        curv = (mu * ph * (y + ph) / (mu + ph) ** 2).sum(2) + 1 / a_sd**2
        out[rows] = log_lik - 0.5 * ((a - a_mean) / a_sd) ** 2 - 0.5 * np.log(curv)
        mode[rows] = a
    return out, mode


def guide_rows(gene: np.ndarray, genes: np.ndarray) -> np.ndarray:
    """The rows of the guides of ``genes``, sorted by gene (stably)."""
    rows = np.flatnonzero(np.isin(gene, genes))
    return rows[np.argsort(gene[rows], kind="stable")]


def guides_by_count(gene: np.ndarray) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Genes grouped by their number of guides, from each guide's gene (sorted).

    Returns ``{k: (genes, idx)}``: the genes' indices (in order of first appearance) and
    their guides' positions (genes x k).
    """
    starts = np.r_[0, np.flatnonzero(np.diff(gene)) + 1]
    sizes = np.diff(np.r_[starts, len(gene)])
    return {
        int(k): (np.flatnonzero(sizes == k), starts[sizes == k][:, None] + np.arange(k)[None, :])
        for k in np.unique(sizes)
    }


def interpolate(log_i: np.ndarray, values: np.ndarray, grid: np.ndarray = GRID) -> np.ndarray:
    """``log_i`` (guides x grid) at ``values`` (broadcast to ... x guides), linearly."""
    k = np.clip((values - grid[0]) / (grid[1] - grid[0]), 0, len(grid) - 1.000001)
    k0 = np.floor(k).astype(int)
    w = k - k0
    cols = np.arange(log_i.shape[0])
    return log_i[cols, k0] * (1 - w) + log_i[cols, k0 + 1] * w


@dataclass
class ChunkDraws:
    """One chunk's draws: gene effects and intercepts, guide deviations and intercepts."""

    rows: np.ndarray  # the chunk's guides (rows of the screen), by gene
    beta: np.ndarray  # draws x genes (x effects): each gene's effects
    gene_intercept: np.ndarray  # genes: the gene's intercept deviation (a point value)
    guide_slope: np.ndarray  # draws x guides: each guide's deviation from its gene's effect
    guide_intercept: np.ndarray  # guides: its intercept deviation (a point value)
    edge_mass: np.ndarray  # genes: grid posterior mass within 0.25 of the grid's ends
    seconds: float

    @classmethod
    def split_intercepts(
        cls,
        rows: np.ndarray,
        beta: np.ndarray,
        guide_slope: np.ndarray,
        local: np.ndarray,
        alpha: np.ndarray,
        gene_share: float,
        edge_mass: np.ndarray,
        seconds: float,
    ) -> ChunkDraws:
        """With each guide's intercept deviation ``alpha`` split into its gene's and its own.

        The gene's part is ``gene_share`` (its share of the intercept variance) of its
        guides' mean; ``local`` is each guide's gene within the chunk.
        """
        per_gene = np.bincount(local, weights=alpha) / np.bincount(local)
        gene_intercept = gene_share * per_gene
        return cls(
            rows,
            beta,
            gene_intercept,
            guide_slope,
            alpha - gene_intercept[local],
            edge_mass,
            seconds,
        )


@dataclass(frozen=True)
class StateGlobals:
    """The gene-level sum's parameters.

    The slope prior's location ``b0`` and scale ``sd_b``, the guide deviations' sd
    ``sd_d`` and the chance ``pi`` that a guide fails.
    """

    b0: float
    sd_b: float
    sd_d: float
    pi: float

    def to_dict(self) -> dict[str, float]:
        """As a plain dict (a fit's options)."""
        return {"b0": self.b0, "sd_b": self.sd_b, "sd_d": self.sd_d, "pi": self.pi}


class StateGrid:
    """Every gene's posterior of its effect on the grid, given `StateGlobals`.

    Parameters
    ----------
    gene : ndarray
        Gene code of every guide, sorted (guides of one gene adjacent).
    log_lik : ndarray
        Guides x grid, from `guide_log_lik`.
    states : {"none", "any", "majority"}
    df : float or None
        The gene-slope prior's degrees of freedom (Student-t); None: normal.
    grid : ndarray
    """

    def __init__(
        self,
        gene: np.ndarray,
        log_lik: np.ndarray,
        states: str,
        df: float | None = 3.0,
        grid: np.ndarray = GRID,
    ) -> None:
        if states not in STATES:
            raise ValueError(f"states must be one of {STATES}, not {states!r}")
        if len(gene) and np.any(np.diff(gene) < 0):
            raise ValueError("guides must be sorted by gene")
        self.states, self.df, self.grid = states, df, grid
        self.step = float(grid[1] - grid[0])
        self.starts = np.r_[0, np.flatnonzero(np.diff(gene)) + 1]
        self.n_genes = len(self.starts)
        self.peak = log_lik.max(1, keepdims=True)
        self.lik = np.exp(log_lik - self.peak)
        self._sd_d: float | None = None
        self._log_i = log_lik
        self.groups = guides_by_count(gene)

    def convolved(self, sd_d: float) -> np.ndarray:
        """``log I_s(beta)``: each guide's likelihood convolved with its deviation N(0, sd_d)."""
        if self._sd_d != sd_d:
            n = min(max(1, int(np.ceil(5 * sd_d / self.step))), len(self.grid))
            x = np.arange(-n, n + 1) * self.step / max(sd_d, 1e-6)
            kernel = np.exp(-0.5 * x**2)
            conv = signal.fftconvolve(self.lik, (kernel / kernel.sum())[None, :], "same", axes=1)
            self._log_i = np.log(np.maximum(conv, 1e-300)) + self.peak
            self._sd_d = sd_d
        return self._log_i

    def log_prior(self, b0: float, sd_b: float) -> np.ndarray:
        """The gene slope's log prior on the grid, times the grid step."""
        z = (self.grid - b0) / sd_b
        if self.df is None:
            log_density = -0.5 * z**2 - 0.5 * np.log(2 * np.pi)
        else:
            nu = float(self.df)
            log_density = (
                special.gammaln((nu + 1) / 2)
                - special.gammaln(nu / 2)
                - 0.5 * np.log(nu * np.pi)
                - (nu + 1) / 2 * np.log1p(z**2 / nu)
            )
        return log_density - np.log(sd_b) + np.log(self.step)

    def log_post(self, b0: float, sd_b: float, sd_d: float, pi: float) -> np.ndarray:
        """Unnormalised log posterior (genes x grid) whose row sums are the marginal likelihoods."""
        log_i = self.convolved(sd_d)
        prior = self.log_prior(b0, sd_b)
        if self.states == "none" or pi <= 0:
            return np.add.reduceat(log_i, self.starts, axis=0) + prior
        fail = interpolate(log_i, np.full(len(log_i), b0), self.grid)  # I_s(b0)
        if self.states == "any":
            per = np.logaddexp(np.log1p(-pi) + log_i, np.log(pi) + fail[:, None])
            return np.add.reduceat(per, self.starts, axis=0) + prior
        return self._majority(log_i, fail, pi) + prior

    def _majority(self, log_i: np.ndarray, fail: np.ndarray, pi: float) -> np.ndarray:
        """Sum over the states in which at most (k - 1) // 2 of a gene's k guides fail."""
        out = np.empty((self.n_genes, len(self.grid)))
        for k, (genes, idx) in self.groups.items():
            most = (k - 1) // 2
            work = np.log1p(-pi) + log_i[idx]  # genes x k x grid
            fails = np.log(pi) + fail[idx]  # genes x k
            acc = np.full((most + 1, len(genes), len(self.grid)), -np.inf)  # by number failing
            acc[0] = 0.0
            for j in range(k):
                new = acc + work[:, j][None]
                if most:
                    new[1:] = np.logaddexp(new[1:], acc[:-1] + fails[:, j][None, :, None])
                acc = new
            c = np.arange(most + 1)  # the truncated prior's normaliser
            log_norm = special.logsumexp(
                special.gammaln(k + 1)
                - special.gammaln(c + 1)
                - special.gammaln(k - c + 1)
                + c * np.log(pi)
                + (k - c) * np.log1p(-pi)
            )
            out[genes] = special.logsumexp(acc, axis=0) - log_norm
        return out

    def log_marginal(self, globals_: StateGlobals) -> float:
        """The log marginal likelihood summed over genes."""
        return float(special.logsumexp(self.log_post(**globals_.to_dict()), axis=1).sum())


def fit_state_globals(
    grid: StateGrid, start: StateGlobals, fix_pi: float | None = None, max_evals: int = 300
) -> tuple[StateGlobals, int]:
    """``b0, sd_b, sd_d`` and ``pi`` maximising the summed marginal likelihood.

    Nelder-Mead over ``(b0, log sd_b, log sd_d, logit pi)`` from ``start`` (``pi`` from 0.1;
    the sds kept in `SD_RANGE`, ``b0`` a unit inside the grid),
    at most ``max_evals`` evaluations (300: measured on the panel, the calls did not move
    with 800). ``fix_pi`` holds ``pi``; ``states="none"`` has no ``pi``.

    Returns
    -------
    globals : StateGlobals
    evaluations : int
    """
    free_pi = grid.states != "none" and fix_pi is None

    def unpack(theta: np.ndarray) -> StateGlobals:
        pi = float(special.expit(theta[3])) if free_pi else float(fix_pi or 0.0)
        if grid.states == "none":
            pi = 0.0
        b0 = float(np.clip(theta[0], grid.grid[0] + 1, grid.grid[-1] - 1))
        sd_b, sd_d = np.exp(np.clip(theta[1:3], np.log(SD_RANGE[0]), np.log(SD_RANGE[1])))
        return StateGlobals(b0, float(sd_b), float(sd_d), pi)

    def loss(theta: np.ndarray) -> float:
        return -grid.log_marginal(unpack(theta))

    x0 = [start.b0, np.log(start.sd_b), np.log(max(start.sd_d, 0.02))]
    x0 += [special.logit(0.1)] if free_pi else []
    res = optimize.minimize(
        loss,
        np.array(x0),
        method="Nelder-Mead",
        options={"xatol": 1e-3, "fatol": 0.1, "maxfev": max_evals},
    )
    return unpack(res.x), int(res.nfev)


def draw_from_grid(
    log_post: np.ndarray, draws: int, rng: np.random.Generator, grid: np.ndarray = GRID
) -> np.ndarray:
    """Draws (draws x genes) of each gene's effect from its grid posterior.

    Inverse-CDF draws of a grid cell, then uniform within the cell (the posterior read as
    piecewise constant).
    """
    step = float(grid[1] - grid[0])
    post = np.exp(log_post - log_post.max(1, keepdims=True))
    cdf = np.cumsum(post / post.sum(1, keepdims=True), axis=1)
    u = rng.random((len(cdf), draws))
    idx = np.stack([np.searchsorted(c, v) for c, v in zip(cdf, u, strict=True)])
    idx = np.minimum(idx, len(grid) - 1)
    return (grid[idx] + (rng.random(idx.shape) - 0.5) * step).T


def posterior_mean(log_post: np.ndarray, grid: np.ndarray = GRID) -> np.ndarray:
    """Each gene's posterior mean of its effect on the grid."""
    post = np.exp(log_post - log_post.max(1, keepdims=True))
    return (post * grid[None, :]).sum(1) / post.sum(1)
