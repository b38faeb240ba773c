"""The two-stage engine's grid stage 2, for models with guide states (`fit_grid_stage`).

After stage 1 (NUTS on a gene subsample, the model with every guide working), each
guide's part of the model given the global parameters is read off the model's own PyMC
graph (`guide_pieces`): its log mean is ``base + a + w * beta`` with ``a`` its intercept
(population, gene and guide parts), ``beta`` its effect and ``w`` the design's treatment
column times the replicate's scale, and its dispersion ``phi`` depends on the globals
only. Averaged over the K stage-1 draws, these are plugged in. Then:

1. the slope prior's location and scale, the guide deviations' sd and the chance that a
   guide fails are chosen by the marginal likelihood of at most ``GRID_FIT_GENES`` random
   genes (`grid.fit_state_globals`, empirical Bayes);
2. every gene's posterior of ``beta`` is computed on the grid, chunk by chunk on an
   executor (`run_grid_chunk`, a pure function of the chunk's arrays), and drawn from;
3. each guide's draws follow from its gene's: its state drawn given the gene's effect,
   its own effect from its likelihood's normal approximation times its deviation's
   prior; intercepts are conditional modes (not sampled: a grid over the effect, not
   over the baselines).

The draws are stored under the names a NUTS fit uses (``r_gene``, the centred gene slope,
``r_sgrna``, ``phi``), so contrasts, tables and plots read them as any fit's.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import xarray as xr
from scipy import special

from screenformula.errors import FitError
from screenformula.inference.two_stage.grid import (
    GRID,
    ChunkDraws,
    StateGlobals,
    StateGrid,
    draw_from_grid,
    fit_state_globals,
    guide_log_lik,
    guide_rows,
    interpolate,
)
from screenformula.inference.two_stage.mixture_stage import (
    fit_mixture_globals,
    run_mixture_chunk,
)
from screenformula.inference.two_stage.posterior import posterior_dataset
from screenformula.spec.guide_states import GridShape, grid_shape

__all__ = ["GRID_FIT_GENES", "GuidePieces", "fit_grid_stage", "guide_pieces", "run_grid_chunk"]

#: Genes whose summed marginal likelihood chooses the `StateGlobals` (as stage 1 subsamples).
GRID_FIT_GENES = 4000
#: Genes per stage-2 chunk.
GRID_CHUNK_GENES = 2000
#: A gene whose posterior holds more than this within 0.25 of the grid's ends is flagged.
EDGE_MASS_MAX = 0.01


@dataclass
class GuidePieces:
    """Every guide's part of the model given the globals (guides x screen samples)."""

    counts: np.ndarray
    base: np.ndarray  # log-mean offset: size factors and any fixed offset
    weights: np.ndarray  # guides x samples x L: each gene slope's design column x scale
    guide_weight: np.ndarray  # the guide slope's design column x scale
    phi: np.ndarray
    gene: np.ndarray  # gene code of every guide
    a_mean: float  # the guide intercept's prior: mean
    a_sd: float  # and sd (gene and guide intercept sds combined)
    gene_int_share: float  # the gene's share of the intercept variance
    b: np.ndarray  # L: the population slopes (stage 1's posterior means)
    cov: np.ndarray  # L x L: the gene slopes' covariance (stage 1's)
    sd_d: float  # the guide slope's sd (stage 1's)
    df: float | None  # the gene-slope prior's degrees of freedom (None: normal)

    @property
    def weight(self) -> np.ndarray:
        """The one gene slope's weights (a grid's design)."""
        return self.weights[..., 0]

    @property
    def start(self) -> StateGlobals:
        """Stage 1's slope location and sds, ``pi`` 0.1: where the grid's globals start."""
        return StateGlobals(float(self.b[0]), float(np.sqrt(self.cov[0, 0])), self.sd_d, 0.1)


def _mean(post: xr.Dataset, name: str) -> np.ndarray:
    return np.asarray(post[name].mean(("chain", "draw")).values, dtype=float)


