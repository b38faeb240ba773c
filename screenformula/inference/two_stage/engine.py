"""The two-stage engine: `fit_two_stage`, and `run_chunk`, its pure per-chunk stage 2.

Stage 1 samples the global parameters with NUTS on a subsample of genes. Stage 2 gives
every gene's block its posterior given K of those draws: a Laplace fit per gene and
global draw, importance-corrected with Pareto-smoothed weights, and per-gene HMC for the
genes whose pooled k-hat exceeds a threshold. Output draw ``i`` uses global draw
``i mod K`` for every gene, so gene effects and globals stay jointly consistent.

Stage 2 runs over chunks of genes: `run_chunk` takes a `ChunkTask` (the chunk's counts as
a `ScreenData`, the model settings, the K global draws) and returns a `ChunkResult` of
arrays, with no shared state. `run_chunk_part` builds that task on the worker from the
data every chunk shares (`ChunkShared`, sent once) and the chunk's own small part
(`ChunkPart`: its gene codes and seed), so an executor of
`screenformula.inference.executors` (this process, local processes, a Dask cluster) runs
the chunks without shipping the screen once per chunk.

With a checkpoint folder (`screenformula.inference.two_stage.checkpoint`), stage 1's
result and every finished chunk are kept there as they are made; a rerun with the same
inputs and settings reuses them and computes only what is missing, with the same result
as an uninterrupted run: stage 1's seed and every chunk's seed are drawn from the fit's
seed in a fixed order, so a chunk's random numbers depend only on the seed and its
index, never on which chunks ran before or where.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import xarray as xr

from screenformula._constants import ESS_PER_CHAIN
from screenformula.inference.two_stage.blocks import (
    check_supported,
    model_on,
    model_settings,
    subset_data,
)


@dataclass(frozen=True)
class TwoStageConfig:
    """Settings of a two-stage fit (defaults chosen by measurement, see below).

    Stage 1's size and length and K were chosen on HAP1 (`benchmarks/bench_stage1.py`:
    stage 1 alone, genome-wide; `benchmarks/bench_two_stage.py --hap1-reference`: against
    full NUTS). Fewer genes with longer chains mix better per second (the guide-level sds
    and correlation, whose draws mix slowest, are less sharply peaked on a smaller
    subsample): 1,000 genes x 500 draws gave R-hat 1.15 / ESS 10; 300 genes x 2,000
    draws 1.009 / 164 in 53-75 s (by the hour), x 6,000 draws 1.007 / 450 in 76 s. So
    stage 1 runs until its globals pass Stan's rule for final results (R-hat <= 1.01, bulk
    and tail ESS above 100 per chain; looked at every 500 draws), up to 10,000 draws:
    genome-wide HAP1 stops at 4,000 (7,000-8,000 when the check asked ESS 400, with the
    same agreement with full NUTS), a screen that mixes faster sooner.
    K matters more than stage 1's size for stage 2's accuracy: each kept global draw
    fixes the guide-level sd that sets every gene's LFC sd, so with K = 4 the gene sds
    moved by 3 % between stage-1 runs; K = 8 reached 97.2 %, 96.8 % and (with stage 1
    stopping once converged, at 9,000 draws) 97.0 % hit agreement with full NUTS in three
    runs (K = 4: 95.9-96.9 %, K = 16: 97.5 %, at twice K = 8's Newton time).

    Attributes
    ----------
    stage1_genes : int
        Genes in the stage-1 subsample (all genes with a control guide are added on top
        of the abundance-stratified draw when they exceed it).
    stage1_draws, stage1_tune, stage1_chains : int
        NUTS settings of stage 1; ``stage1_draws`` is the most draws per chain. 500
        tuning draws (Stan's 1,000 before 2026-12-04; nutpie's own default is 300):
        genome-wide HAP1 still stopped at 4,000 draws (ESS 254 against 286, R-hat 1.009
        against 1.008) and stage 1 took 128 s where it took 171-178 s that day; on 300
        HAP1 genes x 4,000 draws alone, 110 s against 123 s, ESS 278 against 303.
    stage1_check_every : int
        Stage 1 stops at the first multiple of this many draws at which its global
        variables pass the convergence check (R-hat <= 1.01, bulk and tail ESS at least
        ``stage1_ess_per_chain`` times its chains), keeping exactly the draws checked:
        deterministic given the seed and nutpie's compiled functions (the same seed gave
        other draws after a cold compile than from PyTensor's warm cache, see
        `stage1.run_stage1`). 0: always ``stage1_draws``. A simulated
        20,000-gene screen with a pool had ESS 1,700 after 7,000 draws (305 s of stage 1,
        more than half the fit).
    stage1_ess_per_chain : float
        The ESS per stage-1 chain that check asks, and that ``fit.diagnostics()`` asks of
        a two-stage fit: Stan's rule for final results, 100 per chain (200 with the two
        chains; a NUTS fit's 400 is the same rule for its four). Stage 2 uses K of these
        draws, and on the HAP1 reference genes the stage-1 length did not move the
        two-stage fit's hit agreement with full NUTS (97.2 % after 2,000 draws, 96.8 %
        and 97.0 % after 7,000 and 9,000).
    n_global_draws : int
        K, the stage-1 draws carried into stage 2.
    proposal_factor : float
        Importance proposals per kept draw (per gene and global draw).
    proposal_df : float
        Degrees of freedom of the Student-t proposal (``inf``: the Laplace Gaussian).
    proposal_scale : float
        Scale of the proposal relative to the Laplace covariance's square root.
    proposal_qmc : bool
        Draw each gene's proposals from randomised quasi-Monte Carlo points (one scrambled
        Sobol set per global draw, shifted per coordinate: `laplace.ProposalPoints`; the
        Student-t radius stays independent) instead of independently. The effective
        sample size is the same (about 36 of 125 on the HAP1 reference genes), but each
        gene's proposals cover the proposal more evenly, so its tail probabilities vary
        less. Hit agreement with full NUTS, the same stage 1 each time
        (`benchmarks/results/two_stage_settings/README.md`): simulated 2,000 genes 97.8
        against 96.8 %; HAP1 reference genes 97.2-97.6 against 96.5-97.3 % (three
        stage-2 seeds), 96.2-96.4 against 95.9-96.5 % (another fit seed), and on a third
        stage 1 96.5-97.4 against 97.1-97.2 % (two): +0.4 points on average. Genome-wide
        HAP1 it costs about 5 CPU s (the inverse normal CDF), 2-3 s of wall time.
    khat_threshold : float
        Genes with a pooled Pareto k-hat above it are refitted by HMC.
    hmc_warmup, hmc_warmup_next : int
        HMC warm-up iterations for the first global draw, and for each later one (step
        sizes are carried over).
    chunk_genes : int
        Most genes in one stage-2 chunk.
    workers : int or None
        Processes running stage 2's chunks; None: one per core when the screen has at
        least ``parallel_min_genes`` genes, else in this process (0 or 1: in this process).
    parallel_min_genes : int
        From this many genes stage 2 has at least two chunks. The chunks depend on the
        genes and these settings only, never on the workers, so a seed gives the same
        fit on any executor.
    proposal_batch : int
        Importance proposals drawn at a time (bounds the memory of their guide coordinates).
    newton_max_iter : int
    target_accept : float
        Stage 1's NUTS target acceptance.
    """

    stage1_genes: int = 300
    stage1_draws: int = 10000
    stage1_tune: int = 500
    stage1_chains: int = 2
    stage1_check_every: int = 500
    stage1_ess_per_chain: float = ESS_PER_CHAIN
    n_global_draws: int = 8
    proposal_factor: float = 1.0
    proposal_df: float = 7.0
    proposal_scale: float = 1.1
    proposal_qmc: bool = True
    khat_threshold: float = 0.7
    hmc_warmup: int = 150
    hmc_warmup_next: int = 40
    chunk_genes: int = 10000
    workers: int | None = None
    parallel_min_genes: int = 3000
    proposal_batch: int = 20
    newton_max_iter: int = 50
    target_accept: float = 0.8


@dataclass
class ChunkTask:
    """Everything stage 2 needs for one chunk of genes (all picklable)."""

    formula: str
    settings: dict[str, Any]
    data: Any  # ScreenData of the chunk's guides (full-screen size factors)
    globals_unc: list[dict[str, np.ndarray]]  # K dicts: unconstrained global values
    draw_k: np.ndarray  # global draw of every output draw
    gene_names: list[str]  # stored gene-level variables to return
    guide_names: list[str]  # stored guide-level variables to return (may be empty)
    config: TwoStageConfig
    seed: int
    # name -> (path of a .npy file of shape (1, draws, n_sgrna_full, ...), the chunk's rows
    # in it): guide draws are written there as they are made instead of being returned
    guide_sinks: dict[str, tuple[str, np.ndarray]] | None = None
    # the whole screen's dispersion spec on the chunk's guides (its data-scaled covariate)
    dispersion: Any = None


@dataclass
class ChunkShared:
    """What every chunk of one fit shares: sent to each worker once (picklable)."""

    formula: str
    settings: dict[str, Any]
    data: Any  # the whole screen's ScreenData
    dispersion: Any  # the whole screen's dispersion spec
    globals_unc: list[dict[str, np.ndarray]]
    draw_k: np.ndarray
    gene_names: list[str]
    guide_names: list[str]
    config: TwoStageConfig


@dataclass
class ChunkPart:
    """One chunk's own part: its genes (codes), its seed, where its guide draws go."""

    index: int
    genes: np.ndarray
    seed: int
    guide_sinks: dict[str, tuple[str, np.ndarray]] | None = None


