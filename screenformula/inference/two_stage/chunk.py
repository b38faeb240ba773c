"""Stage 2 of the two-stage engine for one chunk of genes: `run_chunk`, a pure function.

`run_chunk` takes a `ChunkTask` (the chunk's counts as a `ScreenData`, the model
settings, the K global draws) and returns a `ChunkResult` of arrays, with no shared state:
a Laplace fit per gene and global draw, importance-corrected with Pareto-smoothed weights,
and per-gene HMC for the genes whose pooled k-hat exceeds a threshold. Output draw ``i``
uses global draw ``i mod K`` for every gene, so gene effects and globals stay jointly
consistent. `run_chunk_part` builds that task on the worker from the data every chunk
shares (`ChunkShared`, sent once) and the chunk's own small part (`ChunkPart`: its gene
codes and seed), so an executor of `screenformula.inference.executors` (this process,
local processes, a Dask cluster) runs the chunks without shipping the screen once per
chunk.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from screenformula.inference.two_stage.blocks import model_on, subset_data
from screenformula.inference.two_stage.config import TwoStageConfig


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
    # name -> (path of a .npy file of shape (1, draws, n_full, ...), the chunk's genes or
    # guides along its axis n_full): draws of a variable named here are written there as
    # they are made instead of being returned
    sinks: dict[str, tuple[str, np.ndarray]] | None = None
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
    """One chunk's own part: its genes (codes), its seed, where its draws go."""

    index: int
    genes: np.ndarray
    seed: int
    sinks: dict[str, tuple[str, np.ndarray]] | None = None  # as `ChunkTask.sinks`


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
        part.sinks,
        shared.dispersion.take(rows),
    )
    return run_chunk(task)


@dataclass
class ChunkResult:
    """Stage-2 output of one chunk: draws of its stored variables and per-gene diagnostics."""

    gene_draws: dict[str, np.ndarray]  # name -> (draws, n_genes_chunk, ...); not sinks'
    guide_draws: dict[str, np.ndarray]  # name -> (draws, n_sgrna_chunk, ...); not sinks'
    diagnostics: dict[str, np.ndarray]  # name -> (n_genes_chunk,)
    seconds: dict[str, float] = field(default_factory=dict)


def _importance_round(density, glob, fit, m, S, config, rng, keep_guides, buffers=None):  # noqa: ANN001, ANN202
    """Proposals, log-ratios, PSIS weights and ``m`` resampled draws for one global draw.

    Proposals are drawn and scored ``config.proposal_batch`` at a time, so memory holds the
    proposals' gene coordinates (``S x n_genes x a``) but never all their guide
    coordinates; those are kept only when ``keep_guides`` (guide draws are returned).
    ``buffers`` (a dict kept across a chunk's rounds) lends the guide arrays of the round
    before (about 70 MB each for 36,000 guides): a new one costs its pages' first-touch
    faults, about 0.1 s a round. The guide draws returned are valid until the next round.
    """
    from screenformula.inference.two_stage.importance import (
        ess,
        gather_guide_draws,
        psis,
        systematic_resample,
    )
    from screenformula.inference.two_stage.laplace import proposal_points, sample_proposal

    lay = density.layout
    points = proposal_points(fit, S, rng) if config.proposal_qmc else None
    PG = np.empty((S, lay.n_genes, lay.a))
    # guide-major, so that gathering each guide's resampled proposals reads its own
    # contiguous row (proposal-major: a cache miss per value, 0.36 against 0.09 s a round
    # for 36,000 guides x 125 proposals)
    PU = _buffer(buffers, "proposals", (lay.n_sgrna, S, lay.c)) if keep_guides else None
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
    # draw-major and contiguous, as the guide writer reads each draw
    U = None
    if keep_guides:
        out = _buffer(buffers, "draws", (m, lay.n_sgrna, lay.c))
        U = gather_guide_draws(PU, idx, lay.gene_of_guide, out=out)
    return G, U, log_ratio, khat, ess(lw)