def guide_pieces(model: Any, stage1_values: list[dict[str, np.ndarray]], post1: Any) -> GuidePieces:
    """`GuidePieces` of ``model`` at the K stage-1 draws ``stage1_values`` (averaged).

    ``base`` is the log mean minus the intercept and effect parts, evaluated from the
    model's graph at each draw; the model is affine in those parts, so ``base`` is the
    same at every draw up to rounding (a test checks it).
    """
    import pytensor

    from screenformula.spec.names import OBSERVED, cor_pairs

    spec = model.spec
    shape: GridShape = grid_shape(spec)
    pm_model = model.pymc_model
    obs = next(rv for rv in pm_model.observed_RVs if rv.name == OBSERVED)
    log_mu, phi = obs.owner.inputs[2], obs.owner.inputs[3]
    gene_term, guide_term = spec.term(shape.gene_term), spec.term(shape.guide_term)
    outs = [log_mu, phi, pm_model[gene_term.names.effects], pm_model[guide_term.names.effects]]
    scaled = spec.replicate_scale.active
    if scaled:
        from screenformula.spec.names import REPLICATE_SCALE

        outs.append(pm_model[REPLICATE_SCALE])
    values = pm_model.value_vars
    fn = pytensor.function(
        values, pm_model.replace_rvs_by_values(outs), on_unused_input="ignore", mode="FAST_RUN"
    )
    point = pm_model.initial_point()
    n_s, n_j = spec.counts.shape
    n_l = len(shape.coefs)
    x = np.asarray(spec.mean.common.X, dtype=float)[:, :n_l]  # samples x L
    xd = np.asarray(guide_term.Z, dtype=float)[:, shape.guide_slope]
    gene = np.asarray(spec.data.gene_codes)
    bases, weights, guide_weights, log_phis = [], [], [], []
    for draw in stage1_values:
        at = {**point, **draw}
        got = fn(*[at[v.name] for v in values])
        lm = np.broadcast_to(got[0], (n_s, n_j))
        ph = np.broadcast_to(got[1], (n_s, n_j))
        r_gene, r_guide = np.asarray(got[2]), np.asarray(got[3])
        scale = np.ones(n_j)
        if scaled:
            scale[np.asarray(spec.replicate_scale.samples)] = np.asarray(got[4])
        w = x * scale[:, None]  # samples x L
        wd = xd * scale
        intercept = float(np.ravel(at["Intercept"])[0])
        b = np.ravel(at["b"])[:n_l]
        a = intercept + r_gene[gene, 0] + r_guide[:, 0]
        beta = b[None, :] + r_gene[gene][:, shape.gene_slopes]  # guides x L
        effect = beta @ w.T + r_guide[:, shape.guide_slope][:, None] * wd[None, :]
        bases.append(lm - a[:, None] - effect)
        weights.append(w)
        guide_weights.append(wd)
        log_phis.append(np.log(ph))
    sd_gene, sd_guide = _mean(post1, gene_term.names.sd), _mean(post1, guide_term.names.sd)
    sds = sd_gene[shape.gene_slopes]
    corr = np.eye(gene_term.n_coefs)
    cor_name = gene_term.names.cor
    if gene_term.uses_lkj and cor_name in post1:
        for value, (p, q) in zip(_mean(post1, cor_name), cor_pairs(gene_term.n_coefs), strict=True):
            corr[p, q] = corr[q, p] = value
    corr = corr[np.ix_(shape.gene_slopes, shape.gene_slopes)]
    df = None
    if shape.gene_df_name is not None:
        if shape.gene_df_name in post1:
            df = float(_mean(post1, shape.gene_df_name))
        else:
            prior = spec.prior(shape.gene_df_name)
            df = float(prior.args["value"])
    return GuidePieces(
        counts=np.asarray(spec.counts, dtype=float),
        base=np.mean(bases, axis=0),
        weights=np.broadcast_to(np.mean(weights, axis=0)[None], (n_s, n_j, n_l)),
        guide_weight=np.broadcast_to(np.mean(guide_weights, axis=0)[None], (n_s, n_j)),
        phi=np.exp(np.mean(log_phis, axis=0)),
        gene=gene,
        a_mean=float(_mean(post1, "Intercept")),
        a_sd=float(np.hypot(sd_gene[0], sd_guide[0])),
        gene_int_share=float(sd_gene[0] ** 2 / (sd_gene[0] ** 2 + sd_guide[0] ** 2)),
        b=np.ravel(_mean(post1, "b"))[:n_l],
        cov=corr * np.outer(sds, sds),
        sd_d=float(sd_guide[shape.guide_slope]),
        df=df,
    )