def run_chunk_part(shared: ChunkShared, part: ChunkPart) -> ChunkResult:
    """`run_chunk` on the chunk ``part`` of the screen ``shared`` (what a worker runs)."""
    sub, rows = subset_data(shared.data, part.genes)
    task = ChunkTask(
        shared.formula,
        shared.settings,
        sub,
        shared.globals_unc,
        shared.draw_k,
        shared.gene_names,
        shared.guide_names,
        shared.config,
        part.seed,
        part.guide_sinks,
        shared.dispersion.take(rows),
    )
    return run_chunk(task)


@dataclass
class ChunkResult:
    """Stage-2 output of one chunk: draws of its stored variables and per-gene diagnostics."""

    gene_draws: dict[str, np.ndarray]  # name -> (draws, n_genes_chunk, ...)
    guide_draws: dict[str, np.ndarray]  # name -> (draws, n_sgrna_chunk, ...); {} with sinks
    diagnostics: dict[str, np.ndarray]  # name -> (n_genes_chunk,)
    seconds: dict[str, float] = field(default_factory=dict)


def _importance_round(density, glob, fit, m, S, config, rng, keep_guides):  # noqa: ANN001, ANN202
    """Proposals, log-ratios, PSIS weights and ``m`` resampled draws for one global draw.

    Proposals are drawn and scored ``config.proposal_batch`` at a time, so memory holds the
    proposals' gene coordinates (``S x n_genes x a``) but never all their guide
    coordinates; those are kept only when ``keep_guides`` (guide draws are returned).
    """
    from screenformula.inference.two_stage.importance import ess, psis, systematic_resample
    from screenformula.inference.two_stage.laplace import proposal_points, sample_proposal

    lay = density.layout
    points = proposal_points(fit, S, rng) if config.proposal_qmc else None
    PG = np.empty((S, lay.n_genes, lay.a))
    # guide-major, so that gathering each guide's resampled proposals reads its own
    # contiguous row (proposal-major: a cache miss per value, 0.36 against 0.09 s a round
    # for 36,000 guides x 125 proposals)
    PU = np.empty((lay.n_sgrna, S, lay.c)) if keep_guides else None
    log_ratio = np.empty((lay.n_genes, S))
    for lo in range(0, S, config.proposal_batch):
        hi = min(lo + config.proposal_batch, S)
        bG, bU, logq = sample_proposal(
            fit,
            hi - lo,
            rng,
            df=config.proposal_df,
            scale=config.proposal_scale,
            uniforms=None if points is None else points.uniforms(lo, hi),
        )
        for i in range(hi - lo):
            log_ratio[:, lo + i] = density.logp(glob, bG[i], bU[i]) - logq[i]
        PG[lo:hi] = bG
        if keep_guides:
            PU[:, lo:hi] = bU.transpose(1, 0, 2)
    lw, khat = psis(log_ratio)
    idx = systematic_resample(lw, m, rng)  # (n_genes, m)
    genes = np.arange(idx.shape[0])
    G = PG[idx.T, genes[None, :]]
    U = None
    if keep_guides:
        U = np.take_along_axis(PU, idx[lay.gene_of_guide, :, None], axis=1).transpose(1, 0, 2)
    return G, U, log_ratio, khat, ess(lw)


