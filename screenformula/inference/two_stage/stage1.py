"""Stage 1: NUTS on an abundance-stratified subsample of genes, for the global parameters."""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import numpy as np
import pytensor
import xarray as xr

from screenformula._constants import ESS_MIN, RHAT_MAX
from screenformula.inference.two_stage.blocks import subset_model


@dataclass
class Stage1Globals:
    """What stage 2 takes from stage 1: K draws of the global parameters, and its record."""

    genes: np.ndarray  # codes of the subsample's genes
    posterior: xr.Dataset  # stage 1's draws of the global variables (free and stored)
    picks: np.ndarray  # flat (chain-major) indices of the K draws carried into stage 2
    values: list[dict[str, np.ndarray]]  # those K draws, value variable -> unconstrained
    seconds: float
    divergences: int
    reused: bool  # read from a checkpoint instead of sampled

    @property
    def K(self) -> int:  # noqa: N802 - the K of the method's description
        """The number of global draws carried into stage 2."""
        return len(self.picks)

    def record(self, global_rvs: list[str]) -> dict[str, Any]:
        """Stage 1's entry of a fit's options: size, time, convergence of ``global_rvs``."""
        conv = convergence(self.posterior, global_rvs)
        return {
            "genes": int(len(self.genes)),
            "draws": int(self.posterior.sizes["draw"]),
            "seconds": round(self.seconds, 2),
            "convergence": conv,
            "rhat_max": max(v["rhat_max"] for v in conv.values()),
            "ess_bulk_min": min(v["ess_bulk_min"] for v in conv.values()),
            "divergences": self.divergences,
        }


def sample_globals(
    model: Any,
    config: Any,
    rng: np.random.Generator,
    probe: list[tuple[str, str]],
    global_stored: list[str],
    checkpoint: Any = None,
    progress: bool = True,
) -> Stage1Globals:
    """Stage 1 of a two-stage fit: its genes, NUTS on them, and K draws for stage 2.

    ``config`` is the fit's `TwoStageConfig`; ``probe`` holds (RV name, value-variable
    name) of every global free variable; ``rng`` gives the subsample and stage 1's seed
    (drawn in that order, before anything of stage 2's). With a ``checkpoint``
    (`checkpoint.Checkpoint`) a stage 1 kept there for the same genes is reused, and a new
    one is kept there.
    """
    from screenformula.inference.progress import stage_line

    genes = choose_genes(model.data, config.stage1_gene_count(model.spec.effects_per_gene), rng)
    seed = int(rng.integers(2**31))
    global_rvs = [rv for rv, _ in probe]
    saved = checkpoint.load_stage1() if checkpoint is not None else None
    if saved is not None and np.array_equal(saved[1].get("genes"), genes):
        post, arrays, info = saved
        picks = arrays["picks"]
        values = [
            {name: arrays[f"g{k}:{name}"] for name in info["global_values"]}
            for k in range(len(picks))
        ]
        stage_line(
            f"stage 1: reused from the checkpoint in {checkpoint.folder} (NUTS on "
            f"{len(genes):,} genes, {info['seconds']:.1f} s when it ran)",
            progress,
        )
        return Stage1Globals(
            genes,
            globals_only(post, global_rvs, global_stored),  # one from before kept all
            picks,
            values,
            info["seconds"],
            info["divergences"],
            reused=True,
        )
    up_to = "up to " if stops_early(config.stage1_draws, config.stage1_check_every) else ""
    stage_line(
        f"stage 1: NUTS on {len(genes):,} of {model.data.n_genes:,} genes "
        f"({config.stage1_chains} chains x {up_to}{config.stage1_draws:,} draws)",
        progress,
    )
    idata, sub, seconds = run_stage1(
        model,
        genes,
        global_rvs,
        global_stored,
        draws=config.stage1_draws,
        tune=config.stage1_tune,
        chains=config.stage1_chains,
        random_seed=seed,
        progress=progress,
        target_accept=config.target_accept,
        check_every=config.stage1_check_every,
        min_draws=config.stage1_min_draws,
        ess_target=config.stage1_ess_per_chain * config.stage1_chains,
        rhat_target=config.stage1_rhat_target,
    )
    post = globals_only(idata["posterior"].to_dataset(), global_rvs, global_stored)
    n_flat = post.sizes["chain"] * post.sizes["draw"]
    picks = np.linspace(0, n_flat - 1, min(config.n_global_draws, n_flat)).round().astype(int)
    values = unconstrained(sub.pymc_model, [v for _, v in probe], post, picks)
    divergences = int(np.asarray(idata["sample_stats"]["diverging"]).sum())
    del idata, sub  # its subsample's local draws (0.4 GB on HAP1): not for stage 2
    if checkpoint is not None:
        checkpoint.save_stage1(
            post,
            {
                "genes": genes,
                "picks": picks,
                **{f"g{k}:{n}": v for k, g in enumerate(values) for n, v in g.items()},
            },
            {
                "seconds": seconds,
                "divergences": divergences,
                "global_values": [v for _, v in probe],
            },
        )
    stage_line(
        f"stage 1: done in {seconds:.1f} s ({post.sizes['draw']:,} draws per chain)", progress
    )
    return Stage1Globals(genes, post, picks, values, seconds, divergences, reused=False)