@dataclass
class GridShared:
    """What every chunk of the grid stage shares (sent to each worker once)."""

    pieces: GuidePieces
    states: str
    globals_: StateGlobals
    draws: int


@dataclass
class GridPart:
    """One chunk: its genes (codes, sorted) and seed."""

    index: int
    genes: np.ndarray
    seed: int


def run_grid_chunk(shared: GridShared, part: GridPart) -> ChunkDraws:
    """The grid stage for one chunk of genes (a pure function of its arrays)."""
    start = time.perf_counter()
    p, g = shared.pieces, shared.globals_
    rows = guide_rows(p.gene, part.genes)
    log_lik, mode = guide_log_lik(
        p.counts[rows], p.base[rows], p.weight[rows], p.phi[rows], p.a_mean, p.a_sd
    )
    _, local = np.unique(p.gene[rows], return_inverse=True)
    grid = StateGrid(local, log_lik, shared.states, p.df)
    log_post = grid.log_post(**g.to_dict())
    rng = np.random.default_rng(part.seed)
    beta = draw_from_grid(log_post, shared.draws, rng)  # draws x genes
    post = np.exp(log_post - log_post.max(1, keepdims=True))
    post /= post.sum(1, keepdims=True)
    edge = int(round(0.25 / (GRID[1] - GRID[0])))
    edge_mass = post[:, :edge].sum(1) + post[:, -edge:].sum(1)
    # guides: the state given the gene's draw, then the guide's own effect
    beta_g = beta[:, local]  # draws x guides
    log_i = grid.convolved(g.sd_d)
    if shared.states != "none" and g.pi > 0:
        at_fail = interpolate(log_i, np.full(len(rows), g.b0))
        at_work = interpolate(log_i, beta_g)
        p_fail = special.expit(np.log(g.pi) + at_fail - np.log1p(-g.pi) - at_work)
        fails = rng.random(beta_g.shape) < p_fail
    else:
        fails = np.zeros(beta_g.shape, dtype=bool)
    centre = np.where(fails, g.b0, beta_g)
    lik = np.exp(log_lik - log_lik.max(1, keepdims=True))
    lik /= lik.sum(1, keepdims=True)
    m = lik @ GRID
    v = np.maximum(lik @ GRID**2 - m**2, (GRID[1] - GRID[0]) ** 2 / 12)
    prec = 1 / v[None, :] + 1 / g.sd_d**2
    mean = (m[None, :] / v[None, :] + centre / g.sd_d**2) / prec
    own = mean + rng.standard_normal(mean.shape) / np.sqrt(prec)
    guide_slope = own - beta_g
    # intercepts: each guide's conditional mode at its gene's posterior mean
    at = np.clip(np.searchsorted(GRID, post @ GRID), 0, len(GRID) - 1)
    alpha = mode[np.arange(len(rows)), at[local]] - p.a_mean
    seconds = time.perf_counter() - start
    return ChunkDraws.split_intercepts(
        rows, beta, guide_slope, local, alpha, p.gene_int_share, edge_mass, seconds
    )