#: Fewest genes of an HMC subset (fewer only when the chunk has fewer).
HMC_MIN_GENES = 16


def hmc_genes(needs: np.ndarray, khat: np.ndarray) -> np.ndarray:
    """The genes sampled by HMC: those that ``needs`` it, padded to `HMC_MIN_GENES`.

    A small subset would compile a graph of its own: `density.lift_constants` lifts the
    numbers of genes and guides to inputs only above 2 (smaller integers are the model's
    structure), and a one-gene subset's data arrays have length-1 (broadcast) dimensions
    (PyTensor's numba cache has even served such a graph one compiled for other
    broadcast patterns: "Could not broadcast dimensions"). A 2-gene subset recompiled in
    12 s with a warm numba cache, and two of them took 109 CPU s of HMC on a
    20,000-gene screen. Sixteen genes also keep clear of the model's own small integers
    (samples, coefficients). The padding genes are those with the next-highest k-hat;
    their HMC draws are as valid as their importance draws. None when none ``needs`` it.
    """
    sampled = needs.copy()
    short = min(HMC_MIN_GENES, len(sampled)) - int(sampled.sum())
    if sampled.any() and short > 0:
        rest = np.flatnonzero(~sampled)
        order = np.argsort(-np.nan_to_num(khat[rest], nan=-np.inf), kind="stable")
        sampled[rest[order[:short]]] = True
    return sampled


