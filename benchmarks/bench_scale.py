"""Speed and memory at scale: screenformula against ``mageck2`` on the same simulated tables.

For each simulated screen (``simulate_screen``: 4 guides per gene, one pool sample, control
and treated samples), written as a MAGeCK count table, this runs back to back, each in its
own process, from the table on disk to a gene table on disk:

- screenformula with ``--method`` (default ``"auto"``, the library's default: NUTS up to
  2,000 genes and the two-stage engine above; ``two-stage`` or ``approx``, ADVI, force one),
  with the library's default draws (default model, ``pool="joint"``), as the tool
  ``screenformula <method>``; the row records the method that ran (``method_used``) and, for
  the two-stage engine, its stage-1 R-hat max;
- screenformula ``method="nuts"`` (nutpie, 2 chains x 500 draws after 500 tuning steps) up to
  ``--nuts-genes`` genes (NUTS at 20,000 genes takes hours on 2 cores: see
  ``bench_model.py``'s per-gradient cost);
- ``mageck2 test`` (control vs treated; MAGeCK does not use the pool sample);
- ``mageck2 mle`` (design matrix baseline + treatment) up to ``--mle-genes`` genes (it took
  over 10 minutes on a 10,000-guide table).

and records wall time, CPU time and peak memory (``wait4``: the process and its
descendants), as ratios to ``mageck2 test`` on the same table. The grid varies the number
of genes (500, 2,000, 20,000: guides grow with them) and, at 2,000 genes, the number of
samples (3 + 3 and 6 + 6). The real HAP1 screen's timings are in ``bench_real.py``.

    nice -n 5 .venv/bin/python benchmarks/bench_scale.py           # method auto
    nice -n 5 .venv/bin/python benchmarks/bench_scale.py --method approx   # as before (~30 min)
    .venv/bin/python benchmarks/bench_scale.py --quick             # 500 and 2,000 genes
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_real import ensure_mageck, environment, fit_detail, mageck_env, measure  # noqa: E402
from report_real import peak_cell  # noqa: E402

RESULTS = HERE / "results"
FORMULA = "count ~ 1 + treatment + (1 + treatment | gene) + (1 + treatment | gene:sgrna)"
NUTS = {"draws": 500, "tune": 500, "chains": 2}
#: ``--method`` choices for ``screenformula <method>`` (NUTS has its own column).
METHODS = ("auto", "two-stage", "approx")


def write_screen(n_genes: int, n_replicates: int, seed: int, folder: Path) -> dict[str, Any]:
    """Simulate a screen; write counts.tsv (MAGeCK format), samples.tsv and design.txt."""
    import screenformula as sf

    data, _ = sf.simulate_screen(n_genes=n_genes, n_replicates=n_replicates, random_seed=seed)
    samples = [str(s) for s in data.samples.index]
    counts = pd.DataFrame(data.counts, columns=samples)
    counts.insert(0, "Gene", np.asarray(data.genes_of_sgrna).astype(str))
    counts.insert(0, "sgRNA", np.asarray(data.sgrnas).astype(str))
    counts.to_csv(folder / "counts.tsv", sep="\t", index=False)
    data.samples.reset_index().to_csv(folder / "samples.tsv", sep="\t", index=False)
    treatment = data.samples["treatment"].astype(str)
    pool = data.samples["pool"].astype(bool)
    control = [
        s for s, t, p in zip(samples, treatment, pool, strict=True) if t == "control" and not p
    ]
    treated = [s for s, t in zip(samples, treatment, strict=True) if t == "treated"]
    design = pd.DataFrame({"Samples": control + treated, "baseline": 1})
    design["treated"] = [0] * len(control) + [1] * len(treated)
    design.to_csv(folder / "design.txt", sep="\t", index=False)
    return {
        "n_genes": n_genes,
        "n_sgrnas": int(data.counts.shape[0]),
        "n_samples": len(samples),
        "control": control,
        "treated": treated,
    }


def child(folder: Path, method: str) -> None:
    """Table on disk -> gene table on disk with screenformula (timed by the parent).

    Prints one JSON line: the method that ran (``method_used``: what ``auto`` picked) and,
    for the two-stage engine, its stage-1 R-hat max.
    """
    if method not in (*METHODS, "nuts"):
        raise ValueError(f"unknown method {method!r}")
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.getLogger("pymc").setLevel(logging.ERROR)
    import screenformula as sf

    data = sf.read_counts(folder / "counts.tsv", folder / "samples.tsv")
    model = sf.ScreenModel(FORMULA, data)
    kwargs: dict[str, Any] = {"random_seed": 1, "progress": False, "store_sgrna": False}
    if method == "nuts":
        kwargs.update(NUTS)
    fit = model.fit(method, log_likelihood=False, **kwargs)
    genes = fit.contrast("treatment").genes
    genes.to_csv(folder / f"{method.replace('-', '_')}_genes.tsv", sep="\t", index=False)
    print(json.dumps(fit_detail(fit)))


def child_detail(folder: Path) -> dict[str, Any]:
    """The child's JSON line (its last line on stdout), without empty values."""
    try:
        detail = json.loads((folder / "stdout.txt").read_text().strip().splitlines()[-1])
    except (OSError, IndexError, ValueError):
        return {}
    return {k: v for k, v in detail.items() if v is not None}