def _buffer(buffers: dict | None, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """``buffers[name]`` when it has this shape, else a new array kept there."""
    if buffers is None:
        return np.empty(shape)
    if name not in buffers or buffers[name].shape != shape:
        buffers[name] = np.empty(shape)
    return buffers[name]


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

    The stored variables are computed as each global draw's draws are made, and written
    to ``task.sinks`` (files on this machine) when named there, else returned: with sinks
    the chunk never holds all its draws in memory, and none travel back pickled (a
    genome-wide chunk's gene-level draws, about 200 MB, were copied three times on the
    way: most of stage 2's peak memory beside its guide draws).
    """
    from screenformula.inference.two_stage.density import BlockDensity
    from screenformula.inference.two_stage.hmc import hmc_chain
    from screenformula.inference.two_stage.importance import pooled_khat
    from screenformula.inference.two_stage.laplace import newton

    t0 = time.perf_counter()
    config = task.config
    rng = np.random.default_rng(task.seed)
    model = model_on(task.formula, task.data, task.settings, task.dispersion)
    density = BlockDensity(model)
    lay = density.layout
    K = len(task.globals_unc)
    n_draws = len(task.draw_k)
    gene_targets = _DrawTargets(task.gene_names, task.sinks, lay.n_genes, n_draws)
    guide_targets = _DrawTargets(task.guide_names, task.sinks, lay.n_sgrna, n_draws)
    gene_writer = _DrawWriter(density, task.gene_names, gene_targets, guides=False)
    writer = _DrawWriter(density, task.guide_names, guide_targets) if task.guide_names else None
    t_compile = time.perf_counter() - t0
    G0, U0 = density.initial_GU
    pooled, khat_k, ess_k = [], [], []
    buffers: dict[str, np.ndarray] = {}  # the importance rounds' guide arrays, reused
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
            density, glob, fit, len(where), S, config, rng, writer is not None, buffers
        )
        finite = np.where(np.isfinite(log_ratio), log_ratio, -np.inf)
        top = finite.max(axis=1, keepdims=True)
        norm = top + np.log(np.mean(np.exp(finite - top), axis=1, keepdims=True))
        pooled.append(log_ratio - norm)
        khat_k.append(khat)
        ess_k.append(ess / S)
        t_is += time.perf_counter() - t
        t = time.perf_counter()
        gene_writer.write(task.globals_unc[k], where, G)
        if writer is not None:
            writer.write(task.globals_unc[k], where, G, U)
        t_det += time.perf_counter() - t
        del G, U
    buffers.clear()  # not held through HMC
    khat = pooled_khat(pooled)
    del pooled
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
        sampled_genes = np.flatnonzero(sampled)
        sub_gene_writer = _DrawWriter(
            sub, task.gene_names, gene_targets, sampled_genes, guides=False
        )
        sub_writer = (
            _DrawWriter(sub, task.guide_names, guide_targets, rows) if writer is not None else None
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
            # over the values the importance draws of these genes wrote
            sub_gene_writer.write(task.globals_unc[k], where, hG)
            if sub_writer is not None:
                sub_writer.write(task.globals_unc[k], where, hG, hU)
            acc.append(stats["accept"])
            div = div + stats["divergences"]
        diag["hmc_accept"][sampled] = np.mean(acc, axis=0)
        diag["hmc_divergences"][sampled] = div
    t_hmc = time.perf_counter() - t

    return ChunkResult(
        gene_targets.returned(),
        guide_targets.returned(),
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


class _DrawTargets:
    """Where a chunk's draws of some variables go: the task's sink files, else arrays returned.

    ``n_rows`` is the chunk's length of the variables' first axis after draws (its genes,
    or its guides): each variable is named in ``sinks`` (a file of the whole screen, and
    the chunk's rows in it) or in none.
    """

    def __init__(
        self,
        names: list[str],
        sinks: dict[str, tuple[str, np.ndarray]] | None,
        n_rows: int,
        n_draws: int,
    ) -> None:
        from screenformula.inference.scratch import open_draws

        self.arrays: dict[str, np.ndarray | None] = {}
        self.rows: dict[str, np.ndarray] = {}
        self.files = bool(names) and bool(sinks) and all(n in sinks for n in names)
        for name in names:
            if self.files:
                path, rows = sinks[name]
                self.arrays[name] = open_draws(path)[0]  # (draws, n_full, ...)
                self.rows[name] = np.asarray(rows)
            else:
                self.arrays[name] = None  # made at the first write (shape known then)
                self.rows[name] = np.arange(n_rows)
        self.n_draws = n_draws

    def write(self, name: str, draw: int, rows: np.ndarray | None, value: np.ndarray) -> None:
        """Draw ``draw`` of variable ``name`` at the chunk's rows ``rows`` (None: all)."""
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


class _DrawWriter:
    """Stored variables of one density's draws (gene- or guide-level), computed as made."""

    def __init__(
        self,
        density: Any,
        names: list[str],
        targets: _DrawTargets,
        rows: np.ndarray | None = None,
        *,
        guides: bool = True,
    ) -> None:
        self.density = density
        self.names = names
        self.targets = targets
        self.rows = rows  # the density's genes or guides among the chunk's (None: all)
        self.fn = density.stored_function(names) if names else None
        # gene-level variables never read the guide coordinates: zeros stand in for them
        lay = density.layout
        self.U0 = None if guides else np.zeros((lay.n_sgrna, lay.c))

    def write(
        self, globals_unc: dict, where: np.ndarray, G: np.ndarray, U: np.ndarray | None = None
    ) -> None:
        if self.fn is None:
            return
        for i, d in enumerate(where):
            # ascontiguousarray: a no-op for importance and HMC draws
            Ui = self.U0 if self.U0 is not None else np.ascontiguousarray(U[i])
            for name, value in zip(self.names, self.fn(globals_unc, G[i], Ui), strict=True):
                self.targets.write(name, int(d), self.rows, value)
        self.targets.flush()


def result_to_arrays(result: ChunkResult) -> dict[str, np.ndarray]:
    """A chunk result as named arrays (its checkpoint file)."""
    out = {f"g:{n}": v for n, v in result.gene_draws.items()}
    out.update({f"s:{n}": v for n, v in result.guide_draws.items()})
    out.update({f"d:{n}": v for n, v in result.diagnostics.items()})
    out.update({f"t:{n}": np.asarray(v) for n, v in result.seconds.items()})
    return out


def result_from_arrays(arrays: dict[str, np.ndarray]) -> ChunkResult:
    """The `ChunkResult` that `result_to_arrays` gave."""
    groups: dict[str, dict] = {"g": {}, "s": {}, "d": {}, "t": {}}
    for key, value in arrays.items():
        kind, _, name = key.partition(":")
        groups[kind][name] = value
    seconds = {n: float(v) for n, v in groups["t"].items()}
    return ChunkResult(groups["g"], groups["s"], groups["d"], seconds)