def globals_only(post: Any, global_rvs: list[str], global_stored: list[str]) -> Any:
    """Stage 1's posterior reduced to the global variables (free and stored).

    Its draws of the subsample's gene and guide variables are not the fit's (stage 2
    refits every gene): the fit's diagnostics, checkpoint and saved file keep what stage 2
    conditioned on.
    """
    names = dict.fromkeys([*global_rvs, *global_stored])
    return post[[n for n in names if n in post]]


def choose_genes(
    data: Any, n_genes: int, rng: np.random.Generator, n_strata: int = 10
) -> np.ndarray:
    """Codes of ``n_genes`` genes for stage 1.

    Every gene with a control guide, the rest drawn at random within strata of mean log
    normalised count (so both tails of abundance are present).
    """
    if n_genes >= data.n_genes:
        return np.arange(data.n_genes)
    codes = data.gene_codes
    control = np.zeros(data.n_genes, bool)
    control[codes[data.controls]] = True
    norm = np.log1p(data.counts / data.size_factors.to_numpy()[None, :]).mean(axis=1)
    abundance = np.bincount(codes, norm, minlength=data.n_genes) / np.bincount(
        codes, minlength=data.n_genes
    )
    chosen = list(np.flatnonzero(control))
    rest = np.flatnonzero(~control)
    n_more = max(n_genes - len(chosen), 0)
    if n_more and len(rest):
        edges = np.quantile(abundance[rest], np.linspace(0, 1, n_strata + 1)[1:-1])
        stratum = np.searchsorted(edges, abundance[rest])
        share = n_more / len(rest)
        for s in range(n_strata):
            members = rest[stratum == s]
            take = min(len(members), int(round(share * len(members))))
            chosen.extend(rng.choice(members, size=take, replace=False))
    return np.sort(np.asarray(chosen, dtype=np.int64))