def run_chunk(task: ChunkTask) -> ChunkResult:
    """Stage 2 for one chunk of genes: a pure function of its task (arrays in, arrays out).

    Guide-level variables are computed as each global draw's draws are made and written
    to ``task.guide_sinks`` (files on this machine) when given, else returned: the chunk
    never holds all its guides' draws in memory.
    """
    from screenformula.inference.two_stage.density import BlockDensity
    from screenformula.inference.two_stage.hmc import hmc_chain
    from screenformula.inference.two_stage.importance import psis
    from screenformula.inference.two_stage.laplace import newton

    t0 = time.perf_counter()
    config = task.config
    rng = np.random.default_rng(task.seed)
    model = model_on(task.formula, task.data, task.settings, task.dispersion)
    density = BlockDensity(model)
    lay = density.layout
    targets = _GuideTargets(task, lay.n_sgrna)
    writer = _GuideWriter(density, task.guide_names, targets) if task.guide_names else None
    t_compile = time.perf_counter() - t0
    K = len(task.globals_unc)
    n_draws = len(task.draw_k)
    G0, U0 = density.initial_GU
    outG = np.empty((n_draws, lay.n_genes, lay.a))
    pooled, khat_k, ess_k = [], [], []
    ok = np.ones(lay.n_genes, bool)
    iters = np.zeros(lay.n_genes)
    t_newton = t_is = t_det = 0.0
    for k in range(K):
        where = np.flatnonzero(task.draw_k == k)
        if not len(where):
            continue
        glob = density.global_list(task.globals_unc[k])
        t = time.perf_counter()
        fit = newton(density, glob, G0, U0, max_iter=config.newton_max_iter)
        G0, U0 = fit.G, fit.U
        t_newton += time.perf_counter() - t
        t = time.perf_counter()
        ok &= fit.ok
        iters += fit.iterations
        S = max(int(math.ceil(config.proposal_factor * len(where))), 20)
        G, U, log_ratio, khat, ess = _importance_round(
            density, glob, fit, len(where), S, config, rng, writer is not None
        )
        outG[where] = G
        finite = np.where(np.isfinite(log_ratio), log_ratio, -np.inf)
        top = finite.max(axis=1, keepdims=True)
        norm = top + np.log(np.mean(np.exp(finite - top), axis=1, keepdims=True))
        pooled.append(log_ratio - norm)
        khat_k.append(khat)
        ess_k.append(ess / S)
        t_is += time.perf_counter() - t
        if writer is not None:
            t = time.perf_counter()
            writer.write(task.globals_unc[k], where, G, U)
            t_det += time.perf_counter() - t
        del G, U
    _, khat = psis(np.concatenate(pooled, axis=1))
    refit = (khat > config.khat_threshold) | ~ok
    sampled = hmc_genes(refit, khat)  # refit, padded: these genes' draws are HMC's
    diag = {
        "khat": khat,
        "khat_max_per_draw": np.max(khat_k, axis=0),
        "is_ess_fraction": np.mean(ess_k, axis=0),
        "laplace_ok": ok,
        "newton_iterations": iters / K,
        "refit_hmc": refit,
        "hmc_accept": np.full(lay.n_genes, np.nan),
        "hmc_divergences": np.zeros(lay.n_genes, dtype=np.int64),
    }
    t = time.perf_counter()
    if sampled.any():
        sub_data, rows = subset_data(task.data, np.flatnonzero(sampled))
        sub_disp = model.spec.dispersion.take(rows)
        sub_model = model_on(task.formula, sub_data, task.settings, sub_disp)
        sub = BlockDensity(sub_model, like=density)
        sub_writer = (
            _GuideWriter(sub, task.guide_names, targets, rows) if writer is not None else None
        )
        sG, sU = sub.initial_GU
        state, acc, div = None, [], 0
        for k in range(K):
            where = np.flatnonzero(task.draw_k == k)
            if not len(where):
                continue
            glob = sub.global_list(task.globals_unc[k])
            fit = newton(sub, glob, sG, sU, max_iter=config.newton_max_iter)
            sG, sU = fit.G, fit.U
            warm = config.hmc_warmup if state is None else config.hmc_warmup_next
            hG, hU, stats, state = hmc_chain(
                sub, glob, fit, len(where), rng, n_warmup=warm, state=state
            )
            outG[np.ix_(where, np.flatnonzero(sampled))] = hG
            if sub_writer is not None:
                sub_writer.write(task.globals_unc[k], where, hG, hU)
            acc.append(stats["accept"])
            div = div + stats["divergences"]
        diag["hmc_accept"][sampled] = np.mean(acc, axis=0)
        diag["hmc_divergences"][sampled] = div
    t_hmc = time.perf_counter() - t

    t = time.perf_counter()
    gene_draws = _gene_level_draws(density, task, outG)
    t_det += time.perf_counter() - t
    return ChunkResult(
        gene_draws,
        targets.returned(),
        diag,
        {
            "compile": t_compile,
            "newton": t_newton,
            "importance": t_is,
            "hmc": t_hmc,
            "deterministics": t_det,
            "total": time.perf_counter() - t0,
        },
    )


class _GuideTargets:
    """Where a chunk's guide-level draws go: the task's sink files, else arrays returned."""

    def __init__(self, task: ChunkTask, n_sgrna: int) -> None:
        from screenformula.inference.scratch import open_draws

        self.arrays: dict[str, np.ndarray] = {}
        self.rows: dict[str, np.ndarray] = {}
        self.files = bool(task.guide_sinks)
        for name in task.guide_names:
            if task.guide_sinks:
                path, rows = task.guide_sinks[name]
                self.arrays[name] = open_draws(path)[0]  # (draws, n_sgrna_full, ...)
                self.rows[name] = np.asarray(rows)
            else:
                self.arrays[name] = None  # made at the first write (shape known then)
                self.rows[name] = np.arange(n_sgrna)
        self.n_draws = len(task.draw_k)

    def write(self, name: str, draw: int, rows: np.ndarray | None, value: np.ndarray) -> None:
        """Draw ``draw`` of variable ``name`` at chunk guides ``rows`` (None: all)."""
        if self.arrays[name] is None:
            self.arrays[name] = np.empty((self.n_draws, len(self.rows[name]), *value.shape[1:]))
        where = self.rows[name] if rows is None else self.rows[name][rows]
        self.arrays[name][draw, where] = value

    def flush(self, sync: bool = False) -> None:
        """Let file-backed draws' pages go (bounded memory); ``sync``: wait for the disk."""
        from screenformula.io.memmap import release

        if self.files:
            for arr in self.arrays.values():
                release(arr, sync=sync)

    def returned(self) -> dict[str, np.ndarray]:
        self.flush(sync=True)  # complete: on disk before the chunk's result is recorded
        return {} if self.files else dict(self.arrays)


class _GuideWriter:
    """Stored guide-level variables of one density's draws, computed as they are made."""

    def __init__(
        self,
        density: Any,
        names: list[str],
        targets: _GuideTargets,
        rows: np.ndarray | None = None,
    ) -> None:
        self.density = density
        self.names = names
        self.targets = targets
        self.rows = rows  # the density's guides among the chunk's (None: all of them)
        self.fn = density.stored_function(names)

    def write(self, globals_unc: dict, where: np.ndarray, G: np.ndarray, U: np.ndarray) -> None:
        for i, d in enumerate(where):
            Ui = np.ascontiguousarray(U[i])  # importance draws come as a guide-major view
            for name, value in zip(self.names, self.fn(globals_unc, G[i], Ui), strict=True):
                self.targets.write(name, int(d), self.rows, value)
        self.targets.flush()


def _gene_level_draws(density: Any, task: ChunkTask, outG: np.ndarray) -> dict[str, np.ndarray]:
    """Values of the stored gene-level variables at every draw."""
    if not task.gene_names:
        return {}
    fn = density.stored_function(task.gene_names)
    U0 = np.zeros((density.layout.n_sgrna, density.layout.c))  # unused by these variables
    out: dict[str, np.ndarray] = {}
    for i, k in enumerate(task.draw_k):
        for n, val in zip(task.gene_names, fn(task.globals_unc[k], outG[i], U0), strict=True):
            if n not in out:
                out[n] = np.empty((len(task.draw_k), *np.shape(val)))
            out[n][i] = val
    return out


