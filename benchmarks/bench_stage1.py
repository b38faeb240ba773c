"""Stage 1 of the two-stage engine alone on HAP1 TKOv3: how its settings mix, per second.

Stage 1 is NUTS on a subsample of genes; its draws of the global parameters (population
coefficients, gene- and guide-level sds and correlations, dispersion trend) are what
stage 2 conditions on. This benchmark runs stage 1 only, on the genome-wide HAP1 screen
(``../shared/data/bagel-hap1-tkov3``, T18A-C vs T0, the `bench_real` formula, default
dispersion), for each configuration given as ``GENES:DRAWS:TUNE[:ADAPTATION]`` (2 chains,
nutpie, ``target_accept`` 0.8, seed 5, one BLAS thread), and records per global variable
the worst R-hat and the smallest bulk / tail ESS, the leapfrog steps per draw and the
seconds of the engine's own `stage1.run_stage1` (compile included: each configuration is
a new subset model), so that the defaults trade mixing against time by measurement.

    nice -n 5 .venv/bin/python benchmarks/bench_stage1.py 1000:500:500 500:1000:1000 300:2000:1000
    .venv/bin/python benchmarks/bench_stage1.py --report-only

Results merge into ``benchmarks/results/stage1.json`` (by configuration) and the table
goes to ``benchmarks/results/stage1.md``. Stage 2's accuracy under each setting is
`bench_two_stage` (``--hap1-reference --set stage1_genes=... n_global_draws=...``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from _machine import cpu_name  # noqa: E402
from bench_real import FORMULA, hap1_table, make_case  # noqa: E402

OUT = HERE / "results" / "stage1.json"


def hap1_model():  # noqa: ANN201 - a ScreenModel
    """The genome-wide HAP1 model of `bench_two_stage_real` (defaults, T0 the reference)."""
    import tempfile

    from bench_two_stage_real import write_inputs

    import screenformula as sf

    table, control, treated = hap1_table()
    with tempfile.TemporaryDirectory(prefix="bench_stage1_") as tmp:
        folder = Path(tmp)
        write_inputs(folder, make_case("hap1", table, control, treated, {}))
        data = sf.read_counts(folder / "counts.tsv", folder / "samples.tsv")
    return sf.ScreenModel(FORMULA, data, pool=None, reference={"treatment": "ctrl"})


#: The guide-level term's parameterisation (``GUIDE_TERM`` of a configuration): the
#: model's own (``auto``: guide baselines centred, guide LFC deviations non-centred), all
#: centred or all non-centred.
GUIDE_TERMS = {"auto": "auto", "centred": True, "noncentred": False}


def with_guide_term(model, guide_term: str):  # noqa: ANN001, ANN201 - ScreenModel in and out
    """``model`` with its guide-level term parameterised as ``guide_term`` says."""
    import screenformula as sf

    if guide_term == "auto":
        return model
    return sf.ScreenModel(
        FORMULA,
        model.data,
        pool=None,
        reference={"treatment": "ctrl"},
        parameterization={"gene:sgrna": GUIDE_TERMS[guide_term]},
    )


def run_config(model, genes: int, draws: int, tune: int, adaptation: str) -> dict:  # noqa: ANN001
    """Stage 1 (the engine's `run_stage1`) with these settings: convergence, steps, seconds."""
    from screenformula.inference.nuts import variable_shapes
    from screenformula.inference.two_stage.blocks import global_free_rvs
    from screenformula.inference.two_stage.stage1 import choose_genes, convergence, run_stage1

    data = model.data
    full = model.pymc_model
    probe = [
        rv for rv, _ in global_free_rvs(full, data.n_genes, data.n_sgrnas, variable_shapes(full))
    ]
    chosen = choose_genes(data, genes, np.random.default_rng(1))
    idata, _, seconds = run_stage1(
        model,
        chosen,
        probe,
        [],
        draws=draws,
        tune=tune,
        chains=2,
        random_seed=5,
        progress=False,
        target_accept=0.8,
        adaptation=adaptation,
    )
    stats = idata["sample_stats"]
    conv = convergence(idata["posterior"].to_dataset(), probe)
    return {
        "genes": int(len(chosen)),
        "draws": draws,
        "tune": tune,
        "adaptation": adaptation,
        "seconds": round(seconds, 1),
        "steps_per_draw": round(float(np.asarray(stats["n_steps"]).mean()), 1),
        "divergences": int(np.asarray(stats["diverging"]).sum()),
        "rhat_max": max(v["rhat_max"] for v in conv.values()),
        "ess_min": min(min(v["ess_bulk_min"], v["ess_tail_min"]) for v in conv.values()),
        "worst": min(conv, key=lambda n: min(conv[n]["ess_bulk_min"], conv[n]["ess_tail_min"])),
        "variables": conv,
        "when": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "load_start": round(os.getloadavg()[0], 1),
    }


def report(record: dict) -> str:
    """The Markdown table of every configuration run."""
    lines = [
        "# Stage 1 of the two-stage engine on HAP1 TKOv3 (genome-wide), per setting",
        "",
        "Written by `benchmarks/bench_stage1.py` (do not edit by hand). NUTS (nutpie, 2 "
        "chains, target_accept 0.8, seed 5) on an abundance-stratified subsample of the "
        "18,056 genes; seconds include compiling the subset model. R-hat and ESS: worst over "
        "the global variables (the engine stops stage 1 once R-hat <= 1.01 and bulk and tail "
        "ESS >= 200, 100 per chain, looked at every 500 draws).",
        f"Machine: {record.get('machine', '?')}.",
        "",
        "| genes | draws | tune | adaptation | guide term | seconds | steps / draw | R-hat max | "
        "ESS min (variable) | ESS min / s | divergences | when (load) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in sorted(record["configs"].values(), key=lambda r: (-r["genes"], r["draws"])):
        lines.append(
            f"| {row['genes']:,} | {row['draws']} | {row['tune']} | {row['adaptation']} | "
            f"{row.get('guide_term', 'auto')} | "
            f"{row['seconds']:.0f} | {row['steps_per_draw']:.0f} | {row['rhat_max']:.3f} | "
            f"{row['ess_min']:.0f} ({row['worst']}) | {row['ess_min'] / row['seconds']:.2f} | "
            f"{row['divergences']} | {row['when']} ({row['load_start']}) |"
        )
    lines += ["", *record.get("notes", [])]
    return "\n".join(lines) + "\n"


def main() -> None:
    """Run the configurations and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="*", help="GENES:DRAWS:TUNE[:ADAPTATION[:GUIDE_TERM]]")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    record = json.loads(args.out.read_text()) if args.out.exists() else {"configs": {}}
    if not args.report_only:
        model = hap1_model()
        for text in args.configs:
            parts = text.split(":")
            genes, draws, tune = (int(p) for p in parts[:3])
            adaptation = parts[3] if len(parts) > 3 else "diag"
            guide_term = parts[4] if len(parts) > 4 else "auto"
            row = run_config(with_guide_term(model, guide_term), genes, draws, tune, adaptation)
            row["guide_term"] = guide_term
            print(json.dumps({k: v for k, v in row.items() if k != "variables"}), flush=True)
            key = f"{genes}:{draws}:{tune}:{adaptation}" + (
                f":{guide_term}" if guide_term != "auto" else ""
            )
            record["configs"][key] = row
            record["machine"] = f"{os.cpu_count()} cores ({cpu_name()})"
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(record, indent=1))
    args.out.with_suffix(".md").write_text(report(record))
    print(f"wrote {args.out.with_suffix('.md')}", file=sys.stderr)


if __name__ == "__main__":
    main()