def run_stage1(
    model: Any,
    genes: np.ndarray,
    global_rvs: list[str],
    global_stored: list[str],
    *,
    draws: int,
    tune: int,
    chains: int,
    random_seed: int | None,
    progress: bool,
    target_accept: float,
    engine: str = "nutpie",
    check_every: int = 0,
    min_draws: int = 0,
    ess_target: float = ESS_MIN,
    rhat_target: float = RHAT_MAX,
    **nuts_options: Any,
) -> tuple[Any, Any, float]:
    """NUTS on the subsample; returns its DataTree, the subset `ScreenModel` and seconds.

    The DataTree holds the posterior draws of ``global_rvs`` and ``global_stored`` only,
    and the sample stats. With nutpie the draws stream to a temporary zarr store and only
    those variables are read back: nutpie keeps every free variable, and the subsample's
    gene and guide effects (which stage 2 refits) were most of a genome-wide fit's peak
    memory (HAP1, 300 genes x 2 x 7,000 draws: 0.6 GB of draws, 1.6 GB peak in memory;
    0.6 GB peak through the store). ``nuts_options`` go to the sampler (nutpie's
    ``adaptation=``, as `benchmarks/bench_stage1.py` compares).

    With ``check_every`` (nutpie only) ``draws`` is the most per chain: at every multiple
    of ``check_every`` draws the global variables' first draws of every chain are checked,
    and sampling stops at the first multiple where they pass (R-hat at most
    ``rhat_target``, bulk and tail ESS at least ``ess_target``), keeping exactly those
    draws; the first multiple looked at is the first of at least ``min_draws``. The
    check sees whole multiples only, never how far a chain has run, so the result
    depends on the seed and the draws alone (a screen that mixes fast stops at its first
    look, one that does not runs to ``draws``).

    The draws themselves depend on more than the seed: on one machine, the same 60-gene
    subsample and seed gave other draws on a cold PyTensor/numba cache than on a warm
    one, and others again from another warm cache folder (each repeatable from then
    on), so it stopped at 1,000 draws in one and 1,250 in another; a genome-wide run
    stopped at 3,000 and, later the same day, 2,000. PyTensor's numba backend compiles
    with fastmath, and a gradient compiled afresh and the same loaded from the cache
    differed in round-off (181 of 4,285 values); with ``numba__fastmath=False`` they
    agreed bit for bit, at 15 % more time per gradient (README, "Beyond one machine").
    """
    import tempfile

    from screenformula.inference.nuts import from_zarr_dataset, sample_nuts
    from screenformula.inference.scratch import remove_in_background

    sub, _ = subset_model(model, genes)
    start = time.perf_counter()
    names = list(dict.fromkeys([*global_rvs, *global_stored]))
    early = stops_early(draws, check_every, engine)
    scratch = tempfile.mkdtemp(prefix="screenformula-stage1-")
    try:
        idata = sample_nuts(
            sub.pymc_model,
            draws=draws,
            tune=tune,
            chains=chains,
            cores=chains,
            random_seed=random_seed,
            engine=engine,
            var_names=names,
            progress=progress,
            target_accept=target_accept,
            zarr_dir=scratch if engine == "nutpie" else None,
            **({"blocking": False} if early else {}),
            **nuts_options,
        )
        n_kept, sampler = draws, None
        if early:
            sampler = idata
            try:
                idata, n_kept = _until_converged(
                    sampler,
                    scratch,
                    global_rvs,
                    draws,
                    check_every,
                    ess_target,
                    rhat_target,
                    start=-(-max(min_draws, check_every) // check_every) * check_every,
                )
            except BaseException:
                sampler.cancel()  # not left writing into a folder about to go
                raise
        post = idata["posterior"].to_dataset()
        stored = {unquote(n): n for n in post.data_vars}  # zarr keys are percent-escaped
        post = post[[stored[n] for n in names if n in stored]].isel(draw=slice(0, n_kept))
        stats = idata["sample_stats"].to_dataset().isel(draw=slice(0, n_kept))
        kept = xr.DataTree.from_dict(
            {
                "posterior": from_zarr_dataset(post.load()),
                "sample_stats": from_zarr_dataset(_per_draw(stats)),
            }
        )
        del idata, sampler, post, stats
        gc.collect()  # the sampler's store closed before its folder goes
    finally:
        remove_in_background(scratch)  # its thousands of files go while stage 2 runs
    return kept, sub, time.perf_counter() - start


def stops_early(draws: int, check_every: int, engine: str = "nutpie") -> bool:
    """Whether `run_stage1` with these settings may stop before ``draws`` (nutpie only)."""
    return engine == "nutpie" and 0 < check_every < draws


def _until_converged(
    sampler: Any,
    folder: str,
    names: list[str],
    draws: int,
    check_every: int,
    ess_target: float,
    rhat_target: float,
    poll_seconds: float = 1.0,
    start: int | None = None,
) -> tuple[Any, int]:
    """Wait on a non-blocking nutpie ``sampler`` until its first ``n`` draws pass.

    ``n`` runs over the multiples of ``check_every`` below ``draws``; returns the trace
    and the ``n`` kept (``draws`` when no multiple passed). The draws are read straight
    from the sampler's zarr store in ``folder`` (the sampler's own ``inspect`` reopens every
    group, about a second of CPU the chains could use), each draw once, and the store is
    looked at when the chains should have reached the next multiple by their pace so far.
    A multiple is checked only once every variable's draws up to it are in the store:
    nutpie writes one variable's chunk after another, and a check that read the unwritten
    entries (NaN) would skip them, so that when sampling stopped depended on timing.
    """
    group = Path(folder) / "posterior"
    arrays = _store_arrays(group, names)
    while arrays.keys() < set(names) and not _finished(sampler):
        time.sleep(poll_seconds)  # the store's arrays appear once sampling has begun
        arrays = _store_arrays(group, names)
    if arrays.keys() < set(names):
        return sampler.wait(), draws  # stopped before writing them (an error): as returned
    first = arrays[names[0]]
    n = check_every if start is None else start  # the first multiple looked at
    read = {k: np.asarray(arr[:, :0], dtype=float) for k, arr in arrays.items()}  # so far
    reached = time.perf_counter()  # when the last multiple was reached (or sampling began)
    pace = None  # seconds per check_every draws
    while n < draws:
        if not np.isfinite(np.asarray(first[:, n - 1], dtype=float)).all():
            if _finished(sampler):
                break  # stopped early (an error): take what the sampler returns
            due = reached + pace - time.perf_counter() if pace else 0.0
            time.sleep(max(due, poll_seconds))
            continue
        new = {k: np.asarray(a[:, read[k].shape[1] : n], dtype=float) for k, a in arrays.items()}
        if not all(np.isfinite(v).all() for v in new.values()):
            # nutpie writes the store one variable at a time: another variable's chunk of
            # these draws is not there yet (its unwritten entries read as NaN); read again
            if _finished(sampler):
                break
            time.sleep(min(poll_seconds, 0.1))
            continue
        now = time.perf_counter()
        if read[names[0]].shape[1]:  # a multiple was looked at before: the pace since
            pace = now - reached
        reached = now
        for k, v in new.items():
            read[k] = np.concatenate([read[k], v], axis=1)
        post = xr.Dataset(
            {k: (("chain", "draw", *(f"{k}_dim_{i}" for i in range(v.ndim - 2))), v)
             for k, v in read.items()}
        )  # fmt: skip
        conv = convergence(post, list(arrays))
        if all(
            v["rhat_max"] <= rhat_target and min(v["ess_bulk_min"], v["ess_tail_min"]) >= ess_target
            for v in conv.values()
        ):
            return sampler.abort(), n
        n += check_every
    return sampler.wait(), draws


def _store_arrays(group: Path, names: list[str]) -> dict[str, Any]:
    """The zarr arrays of ``names`` in a store's group folder (keys are percent-escaped).

    Only arrays whose metadata is on disk: nutpie creates the group before its arrays,
    one after another, and a check that opened the group as soon as it appeared found
    some arrays missing (a ``KeyError`` in a test run).
    """
    import zarr

    if not group.is_dir():
        return {}
    on_disk = {unquote(p.name): p for p in group.iterdir() if (p / "zarr.json").exists()}
    return {k: zarr.open_array(str(on_disk[k]), mode="r") for k in names if k in on_disk}


def _finished(sampler: Any) -> bool:
    """Whether a non-blocking nutpie sampler has stopped (it raises TimeoutError when busy)."""
    try:
        return bool(sampler.is_finished)
    except TimeoutError:
        return False


def _per_draw(stats: Any) -> Any:
    """The sample stats with one value per draw (divergences, steps...), loaded.

    A zarr store also holds per-draw positions and gradients of every parameter (unfilled
    unless asked for; loading them would allocate chains x draws x parameters).
    """
    keep = [n for n, v in stats.data_vars.items() if set(v.dims) <= {"chain", "draw"}]
    return stats[keep].load()


def unconstrained(pymc_model: Any, value_names: list[str], post: Any, picks: np.ndarray) -> list:
    """Unconstrained values of the global value variables at flat draw indices ``picks``.

    ``post`` is the stage-1 posterior (constrained values, dims chain and draw).
    """
    by_value = {pymc_model.rvs_to_values[rv].name: rv for rv in pymc_model.free_RVs}
    out = [dict() for _ in picks]
    for name in value_names:
        rv = by_value[name]
        arr = post[rv.name].values
        flat = arr.reshape((-1,) + arr.shape[2:])[picks]
        tr = pymc_model.rvs_to_transforms.get(rv)
        if tr is None:
            for k, v in enumerate(flat):
                out[k][name] = np.asarray(v, dtype=float)
            continue
        x = rv.type()
        fn = pytensor.function(
            [x], tr.forward(x, *rv.owner.inputs), on_unused_input="ignore", mode="FAST_COMPILE"
        )
        for k, v in enumerate(flat):
            out[k][name] = np.asarray(fn(np.asarray(v, dtype=rv.dtype)), dtype=float)
    return out


def lkj_correlations(name: str, arr: np.ndarray) -> np.ndarray | None:
    """The correlations (chain, draw, pair) of an LKJ Cholesky factor's draws, else None.

    Stage 1 samples a correlated term's Cholesky factor ``L_<term>``; a fit's diagnostics
    judge the correlations ``cor_<term>`` made from it, whose R-hat can be the larger:
    on JACKS's five lines in one model stage 1 stopped with the factor at R-hat 1.017,
    under its 1.0198, and the fit's check then found a correlation at 1.02.
    """
    from screenformula.spec.names import CHOL_PREFIX, cor_pairs

    if not name.startswith(CHOL_PREFIX) or arr.ndim != 4 or arr.shape[-1] != arr.shape[-2]:
        return None
    rows, cols = np.array(cor_pairs(arr.shape[-1]), dtype=int).T  # brms's order, as cor_<term>
    return (arr @ np.swapaxes(arr, -1, -2))[..., rows, cols]


def convergence(post: Any, names: list[str]) -> dict[str, dict[str, float]]:
    """Max R-hat and min bulk/tail ESS of each named variable of the stage-1 posterior."""
    from arviz_stats.base.array import array_stats

    out = {}
    for name in names:
        arr = np.asarray(post[name].values, dtype=float)
        corr = lkj_correlations(name, arr)
        arr = arr.reshape(arr.shape[:2] + (-1,))
        if corr is not None:  # judged as the fit's diagnostics judge it: its correlations
            arr = np.concatenate([arr, corr], axis=2)
        arr = np.moveaxis(arr, 2, 0)  # (k, chain, draw)
        # constant entries (an LKJ factor's fixed diagonal) give 0 / 0: NaN, skipped below
        with np.errstate(divide="ignore", invalid="ignore"):
            rhat = np.asarray(array_stats.rhat(arr, chain_axis=-2, draw_axis=-1))
            ess_b = np.asarray(array_stats.ess(arr, chain_axis=-2, draw_axis=-1, method="bulk"))
            ess_t = np.asarray(
                array_stats.ess(arr, chain_axis=-2, draw_axis=-1, method="tail", prob=(0.05, 0.95))
            )
        out[name] = {
            "rhat_max": float(np.nanmax(rhat)),
            "ess_bulk_min": float(np.nanmin(ess_b)),
            "ess_tail_min": float(np.nanmin(ess_t)),
        }
    return out