def _workers(config: TwoStageConfig, n_genes: int) -> int:
    """Processes for stage 2 (1: in this process)."""
    if config.workers is not None:
        return max(int(config.workers), 1)
    if n_genes < config.parallel_min_genes:
        return 1
    return max(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1, 1)


def fit_two_stage(
    model: Any,
    *,
    draws: int = 1000,
    random_seed: int | None = None,
    progress: bool = True,
    store_sgrna: bool = False,
    config: TwoStageConfig | None = None,
    executor: Any = None,
    var_names: list[str] | None = None,
    allocate: Callable[[str, tuple[int, ...]], np.ndarray] | None = None,
    client: Any = None,
    checkpoint: str | os.PathLike | None = None,
    force: bool = False,
    **overrides: Any,
) -> tuple[xr.DataTree, dict[str, Any]]:
    """Fit a `ScreenModel` with the two-stage engine.

    Parameters
    ----------
    model : ScreenModel
        Every varying effect nested in gene (or at sample level); see
        `blocks.check_supported`.
    draws : int
        Posterior draws returned (one chain).
    random_seed : int, optional
    progress : bool
        Stage 1's progress bar.
    store_sgrna : bool
        Also return the guide-level variables (``r_<guide term>``, ``phi``, raw effects):
        every stored variable of a NUTS fit with ``store_sgrna=True``.
    config : TwoStageConfig, optional
        Settings; keyword ``overrides`` replace single fields
        (``fit_two_stage(m, n_global_draws=10)``).
    executor : object, optional
        Runs the chunks: an executor of `screenformula.inference.executors`, or any
        object with ``map`` (a ``concurrent.futures`` pool); default: ``config.workers``
        local processes (see `TwoStageConfig`), or this process.
    client : distributed.Client or str, optional
        Run the chunks on this Dask cluster (a client, or a scheduler's address
        ``tcp://HOST:8786``, connected here and closed afterwards): the screen is
        scattered to the workers once, each chunk's draws come back as arrays.
    checkpoint : path, optional
        A folder keeping stage 1's result and every finished chunk as they are made; a
        rerun with the same inputs and settings (and seed) resumes from them and gives
        the same result. A folder made from other inputs or settings is refused
        (`CheckpointMismatchError`), unless ``force``.
    force : bool
        With ``checkpoint``: start over, removing what the folder holds.

    Returns
    -------
    idata : DataTree
        ``posterior``: the variables (names, dims) a NUTS fit stores (`stored_variables`),
        chain dim of length 1; ``sample_stats``: ``global_draw`` (which stage-1 draw each
        draw is conditioned on); ``gene_diagnostics``: per gene ``khat``,
        ``khat_max_per_draw``, ``is_ess_fraction``, ``laplace_ok``, ``newton_iterations``,
        ``refit_hmc`` (k-hat or Laplace fit asked for HMC), ``hmc_accept``,
        ``hmc_divergences`` (every gene sampled by HMC: those refitted and the padding of
        `hmc_genes`, else NaN and 0); ``stage1_posterior``: the stage-1 draws of the global
        variables.
    options : dict
        ``method``, ``draws``, ``random_seed``, ``config``, ``stage1`` (genes, seconds,
        per-variable ``rhat_max``/``ess_bulk_min``/``ess_tail_min``, ``divergences``),
        ``khat`` (quantiles and counts above 0.5/0.7/1), ``n_hmc_genes``, ``hmc``
        (acceptance quantiles, divergences), ``seconds`` (per step; stage-2 parts are CPU
        seconds summed over chunks), ``n_chunks``, ``workers``, ``executor``, and with a
        checkpoint ``checkpoint`` (folder, stage-1 reused, chunks reused and computed).
    """
    from screenformula.inference.executors import as_executor
    from screenformula.inference.nuts import stored_variables
    from screenformula.inference.progress import Bar, stage_line
    from screenformula.inference.scratch import create_draws_file
    from screenformula.inference.two_stage.checkpoint import Checkpoint, hash_arrays
    from screenformula.inference.two_stage.stage1 import (
        choose_genes,
        convergence,
        run_stage1,
        stops_early,
        unconstrained,
    )

    config = replace(config or TwoStageConfig(), **overrides)
    check_supported(model.spec)
    t_start = time.perf_counter()
    data = model.data
    full = model.pymc_model
    shapes = _shapes(full)
    if var_names is None:
        stored = stored_variables(full, bool(store_sgrna))
    else:  # exactly these (the method registry's request), known to the model
        stored = [n for n in var_names if n in shapes]
    n_genes, n_sgrna = data.n_genes, data.n_sgrnas
    level = {name: _level(full, name, shapes[name], n_genes, n_sgrna) for name in stored}
    global_stored = [n for n in stored if level[n] is None]
    gene_names = [n for n in stored if level[n] == "gene"]
    guide_names = [n for n in stored if level[n] == "sgrna"]
    ckpt = None
    if checkpoint is not None:
        parts = _fingerprint(model, draws, random_seed, stored, config)
        ckpt = Checkpoint(checkpoint, parts, force=force)
        if random_seed is None:  # drawn once, kept: a resumed run draws the same numbers
            if ckpt.seed is None:
                ckpt.remember_seed(int(np.random.default_rng().integers(2**31)))
            random_seed = ckpt.seed
    rng = np.random.default_rng(random_seed)

    # ---- stage 1
    genes1 = choose_genes(data, config.stage1_genes, rng)
    probe = _global_free_rvs(full, n_genes, n_sgrna, shapes)
    seed1 = int(rng.integers(2**31))
    saved = ckpt.load_stage1() if ckpt is not None else None
    if saved is not None and not np.array_equal(saved[1].get("genes"), genes1):
        saved = None
    if saved is not None:
        post1, arrays1, info1 = saved
        post1 = _globals_only(post1, probe, global_stored)  # a checkpoint from before kept all
        picks = arrays1["picks"]
        K = len(picks)
        globals_unc = [
            {name: arrays1[f"g{k}:{name}"] for name in info1["global_values"]} for k in range(K)
        ]
        t1, divergences = info1["seconds"], info1["divergences"]
        stage_line(
            f"stage 1: reused from the checkpoint in {ckpt.folder} (NUTS on {len(genes1):,} "
            f"genes, {t1:.1f} s when it ran)",
            progress,
        )
    else:
        up_to = "up to " if stops_early(config.stage1_draws, config.stage1_check_every) else ""
        stage_line(
            f"stage 1: NUTS on {len(genes1):,} of {n_genes:,} genes ({config.stage1_chains} "
            f"chains x {up_to}{config.stage1_draws:,} draws)",
            progress,
        )
        idata1, sub1, t1 = run_stage1(
            model,
            genes1,
            [rv for rv, _ in probe],
            global_stored,
            draws=config.stage1_draws,
            tune=config.stage1_tune,
            chains=config.stage1_chains,
            random_seed=seed1,
            progress=progress,
            target_accept=config.target_accept,
            check_every=config.stage1_check_every,
            ess_target=config.stage1_ess_per_chain * config.stage1_chains,
        )
        post1 = _globals_only(idata1["posterior"].to_dataset(), probe, global_stored)
        n_flat = post1.sizes["chain"] * post1.sizes["draw"]
        K = min(config.n_global_draws, n_flat)
        picks = np.linspace(0, n_flat - 1, K).round().astype(int)
        globals_unc = unconstrained(sub1.pymc_model, [v for _, v in probe], post1, picks)
        divergences = int(np.asarray(idata1["sample_stats"]["diverging"]).sum())
        del idata1, sub1  # its subsample's local draws (0.4 GB on HAP1): not for stage 2
        if ckpt is not None:
            ckpt.save_stage1(
                post1,
                {
                    "genes": genes1,
                    "picks": picks,
                    **{f"g{k}:{n}": v for k, g in enumerate(globals_unc) for n, v in g.items()},
                },
                {
                    "seconds": t1,
                    "divergences": divergences,
                    "global_values": [v for _, v in probe],
                },
            )
        stage_line(
            f"stage 1: done in {t1:.1f} s ({post1.sizes['draw']:,} draws per chain)", progress
        )
    conv = convergence(post1, [rv for rv, _ in probe])
    stage1_hash = hash_arrays(*(g[n] for g in globals_unc for n in sorted(g)))

    # ---- stage 2
    draw_k = np.arange(draws) % K
    settings = model_settings(model)
    workers = _workers(config, n_genes)
    n_chunks = max(
        math.ceil(n_genes / config.chunk_genes), 2 if n_genes >= config.parallel_min_genes else 1
    )
    chunks = np.array_split(np.arange(n_genes), n_chunks)
    seeds = [int(rng.integers(2**31)) for _ in chunks]  # chunk i's: from the seed and i only
    rows = [np.flatnonzero(np.isin(data.gene_codes, genes)) for genes in chunks]
    gene_arrays = {n: np.empty((1, draws, *shapes[n])) for n in gene_names}
    guide_arrays = {}
    for n in guide_names:
        shape = (1, draws, *shapes[n])
        guide_arrays[n] = np.empty(shape) if allocate is None else allocate(n, shape)
    files = {n: getattr(a, "filename", None) for n, a in guide_arrays.items()}
    # on this machine workers write guide draws to files themselves, never returning them
    # (at 80,000 guides, about 1 GB per chunk, pickled twice on the way back): into the
    # fit's own files, or with a checkpoint into the chunk's files there (a resumed run
    # needs them), copied into the fit's files as each chunk finishes
    on_disk = (
        bool(files)
        and all(files.values())
        and client is None
        and getattr(executor, "kind", None) != "dask"
    )
    via_checkpoint = on_disk and ckpt is not None
    for arr in guide_arrays.values():  # written by the chunks from here on
        if on_disk:
            arr.flush()
    shared = ChunkShared(
        model.settings["formula"],
        settings,
        data,
        model.spec.dispersion,
        globals_unc,
        draw_k,
        gene_names,
        guide_names,
        config,
    )
    metas = [
        {
            "index": i,
            "n_chunks": n_chunks,
            "genes": hash_arrays(genes),
            "seed": seeds[i],
            "stage1": stage1_hash,
        }
        for i, genes in enumerate(chunks)
    ]
    results: list[ChunkResult | None] = [None] * n_chunks
    todo = []
    for i in range(n_chunks):
        arrays = ckpt.load_chunk(i, metas[i]) if ckpt is not None else None
        if arrays is not None and via_checkpoint:
            try:
                _copy_guides(ckpt, i, rows[i], guide_arrays)
            except (OSError, ValueError):
                arrays = None  # its guide files are missing or damaged: computed again
        if arrays is None:
            todo.append(i)
        else:
            results[i] = _from_arrays(arrays)
            _place(results[i], i, chunks, rows, gene_arrays, guide_arrays, on_disk)
    reused = n_chunks - len(todo)

    def sinks(i: int) -> dict[str, tuple[str, np.ndarray]] | None:
        if not on_disk:
            return None
        if not via_checkpoint:
            return {n: (str(files[n]), rows[i]) for n in guide_names}
        out = {}
        for n in guide_names:
            path = ckpt.guide_path(i, n)
            shape = (1, draws, len(rows[i]), *shapes[n][1:])
            create_draws_file(path, shape)  # made here, filled by the worker
            out[n] = (str(path), np.arange(len(rows[i])))
        return out

    parts = [ChunkPart(i, chunks[i], seeds[i], sinks(i)) for i in todo]
    t2 = time.perf_counter()
    with as_executor(executor, client, workers) as ex:
        where = ex.describe()
        found = f"{reused} reused from the checkpoint, " if ckpt is not None else ""
        stage_line(
            f"stage 2: {n_chunks} chunk(s) of up to {min(config.chunk_genes, n_genes):,} genes: "
            f"{found}{len(todo)} to compute {where}",
            progress,
        )
        done = 0
        try:
            with Bar(n_chunks, "stage 2 chunks", enabled=progress, done=reused) as bar:
                for j, result in ex.run(run_chunk_part, shared, parts):
                    i = todo[j]
                    if ckpt is not None:
                        ckpt.save_chunk(i, _to_arrays(result), metas[i])
                    _place(result, i, chunks, rows, gene_arrays, guide_arrays, on_disk)
                    if via_checkpoint:
                        _copy_guides(ckpt, i, rows[i], guide_arrays)
                    results[i] = result
                    done += 1
                    bar.advance()
        except BaseException as err:
            if ckpt is not None:
                err.add_note(
                    f"{reused + done} of {n_chunks} stage-2 chunks are checkpointed in "
                    f"{ckpt.folder}: rerun the same command to resume"
                )
            raise
        workers_used = ex.workers if ex.workers is not None else workers
        kind = ex.kind
    t_stage2 = time.perf_counter() - t2
    stage_line(
        f"stage 2: {len(todo)} chunk(s) computed in {t_stage2:.1f} s"
        + (f", {reused} reused" if reused else ""),
        progress,
    )

    # ---- assemble
    flat1 = {n: post1[n].values.reshape((-1,) + post1[n].shape[2:])[picks] for n in global_stored}
    post_vars = {n: flat1[n][draw_k][None] for n in global_stored}
    post_vars.update(gene_arrays)
    post_vars.update(guide_arrays)
    posterior = _dataset(full, post_vars, shapes)
    diag = {k: np.concatenate([r.diagnostics[k] for r in results]) for k in results[0].diagnostics}
    gene_diag = xr.Dataset(
        {k: (("gene",), v) for k, v in diag.items()},
        coords={"gene": list(map(str, data.gene_names))},
    )
    stats = xr.Dataset(
        {"global_draw": (("chain", "draw"), picks[draw_k][None])},
        coords={"chain": [0], "draw": np.arange(draws)},
    )
    idata = xr.DataTree.from_dict(
        {
            "posterior": posterior,
            "sample_stats": stats,
            "gene_diagnostics": gene_diag,
            "stage1_posterior": post1,
        }
    )
    khat = diag["khat"]
    refit = diag["refit_hmc"]
    seconds = {k: round(sum(r.seconds[k] for r in results), 2) for k in results[0].seconds}
    options = {
        "method": "two-stage",
        "draws": draws,
        "chains": 1,
        "random_seed": random_seed,
        "store_sgrna": bool(store_sgrna),
        "config": asdict(config),
        "stage1": {
            "genes": int(len(genes1)),
            "draws": int(post1.sizes["draw"]),
            "seconds": round(t1, 2),
            "convergence": conv,
            "rhat_max": max(v["rhat_max"] for v in conv.values()),
            "ess_bulk_min": min(v["ess_bulk_min"] for v in conv.values()),
            "divergences": divergences,
        },
        "n_global_draws": int(K),
        "khat": {
            "quantiles": dict(
                zip(
                    ("q50", "q90", "q99", "max"),
                    np.nanquantile(khat, [0.5, 0.9, 0.99, 1.0]).round(3).tolist(),
                    strict=True,
                )
            ),
            "above_0.5": int(np.sum(khat > 0.5)),
            "above_0.7": int(np.sum(khat > 0.7)),
            "above_1": int(np.sum(khat > 1.0)),
        },
        "n_hmc_genes": int(refit.sum()),
        "hmc": {
            "accept_min": float(np.nanmin(diag["hmc_accept"])) if refit.any() else None,
            "accept_median": float(np.nanmedian(diag["hmc_accept"])) if refit.any() else None,
            "divergences": int(diag["hmc_divergences"].sum()),
        },
        "seconds": {
            "stage1": round(t1, 2),
            "stage2": round(t_stage2, 2),
            "stage2_parts": seconds,
            "total": round(time.perf_counter() - t_start, 2),
        },
        "n_chunks": n_chunks,
        "workers": workers_used,
        "executor": kind,
    }
    if ckpt is not None:
        options["checkpoint"] = {
            "folder": str(ckpt.folder),
            "stage1_reused": saved is not None,
            "chunks_reused": reused,
            "chunks_computed": len(todo),
        }
    return idata, options


