"""The two-stage engine's orchestration: `fit_two_stage`.

Stage 1 (`stage1.sample_globals`) samples the global parameters with NUTS on a subsample
of genes. Stage 2 gives every gene's block its posterior given K of those draws, over
chunks of genes: `chunk.run_chunk`, a pure function of each chunk's arrays, run by an
executor of `screenformula.inference.executors` (this process, local processes, a Dask
cluster). This module chooses the chunks and their seeds, runs them, and assembles the
draws, diagnostics and options of one fit.

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
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Any

import numpy as np
import xarray as xr

from screenformula.inference.two_stage.blocks import (
    check_supported,
    global_free_rvs,
    model_settings,
    variable_level,
)
from screenformula.inference.two_stage.chunk import (
    ChunkPart,
    ChunkResult,
    ChunkShared,
    result_from_arrays,
    result_to_arrays,
    run_chunk_part,
)
from screenformula.inference.two_stage.config import TwoStageConfig
from screenformula.inference.two_stage.posterior import posterior_dataset

__all__ = ["TwoStageConfig", "fit_two_stage"]


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
    from screenformula.inference.nuts import stored_variables, variable_shapes
    from screenformula.inference.progress import Bar, stage_line
    from screenformula.inference.scratch import create_draws_file, open_draws
    from screenformula.inference.two_stage.checkpoint import Checkpoint, hash_arrays
    from screenformula.inference.two_stage.stage1 import sample_globals
    from screenformula.io.memmap import in_memory, release_all

    config = replace(config or TwoStageConfig(), **overrides)
    check_supported(model.spec)
    t_start = time.perf_counter()
    data = model.data
    full = model.pymc_model
    shapes = variable_shapes(full)
    if var_names is None:
        stored = stored_variables(full, bool(store_sgrna))
    else:  # exactly these (the method registry's request), known to the model
        stored = [n for n in var_names if n in shapes]
    n_genes, n_sgrna = data.n_genes, data.n_sgrnas
    level = {name: variable_level(full, name, shapes[name], n_genes, n_sgrna) for name in stored}
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
    probe = global_free_rvs(full, n_genes, n_sgrna, shapes)
    stage1 = sample_globals(model, config, rng, probe, global_stored, ckpt, progress)
    post1, picks, globals_unc, K = stage1.posterior, stage1.picks, stage1.values, stage1.K
    if model.spec.guide_states != "none":
        return _grid_fit(
            model,
            stage1,
            probe,
            config,
            draws,
            random_seed,
            rng,
            allocate,
            executor,
            client,
            progress,
            t_start,
            {"global": global_stored, "gene": gene_names, "sgrna": guide_names},
            shapes,
            ckpt,
        )
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
    guide_arrays = {}
    for n in guide_names:
        shape = (1, draws, *shapes[n])
        guide_arrays[n] = np.empty(shape) if allocate is None else allocate(n, shape)
    files = {n: getattr(a, "filename", None) for n, a in guide_arrays.items()}
    # on this machine workers write guide draws to files themselves, never returning them
    # (at 80,000 guides, about 1 GB per chunk, pickled twice on the way back): into the
    # fit's own files, or with a checkpoint into the chunk's files there (a resumed run
    # needs them), copied into the fit's files as each chunk finishes
    local = client is None and getattr(executor, "kind", None) != "dask"
    on_disk = bool(files) and all(files.values()) and local
    via_checkpoint = on_disk and ckpt is not None
    for arr in guide_arrays.values():  # written by the chunks from here on
        if on_disk:
            arr.flush()
    # gene-level draws, likewise on this machine: written by the workers into files of the
    # whole screen's draws (in a folder of this fit's), read into memory once stage 2 is
    # done. Returned pickled, a genome-wide chunk's (about 200 MB) had three copies on
    # the way, in the worker and here: with two workers, 2.4-2.9 GB of memory in all
    # processes together at the end of stage 2, against 1.5 GB for the largest one
    gene_dir = None
    if local and gene_names:  # removed by .cleanup() below, or when collected on an error
        gene_dir = tempfile.TemporaryDirectory(
            prefix="screenformula-genes-", ignore_cleanup_errors=True
        )
    gene_arrays = {}
    for j, n in enumerate(gene_names):
        shape = (1, draws, *shapes[n])
        if gene_dir is None:
            gene_arrays[n] = np.empty(shape)
        else:  # named by number: a variable's name may hold any character
            create_draws_file(os.path.join(gene_dir.name, f"gene-{j}.npy"), shape)
            gene_arrays[n] = open_draws(os.path.join(gene_dir.name, f"gene-{j}.npy"))
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
            results[i] = result_from_arrays(arrays)
            _place(results[i], i, chunks, rows, gene_arrays, guide_arrays, on_disk)
            release_all(gene_arrays.values())
    reused = n_chunks - len(todo)

    def sinks(i: int) -> dict[str, tuple[str, np.ndarray]] | None:
        out = {}
        if gene_dir is not None:  # the fit's own gene files, at the chunk's genes
            out = {n: (str(arr.filename), chunks[i]) for n, arr in gene_arrays.items()}
        if not on_disk:
            return out or None
        if not via_checkpoint:
            return {**out, **{n: (str(files[n]), rows[i]) for n in guide_names}}
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
                    if ckpt is not None and gene_dir is not None:
                        # its gene draws are in the fit's files: kept from there
                        result.gene_draws = {
                            n: arr[0][:, chunks[i]] for n, arr in gene_arrays.items()
                        }
                        release_all(gene_arrays.values())
                        ckpt.save_chunk(i, result_to_arrays(result), metas[i])
                        result.gene_draws = {}  # already in place
                    elif ckpt is not None:
                        ckpt.save_chunk(i, result_to_arrays(result), metas[i])
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
    if gene_dir is not None:
        gene_arrays = {n: in_memory(arr) for n, arr in gene_arrays.items()}
        gene_dir.cleanup()
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
    posterior = posterior_dataset(full, post_vars, shapes)
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
        "stage1": stage1.record([rv for rv, _ in probe]),
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
            "stage1": round(stage1.seconds, 2),
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
            "stage1_reused": stage1.reused,
            "chunks_reused": reused,
            "chunks_computed": len(todo),
        }
    return idata, options


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


def _grid_fit(
    model: Any,
    stage1: Any,
    probe: list[tuple[str, str]],
    config: TwoStageConfig,
    draws: int,
    random_seed: int | None,
    rng: np.random.Generator,
    allocate: Callable[[str, tuple[int, ...]], np.ndarray] | None,
    executor: Any,
    client: Any,
    progress: bool,
    t_start: float,
    stored: dict[str, list[str]],
    shapes: dict[str, tuple[int, ...]],
    ckpt: Any,
) -> tuple[xr.DataTree, dict[str, Any]]:
    """Stage 2 of a model with guide states: the grid (`grid_stage.fit_grid_stage`)."""
    from screenformula.inference.two_stage.grid_stage import fit_grid_stage

    def in_memory(name: str, shape: tuple[int, ...]) -> np.ndarray:
        return np.empty(shape)

    posterior, gene_diag, grid_options = fit_grid_stage(
        model,
        stage1,
        stored,
        shapes,
        draws,
        rng,
        allocate or in_memory,
        executor,
        client,
        _workers(config, model.data.n_genes),
        progress,
    )
    K = stage1.K
    draw_k = np.arange(draws) % K
    stats = xr.Dataset(
        {"global_draw": (("chain", "draw"), stage1.picks[draw_k][None])},
        coords={"chain": [0], "draw": np.arange(draws)},
    )
    idata = xr.DataTree.from_dict(
        {
            "posterior": posterior,
            "sample_stats": stats,
            "gene_diagnostics": gene_diag,
            "stage1_posterior": stage1.posterior,
        }
    )
    seconds = grid_options.pop("seconds_grid")
    options = {
        "method": "two-stage",
        "draws": draws,
        "chains": 1,
        "random_seed": random_seed,
        "store_sgrna": False,
        "config": asdict(config),
        "stage1": stage1.record([rv for rv, _ in probe]),
        "n_global_draws": int(K),
        **grid_options,
        "seconds": {
            "stage1": round(stage1.seconds, 2),
            **seconds,
            "total": round(time.perf_counter() - t_start, 2),
        },
    }
    if ckpt is not None:
        options["checkpoint"] = {
            "folder": str(ckpt.folder),
            "stage1_reused": stage1.reused,
            "chunks_reused": 0,
            "chunks_computed": 0,
        }
    return idata, options