def run_grid(args: argparse.Namespace) -> list[dict[str, Any]]:
    exe = ensure_mageck()
    env = mageck_env(exe)
    rows = []
    grid = [(g, 3) for g in args.genes] + [(g, 6) for g in args.genes_6rep]
    for n_genes, reps in grid:
        with tempfile.TemporaryDirectory(prefix=f"bench_scale_{n_genes}_") as tmp:
            folder = Path(tmp)
            info = write_screen(n_genes, reps, args.seed, folder)
            me = [sys.executable, str(Path(__file__).resolve()), "--child", str(folder)]
            test = [str(exe), "test", "-k", "counts.tsv", "-t", ",".join(info["treated"])]
            test += ["-c", ",".join(info["control"]), "-n", "mageck"]
            mle = [str(exe), "mle", "-k", "counts.tsv", "-d", "design.txt", "-n", "mle"]
            ours = (f"screenformula {args.method}", [*me, args.method], None)
            jobs = [("mageck2 test", test, env), ours]
            if n_genes <= args.nuts_genes:
                jobs.append(("screenformula NUTS", [*me, "nuts"], None))
            if n_genes <= args.mle_genes:
                jobs.append(("mageck2 mle", mle, env))
            for tool, cmd, job_env in jobs:
                try:
                    result = measure(cmd, folder, job_env)
                    if tool.startswith("screenformula"):
                        result.update(child_detail(folder))
                except RuntimeError as err:
                    result = {"failed": str(err).splitlines()[0][:200]}
                row = {**info, "replicates": reps, "tool": tool, **result}
                row.pop("control"), row.pop("treated")
                rows.append(row)
                print(f"[scale] {n_genes} genes, {reps}+{reps}: {tool}: {result}", file=sys.stderr)
    return rows


def markdown(record: dict[str, Any]) -> str:
    env = record["env"]
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items())
    lines = [
        "# bench_scale results",
        "",
        f"Generated by `benchmarks/bench_scale.py` (do not edit by hand): {env['date']}, "
        f"{env['cores']} cores ({env['cpu']}), load {env['load_start']} at start, git "
        f"{env['git']}; {versions}.",
        "",
        "Each tool from the count table on disk to a gene table on disk, in its own process, "
        "back to back on the same table; *x test*: wall time over `mageck2 test`'s on the same "
        "table. Peak memory: the largest process's maximum RSS (`wait4`), and in brackets, where "
        "measured, every process of the tool together (summed PSS, sampled every 0.25 s).",
        "",
        "| genes | guides | samples (pool + control + treated) | tool | wall s | CPU s | "
        "peak GB | x test (wall) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    rows = record["rows"]
    for row in rows:
        base = next(
            r
            for r in rows
            if r["tool"] == "mageck2 test"
            and r["n_genes"] == row["n_genes"]
            and r["replicates"] == row["replicates"]
        )
        if "failed" in row:
            cells = f"failed: {row['failed']} | | | |"
        else:
            ratio = row["wall_s"] / base["wall_s"] if base.get("wall_s") else float("nan")
            cells = f"{row['wall_s']:.0f} | {row['cpu_s']:.0f} | {peak_cell(row)} | {ratio:.1f} |"
        samples = f"1 + {row['replicates']} + {row['replicates']}"
        tool = row["tool"]
        if tool == "screenformula auto" and row.get("method_used"):
            tool += f" ({row['method_used']})"  # what auto ran
        lines.append(f"| {row['n_genes']:,} | {row['n_sgrnas']:,} | {samples} | {tool} | {cells}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genes", type=int, nargs="+", default=[500, 2000, 20000])
    parser.add_argument("--genes-6rep", type=int, nargs="*", default=[2000])
    parser.add_argument("--nuts-genes", type=int, default=500, help="NUTS up to this size")
    parser.add_argument("--mle-genes", type=int, default=500, help="mageck2 mle up to this")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--method",
        choices=METHODS,
        default="auto",
        help="screenformula's fit, the tool 'screenformula <method>' (default: auto)",
    )
    parser.add_argument("--quick", action="store_true", help="500 and 2,000 genes only")
    parser.add_argument("--out", type=Path, default=RESULTS / "scale.json")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(Path(args.child[0]), args.child[1])
        return
    if args.quick:
        args.genes = [g for g in args.genes if g <= 2000]
    if args.report_only:
        record = json.loads(args.out.read_text())
    else:
        env = environment()
        record = {"env": env, "rows": run_grid(args)}
        args.out.write_text(json.dumps(record, indent=1))
    args.out.with_suffix(".md").write_text(markdown(record))
    if args.out == RESULTS / "scale.json":
        import update_readme

        update_readme.main([])
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}", file=sys.stderr)


if __name__ == "__main__":
    main()