def _shapes(pm_model: Any) -> dict[str, tuple[int, ...]]:
    from screenformula.inference.nuts import variable_shapes

    return variable_shapes(pm_model)


def _level(pm_model: Any, name: str, shape: tuple, n_genes: int, n_sgrna: int) -> str | None:
    """``"gene"``, ``"sgrna"`` or None (global) for a stored variable."""
    dims = pm_model.named_vars_to_dims.get(name) or ()
    if "sgrna" in dims:
        return "sgrna"
    if "gene" in dims:
        return "gene"
    if not dims and shape:
        if shape[0] == n_sgrna and n_sgrna != n_genes:
            return "sgrna"
        if shape[0] == n_genes:
            return "gene"
    return None


def _globals_only(post: Any, probe: list, global_stored: list[str]) -> Any:
    """Stage 1's posterior reduced to the global variables (free and stored).

    Its draws of the subsample's gene and guide variables are not the fit's (stage 2
    refits every gene): the fit's diagnostics, checkpoint and saved file keep what stage 2
    conditioned on.
    """
    names = dict.fromkeys([*(rv for rv, _ in probe), *global_stored])
    return post[[n for n in names if n in post]]


def _global_free_rvs(pm_model: Any, n_genes: int, n_sgrna: int, shapes: dict) -> list:
    """(RV name, value-variable name) of every global free variable."""
    out = []
    for rv in pm_model.free_RVs:
        if _level(pm_model, rv.name, shapes[rv.name], n_genes, n_sgrna) is None:
            out.append((rv.name, pm_model.rvs_to_values[rv].name))
    return out


