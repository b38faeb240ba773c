"""Stage 2 on a local 2-worker Dask cluster vs in this process; many screens in one command.

Usage::

    python benchmarks/bench_distributed.py --genes 5000 --chunk-genes 1250 \
        --screens 8 --screen-genes 100 [--alone 2]

Part 1: a simulated screen of ``--genes`` genes (seed formula, pool + 3 + 3, 4 guides per
gene). Stage 1 runs once (NUTS on ``--stage1-genes`` genes) and is kept in a checkpoint;
stage 2 then runs from that checkpoint three times with the same seed: in this process,
on 2 local processes (the engine's default on a multi-core machine), and on a Dask
cluster of a ``dask scheduler`` and two ``dask worker`` processes (``--nthreads 1``)
started here. Reported: stage-2 wall seconds of each, the cluster's start-up, and whether
the draws are identical. The cluster's overhead is its stage-2 wall time minus the local
processes' (same 2 cores, same chunks): scattering the screen, shipping results back,
each worker's first compilation.

Part 2: ``--screens`` simulated screens of ``--screen-genes`` genes, two-stage fits with
small settings (``$SCREENFORMULA_TWO_STAGE``), fitted by ``screenformula fit`` once with
a ``screens:`` list and once per screen (one command each, as a shell loop would).
Reported: the wall time of each way, per screen.

Writes ``benchmarks/results/distributed.{json,md}``. Run it on a quiet machine: every
figure is wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

import screenformula as sf  # noqa: E402
from screenformula.inference.two_stage.engine import fit_two_stage  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from _machine import cpu_name  # noqa: E402

FORMULA = "count ~ 1 + treatment + (1 + treatment | gene) + (1 + treatment | gene:sgrna)"
OUT = Path(__file__).parent / "results"
DASK = str(Path(sys.executable).with_name("dask"))
#: Part 2's engine settings: small, the same for both ways.
SMALL = "stage1_draws=100,stage1_tune=100,n_global_draws=2"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_cluster(folder: Path, workers: int = 2) -> tuple[str, list, float]:
    """``dask scheduler`` + ``workers`` x ``dask worker`` here; (address, processes, seconds)."""
    from distributed import Client

    start = time.perf_counter()
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = [
        subprocess.Popen(
            [DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    ]
    for i in range(workers):
        procs.append(
            subprocess.Popen(
                [DASK, "worker", address, "--nthreads", "1", "--nworkers", "1",
                 "--no-dashboard", "--host", "127.0.0.1",
                 "--local-directory", str(folder / f"worker{i}")],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        )  # fmt: skip
    with Client(address, timeout="60s") as client:
        client.wait_for_workers(workers, timeout=120)
    return address, procs, time.perf_counter() - start


def stop(procs: list) -> None:
    for proc in reversed(procs):
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def part1(args: argparse.Namespace, work: Path) -> dict:
    """Stage 2 in this process, on 2 local processes and on a 2-worker Dask cluster."""
    data, _ = sf.simulate_screen(n_genes=args.genes, random_seed=7)
    model = sf.ScreenModel(FORMULA, data)
    settings = dict(
        draws=args.draws,
        random_seed=1,
        progress=True,
        stage1_genes=args.stage1_genes,
        stage1_draws=args.stage1_draws,
        stage1_tune=args.stage1_draws,
        chunk_genes=args.chunk_genes,
    )
    first = work / "first"
    t = time.perf_counter()
    idata, opt = fit_two_stage(model, checkpoint=first, workers=1, **settings)
    out = {
        "genes": args.genes,
        "guides": int(data.n_sgrnas),
        "draws": args.draws,
        "chunks": opt["n_chunks"],
        "chunk_genes": args.chunk_genes,
        "stage1_seconds": opt["seconds"]["stage1"],
        "in_process": {
            "stage2_seconds": opt["seconds"]["stage2"],
            "cpu_seconds": opt["seconds"]["stage2_parts"],
            "total_seconds": round(time.perf_counter() - t, 1),
        },
    }
    reference = {n: v.values for n, v in idata["posterior"].data_vars.items()}

    def from_stage1(name: str) -> Path:
        folder = work / name
        folder.mkdir()
        for f in ("fingerprint.json", "stage1.nc", "stage1.npz", "stage1.json"):
            shutil.copy(first / f, folder / f)
        return folder

    def same(tree) -> dict:  # noqa: ANN001
        """Which variables' draws differ from the in-process run's, and by how much."""
        differ = {
            n: float(np.nanmax(np.abs(tree["posterior"][n].values - v)))
            for n, v in reference.items()
            if not np.array_equal(tree["posterior"][n].values, v)
        }
        return {"identical": not differ, "max_abs_difference": differ}

    t = time.perf_counter()
    pooled, opt = fit_two_stage(model, checkpoint=from_stage1("pool"), workers=2, **settings)
    out["processes"] = {
        "stage2_seconds": opt["seconds"]["stage2"],
        "total_seconds": round(time.perf_counter() - t, 1),
        **same(pooled),
        "hmc_genes": opt["n_hmc_genes"],
    }
    address, procs, started = start_cluster(work)
    try:
        t = time.perf_counter()
        dask, opt = fit_two_stage(model, checkpoint=from_stage1("dask"), client=address, **settings)
        out["dask"] = {
            "cluster_start_seconds": round(started, 1),
            "stage2_seconds": opt["seconds"]["stage2"],
            "total_seconds": round(time.perf_counter() - t, 1),
            "workers": opt["workers"],
            **same(dask),
        }
        # a second fit on the same, now warm, workers: each has compiled once
        t = time.perf_counter()
        again, opt = fit_two_stage(model, checkpoint=from_stage1("dask2"), client=address,
                                   **settings)  # fmt: skip
        out["dask_warm"] = {
            "stage2_seconds": opt["seconds"]["stage2"],
            **same(again),
        }
    finally:
        stop(procs)
    out["cluster_overhead_seconds"] = round(
        out["dask"]["stage2_seconds"] - out["processes"]["stage2_seconds"], 1
    )
    return out


def write_screen(path: Path, n_genes: int, seed: int) -> None:
    data, _ = sf.simulate_screen(n_genes=n_genes, random_seed=seed)
    frame = data.counts_frame()
    frame.columns = ["sgRNA", "Gene", "P0", "C1", "C2", "C3", "T1", "T2", "T3"]
    frame.to_csv(path, sep="\t", index=False)


SHEET = "sample condition pool\nP0 plasmid true\n" + "".join(
    f"C{i} control false\nT{i} drug false\n" for i in (1, 2, 3)
)
CONFIG = """\
formula: "count ~ 1 + condition + (1 + condition | gene) + (1 + condition | gene:sgrna)"
samples: samples.tsv
fit: {{method: two-stage, draws: 500, seed: 1}}
contrasts: [{{factor: condition, ref: control}}]
{source}
output: {output}
"""


def part2(args: argparse.Namespace, work: Path) -> dict:
    """``--screens`` screens: one ``screenformula fit`` with ``screens:``, and one each."""
    folder = work / "screens"
    folder.mkdir()
    (folder / "samples.tsv").write_text(SHEET)
    names = [f"s{i + 1}" for i in range(args.screens)]
    for i, name in enumerate(names):
        write_screen(folder / f"{name}.txt", args.screen_genes, seed=100 + i)
    env = {**os.environ, "SCREENFORMULA_TWO_STAGE": SMALL}
    command = [sys.executable, "-m", "screenformula.cli", "fit"]
    listed = "screens: [" + ", ".join(f"{n}.txt" for n in names) + "]"
    (folder / "all.yaml").write_text(CONFIG.format(source=listed, output="together/"))
    t = time.perf_counter()
    run = subprocess.run([*command, "all.yaml", "--quiet"], cwd=folder, env=env)
    together = time.perf_counter() - t
    one_by_one, status = [], [run.returncode]
    for name in names[: args.alone or len(names)]:
        (folder / f"{name}.yaml").write_text(
            CONFIG.format(source=f"counts: {name}.txt", output=f"alone/{name}/")
        )
        t = time.perf_counter()
        run = subprocess.run([*command, f"{name}.yaml", "--quiet"], cwd=folder, env=env)
        one_by_one.append(round(time.perf_counter() - t, 1))
        status.append(run.returncode)
    return {
        "screens": args.screens,
        "genes_per_screen": args.screen_genes,
        "engine_settings": SMALL,
        "one_command_seconds": round(together, 1),
        "one_by_one_measured": len(one_by_one),
        # all screens one by one: measured, or the measured mean times the screens
        "one_by_one_seconds": round(np.mean(one_by_one) * len(names), 1),
        "one_by_one_each": one_by_one,
        "exit_statuses": status,
    }


def markdown(result: dict) -> str:
    lines = [
        "# Distributed stage 2 and many screens (`benchmarks/bench_distributed.py`)",
        "",
        f"`{result['command']}`; {result['when']}; {result['cpu']}.",
        "",
    ]
    p = result.get("part1")
    if p:
        lines += [
            f"## Stage 2 of {p['genes']:,} genes ({p['guides']:,} guides), {p['draws']} draws, "
            f"{p['chunks']} chunks of {p['chunk_genes']:,} genes",
            "",
            f"Stage 1 once, {p['stage1_seconds']} s, reused from the checkpoint by the others.",
            "",
            "| where | stage-2 wall s | identical draws |",
            "|---|---|---|",
            f"| this process | {p['in_process']['stage2_seconds']} | (reference) |",
            f"| 2 local processes | {p['processes']['stage2_seconds']} | "
            f"{p['processes']['identical']} |",
            f"| Dask, 2 workers (cold) | {p['dask']['stage2_seconds']} | "
            f"{p['dask']['identical']} |",
            f"| Dask, 2 workers (warm: 2nd fit) | {p['dask_warm']['stage2_seconds']} | "
            f"{p['dask_warm']['identical']} |",
            "",
            f"Genes refitted by HMC: {p['processes']['hmc_genes']}. Draws that differ from "
            f"the in-process run (max |difference|): local processes "
            f"{p['processes']['max_abs_difference'] or 'none'}; Dask cold "
            f"{p['dask']['max_abs_difference'] or 'none'}; Dask warm "
            f"{p['dask_warm']['max_abs_difference'] or 'none'}.",
            "",
            f"Cluster start-up (scheduler + 2 workers until both registered): "
            f"{p['dask']['cluster_start_seconds']} s. Overhead of the cluster against 2 local "
            f"processes on the same cores (cold): {p['cluster_overhead_seconds']} s.",
            "",
        ]
    q = result.get("part2")
    if q:
        extrapolated = (
            f" (the first {q['one_by_one_measured']} measured, x {q['screens']})"
            if q["one_by_one_measured"] < q["screens"]
            else ""
        )
        lines += [
            f"## {q['screens']} screens of {q['genes_per_screen']} genes (two-stage, "
            f"`{q['engine_settings']}`)",
            "",
            "| way | wall s | per screen |",
            "|---|---|---|",
            f"| one `screenformula fit` with `screens:` | {q['one_command_seconds']} | "
            f"{q['one_command_seconds'] / q['screens']:.1f} |",
            f"| one command per screen | {q['one_by_one_seconds']}{extrapolated} | "
            f"{q['one_by_one_seconds'] / q['screens']:.1f} |",
            "",
            f"One by one, each screen: {q['one_by_one_each']} s.",
            "",
            f"Exit statuses: {q['exit_statuses']}.",
            "",
        ]
    if result.get("note"):
        lines += [result["note"], ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genes", type=int, default=5000)
    parser.add_argument("--chunk-genes", type=int, default=1250)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--stage1-genes", type=int, default=300)
    parser.add_argument("--stage1-draws", type=int, default=200)
    parser.add_argument("--screens", type=int, default=8)
    parser.add_argument("--screen-genes", type=int, default=100)
    parser.add_argument(
        "--alone",
        type=int,
        default=0,
        help="screens run one by one (0: all; else the mean "
        "of the first ALONE is scaled to all, and the results say so)",
    )
    parser.add_argument("--skip", choices=["part1", "part2"], nargs="*", default=[])
    parser.add_argument("--note", default="", help="a line for the results (the load)")
    parser.add_argument("--out", default=str(OUT / "distributed"))
    args = parser.parse_args()
    result = {
        "command": "python benchmarks/bench_distributed.py " + " ".join(sys.argv[1:]),
        "when": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, load "
        f"{os.getloadavg()[0]:.1f} at start",
        "cpu": cpu_name(),
        "note": args.note,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def write() -> None:
        out.with_suffix(".json").write_text(json.dumps(result, indent=1, default=str))
        out.with_suffix(".md").write_text(markdown(result))

    with tempfile.TemporaryDirectory(prefix="bench-distributed-") as tmp:
        if "part1" not in args.skip:
            result["part1"] = part1(args, Path(tmp))
            write()
        if "part2" not in args.skip:
            result["part2"] = part2(args, Path(tmp))
            write()
    print(markdown(result))


if __name__ == "__main__":
    main()