def fit_grid_stage(
    model: Any,
    stage1: Any,
    stored: dict[str, list[str]],
    shapes: dict[str, tuple[int, ...]],
    draws: int,
    rng: np.random.Generator,
    allocate: Any,
    executor: Any,
    client: Any,
    workers: int,
    progress: bool,
) -> tuple[xr.Dataset, xr.Dataset, dict[str, Any]]:
    """Stage 2 by the grid: the posterior, per-gene diagnostics and the stage's options.

    ``stored`` maps ``"global"``, ``"gene"`` and ``"sgrna"`` to the stored variables of
    each level.
    """
    from screenformula.inference.executors import as_executor
    from screenformula.inference.progress import Bar, stage_line

    spec = model.spec
    shape = grid_shape(spec)
    gene_term, guide_term = spec.term(shape.gene_term), spec.term(shape.guide_term)
    t0 = time.perf_counter()
    pieces = guide_pieces(model, stage1.values, stage1.posterior)
    # the globals, from at most GRID_FIT_GENES random genes
    n_genes = spec.data.n_genes
    fit_genes = np.sort(rng.choice(n_genes, min(n_genes, GRID_FIT_GENES), replace=False))
    rows = guide_rows(pieces.gene, fit_genes)
    if shape.on_grid:
        log_lik, _ = guide_log_lik(
            pieces.counts[rows],
            pieces.base[rows],
            pieces.weight[rows],
            pieces.phi[rows],
            pieces.a_mean,
            pieces.a_sd,
        )
        _, local = np.unique(pieces.gene[rows], return_inverse=True)
        globals_, evaluations = fit_state_globals(
            StateGrid(local, log_lik, spec.guide_states, pieces.df), pieces.start
        )
        b_stored = np.array([globals_.b0])
        sd_slopes, sd_d = np.array([globals_.sd_b]), globals_.sd_d
        run_chunk, what = run_grid_chunk, "grid"
        found = f"gene slope sd {globals_.sd_b:.3f}"
    else:
        globals_, evaluations = fit_mixture_globals(pieces, rows, spec.guide_states)
        b_stored = pieces.b
        sd_slopes, sd_d = np.sqrt(np.diag(pieces.cov)) * globals_.scale, globals_.sd_d
        run_chunk, what = run_mixture_chunk, "mixture"
        found = f"gene slope sds x {globals_.scale:.3f} (stage 1's)"
    t_globals = time.perf_counter() - t0
    stage_line(
        f"stage 2: guide states ({spec.guide_states}, {what}) on {len(fit_genes):,} genes: pi "
        f"{globals_.pi:.3f}, {found}, guide slope sd {sd_d:.3f} ({t_globals:.1f} s)",
        progress,
    )
    chunks = np.array_split(np.arange(n_genes), max(1, -(-n_genes // GRID_CHUNK_GENES)))
    parts = [GridPart(i, c, int(rng.integers(2**31))) for i, c in enumerate(chunks)]
    shared = GridShared(pieces, spec.guide_states, globals_, draws)
    n_l = len(shape.coefs)
    beta = np.empty((draws, n_genes, n_l))
    gene_int = np.empty(n_genes)
    edge = np.empty(n_genes)
    guide_arrays = {name: allocate(name, (1, draws, *shapes[name])) for name in stored["sgrna"]}
    effects = guide_arrays.get(guide_term.names.effects)
    cpu = 0.0
    t2 = time.perf_counter()
    with as_executor(executor, client, workers if n_genes > GRID_CHUNK_GENES else 1) as ex:
        stage_line(f"stage 2: {len(parts)} {what} chunk(s) {ex.describe()}", progress)
        with Bar(len(parts), "stage 2 chunks", enabled=progress) as bar:
            for j, res in ex.run(run_chunk, shared, parts):
                genes = chunks[j]
                beta[:, genes] = res.beta.reshape(draws, len(genes), n_l)
                gene_int[genes] = res.gene_intercept
                edge[genes] = res.edge_mass
                if effects is not None:  # the guides' r, written as each chunk comes
                    block = np.empty((draws, len(res.rows), guide_term.n_coefs))
                    block[:, :, 0] = res.guide_intercept[None, :]
                    block[:, :, shape.guide_slope] = res.guide_slope
                    effects[0][:, res.rows] = block
                cpu += res.seconds
                bar.advance()
        used, kind = (ex.workers or workers), ex.kind
    t_stage2 = time.perf_counter() - t2

    # ---- the stored variables, under a NUTS fit's names
    K = stage1.K
    draw_k = np.arange(draws) % K
    post1 = stage1.posterior
    values: dict[str, np.ndarray] = {}
    for name in stored["global"]:
        arr = np.asarray(post1[name].values)
        arr = arr.reshape((-1,) + arr.shape[2:])[stage1.picks][draw_k].astype(float)
        if name == "b":
            arr[:, : len(b_stored)] = b_stored
        elif name == gene_term.names.sd:
            arr[:, shape.gene_slopes] = sd_slopes
        elif name == guide_term.names.sd:
            arr[:, shape.guide_slope] = sd_d
        values[name] = arr[None]
    r_gene = np.zeros((draws, n_genes, gene_term.n_coefs))
    r_gene[:, :, 0] = gene_int[None, :]
    r_gene[:, :, shape.gene_slopes] = beta - b_stored
    centred_slopes = gene_term.names.raw_centered(list(shape.coefs))
    for name in stored["gene"]:
        if name == gene_term.names.effects:
            values[name] = r_gene[None]
        elif name == centred_slopes:
            values[name] = beta.reshape((1, draws, n_genes, *shapes[name][1:]))
        else:
            raise FitError(f"guide states: the {what} stage gives no draws of {name!r}")
    for name, arr in guide_arrays.items():
        if name == "phi":
            for k, phi in enumerate(_phi_at_globals(model, stage1, shapes[name])):
                arr[0, draw_k == k] = phi
        elif name != guide_term.names.effects:
            raise FitError(f"guide states: the {what} stage gives no draws of {name!r}")
        values[name] = arr
    posterior = posterior_dataset(model.pymc_model, values, shapes)
    gene_diag = xr.Dataset(
        {"grid_edge_mass": (("gene",), edge)},
        coords={"gene": list(map(str, spec.data.gene_names))},
    )
    n_edge = int((edge > EDGE_MASS_MAX).sum())
    options = {
        "guide_states": {
            "states": spec.guide_states,
            **{k: round(v, 5) for k, v in globals_.to_dict().items()},
            "stage2": what,
            "df": pieces.df,
            "fit_genes": len(fit_genes),
            "evaluations": evaluations,
            "genes_at_grid_edge": n_edge,
            "stage1_start": asdict(pieces.start),
        },
        "seconds_grid": {
            "globals": round(t_globals, 2),
            "stage2": round(t_stage2, 2),
            "stage2_cpu": round(cpu, 2),
        },
        "n_chunks": len(parts),
        "workers": used,
        "executor": kind,
    }
    if n_edge:
        stage_line(
            f"stage 2: {n_edge} gene(s) hold over {EDGE_MASS_MAX:.0%} of their posterior at the "
            "grid's ends (natural log -7.5 or 4): their effects are clipped there",
            progress,
        )
    return posterior, gene_diag, options


def _phi_at_globals(model: Any, stage1: Any, shape: tuple[int, ...]) -> list[np.ndarray]:
    """The stored ``phi`` (a function of the globals only) at each of the K global draws."""
    import pytensor

    pm_model = model.pymc_model
    values = pm_model.value_vars
    fn = pytensor.function(
        values, pm_model.replace_rvs_by_values([pm_model["phi"]]), on_unused_input="ignore"
    )
    point = pm_model.initial_point()
    return [
        np.broadcast_to(fn(*[{**point, **d}[v.name] for v in values])[0], shape)
        for d in stage1.values
    ]