def _dataset(pm_model: Any, values: dict[str, np.ndarray], shapes: dict) -> xr.Dataset:
    """A posterior Dataset with the dims and coords a NUTS fit gives these variables."""
    data_vars, coords = {}, {}
    for name, arr in values.items():
        dims = pm_model.named_vars_to_dims.get(name)
        if not dims:
            dims = tuple(f"{name}_dim_{i}" for i in range(arr.ndim - 2))
        for d in dims:
            if d in pm_model.coords and pm_model.coords[d] is not None:
                coords[d] = list(pm_model.coords[d])
        data_vars[name] = (("chain", "draw", *dims), arr)
    n_draws = next(iter(values.values())).shape[1]
    coords.update({"chain": [0], "draw": np.arange(n_draws)})
    return xr.Dataset(data_vars, coords=coords)


def _fingerprint(
    model: Any, draws: int, random_seed: int | None, stored: list[str], config: TwoStageConfig
) -> dict[str, Any]:
    """What a checkpoint of this fit must have been made from, part by part."""
    from screenformula.inference.two_stage.checkpoint import data_hash, hash_arrays

    s = model.settings.to_dict()
    formula = s.pop("formula")
    priors = s.pop("priors", None)
    engine = asdict(config)
    engine.pop("workers")  # where the chunks run never changes the result
    return {
        "counts": data_hash(model.data),
        "formula": formula,
        "priors": hash_arrays(json.dumps(priors, sort_keys=True, default=str)),
        "model settings": hash_arrays(json.dumps(s, sort_keys=True, default=str)),
        "seed": random_seed,
        "draws": int(draws),
        "variables": sorted(stored),
        "engine settings": hash_arrays(json.dumps(engine, sort_keys=True, default=str)),
    }


def _to_arrays(result: ChunkResult) -> dict[str, np.ndarray]:
    """A chunk result as named arrays (its checkpoint file)."""
    out = {f"g:{n}": v for n, v in result.gene_draws.items()}
    out.update({f"s:{n}": v for n, v in result.guide_draws.items()})
    out.update({f"d:{n}": v for n, v in result.diagnostics.items()})
    out.update({f"t:{n}": np.asarray(v) for n, v in result.seconds.items()})
    return out


def _from_arrays(arrays: dict[str, np.ndarray]) -> ChunkResult:
    """The `ChunkResult` that `_to_arrays` gave."""
    groups: dict[str, dict] = {"g": {}, "s": {}, "d": {}, "t": {}}
    for key, value in arrays.items():
        kind, _, name = key.partition(":")
        groups[kind][name] = value
    seconds = {n: float(v) for n, v in groups["t"].items()}
    return ChunkResult(groups["g"], groups["s"], groups["d"], seconds)


def _place(
    result: ChunkResult,
    i: int,
    chunks: list[np.ndarray],
    rows: list[np.ndarray],
    gene_arrays: dict[str, np.ndarray],
    guide_arrays: dict[str, np.ndarray],
    on_disk: bool,
) -> None:
    """Copy chunk ``i``'s draws into the fit's arrays, then drop them from the result."""
    for n, arr in result.gene_draws.items():
        gene_arrays[n][0][:, chunks[i]] = arr
    if not on_disk:
        for n, arr in result.guide_draws.items():
            guide_arrays[n][0][:, rows[i]] = arr
    result.gene_draws = {}
    result.guide_draws = {}


def _copy_guides(ckpt: Any, i: int, rows: np.ndarray, guide_arrays: dict[str, np.ndarray]) -> None:
    """Copy chunk ``i``'s guide draws from its checkpoint files into the fit's arrays.

    A block of draws at a time (about 64 MB), letting each block's pages go: memory stays
    bounded whatever the screen's size. Raises OSError / ValueError when a file is
    missing or has the wrong shape.
    """
    from screenformula.io.memmap import release

    for n, target in guide_arrays.items():
        dst = target[0]  # (draws, n_sgrna, ...)
        src = np.lib.format.open_memmap(ckpt.guide_path(i, n), mode="r")
        if src.shape != (1, dst.shape[0], len(rows), *dst.shape[2:]):
            raise ValueError(f"chunk {i}: {n} has shape {src.shape}")
        per_draw = max(src[0, 0].nbytes, 1)
        block = max(1, (64 << 20) // per_draw)
        for lo in range(0, dst.shape[0], block):
            dst[lo : lo + block, rows] = src[0, lo : lo + block]
            release(dst, sync=False)  # the fit's own arrays: nothing to wait for
            release(src, sync=False)
        del src
