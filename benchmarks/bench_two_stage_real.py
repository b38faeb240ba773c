"""The two-stage engine on the real genome-wide HAP1 TKOv3 screen, against ``mageck2 test``.

Issue 14's genome-wide check, count table to gene table, both tools in the same run on the
same counts (``../shared/data/bagel-hap1-tkov3``, full depth, T18A-C vs T0):

- **mageck2 test** (its own venv, `bench_real.ensure_mageck`);
- **screenformula** ``fit(method="two-stage")`` with its default settings,
  ``random_seed=1``, ``store_sgrna=False``, ``log_likelihood=False``, the formula of
  `bench_real` (``pool=None``, T0 the reference), in a child process with one BLAS / OpenMP
  thread (``OPENBLAS_NUM_THREADS=OMP_NUM_THREADS=1``).

Each tool runs in its own child process, timed by `bench_real.measure` (wall seconds and
the child's peak RSS from ``wait4``). Scores, on CEGv2 essential vs NEGv1 non-essential
genes: ROC AUC and average precision by depletion (``-lfc``; MAGeCK ``-neg|lfc``) and by
each tool's own statistic, genes called depleted at 5 % FDR (ours ``qvalue_down <= 0.05``
at ``delta`` = 0.5 and at ``delta`` = 0; MAGeCK ``neg|fdr <= 0.05``) with the
non-essential genes among them, and the model-free mean guide log-ratio's AUC
(`screenformula.evaluation.naive_gene_lfc`). The fit's own diagnostics come from
``fit.options`` (stage-1 R-hat / ESS, k-hat quantiles, HMC genes, seconds per stage). The
mean-field ADVI figures (``method="approx"``) are read from ``results/real.json``, not
rerun.

    nice -n 5 .venv/bin/python benchmarks/bench_two_stage_real.py
    nice -n 5 .venv/bin/python benchmarks/bench_two_stage_real.py --depth 0.1
    .venv/bin/python benchmarks/bench_two_stage_real.py --report-only

``--depth F`` thins every count column to a fraction F of its reads first (binomial
thinning, `bench_real.thin`, seed ``--thin-seed``), as `bench_real`'s low-depth cases.

Writes ``benchmarks/results/two_stage_real.json`` and ``.md`` only (with ``--depth``:
``two_stage_real_depth<F>.json`` / ``.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_real import (  # noqa: E402  (benchmarks/bench_real.py)
    DELTA,
    FDR,
    FORMULA,
    RESULTS,
    average_precision,
    environment,
    hap1_reference,
    hap1_table,
    make_case,
    measure,
    run_mageck,
    sample_condition,
    score_ours,
    score_table,
    thin,
)
from report_real import peak_cell  # noqa: E402  (benchmarks/report_real.py)

# the engine's own variable for settings a run cannot pass as keywords (typed and checked
# by `runner.env_options` in the child)
from screenformula.inference.two_stage.runner import (  # noqa: E402
    ENV_OPTIONS as TWO_STAGE_ENV,
)

METHOD = "two-stage"
THREADS = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}


# ------------------------------------------------------------------------ the child
def child(folder: Path, seed: int) -> None:
    """Table on disk -> two-stage fit -> gene tables on disk; prints the fit's diagnostics."""
    import logging
    import warnings

    logging.getLogger("pymc").setLevel(logging.ERROR)
    t0 = time.perf_counter()
    import screenformula as sf

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = sf.read_counts(folder / "counts.tsv", folder / "samples.tsv")
        model = sf.ScreenModel(FORMULA, data, pool=None, reference={"treatment": "ctrl"})
        t_fit = time.perf_counter()
        fit = model.fit(
            METHOD, random_seed=seed, progress=False, store_sgrna=False, log_likelihood=False
        )
        t_contrast = time.perf_counter()
        for delta, name in ((DELTA, "genes.tsv"), (0.0, "genes_d0.tsv")):
            genes = fit.contrast("treatment", ref="ctrl", delta=delta, fdr_target=FDR).genes
            genes.to_csv(folder / f"{METHOD}_{name}", sep="\t", index=False)
        t_end = time.perf_counter()
    opts = fit.options
    keys = ("stage1", "n_global_draws", "khat", "n_hmc_genes", "hmc", "seconds", "n_chunks")
    out = {k: opts.get(k) for k in keys}
    out["config"] = opts.get("config")
    out["method"] = fit.method
    out["child_seconds"] = {
        "import_read_model": round(t_fit - t0, 1),
        "fit": round(t_contrast - t_fit, 1),
        "contrasts_and_write": round(t_end - t_contrast, 1),
    }
    messages = []
    for w in caught:
        text = f"{w.category.__name__}: {str(w.message).strip()}"
        if text not in messages:
            messages.append(text)
    out["warnings"] = [m[:400] for m in messages[:20]]
    print(json.dumps(out, default=_jsonable))


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


# ------------------------------------------------------------------------ the run
def write_inputs(folder: Path, case: dict[str, Any]) -> None:
    """The count table and sample sheet both tools read (as `bench_real.run_case` writes)."""
    table = case["table"]
    table.to_csv(folder / "counts.tsv", sep="\t", index=False)
    samples = list(table.columns[2:])
    condition = [sample_condition(s, case) for s in samples]
    sheet = pd.DataFrame(
        {"sample": samples, "condition": condition, "treatment": condition, "pool": False}
    )
    sheet.to_csv(folder / "samples.tsv", sep="\t", index=False)


def keep_logs(folder: Path, name: str) -> None:
    for stream in ("stdout", "stderr"):
        src = folder / f"{stream}.txt"
        if src.exists():
            shutil.copy(src, folder / f"{name}.{stream}.txt")


def score_mageck_le(path: Path, ref: dict[str, set[str]]) -> dict[str, Any]:
    """MAGeCK's gene summary scored as `bench_real.score_mageck`, calls ``neg|fdr <= 0.05``."""
    table = pd.read_csv(path, sep="\t")
    fdr = table["neg|fdr"].to_numpy(dtype=float)
    depletion = -table["neg|lfc"].to_numpy(dtype=float)
    own = -table["neg|score"].to_numpy(dtype=float)
    scores = score_table(table["id"], depletion, own, fdr <= FDR, ref)
    scores["hits_strict_lt"] = int((fdr < FDR).sum())  # bench_real's `< 0.05`, for reference
    return scores


def naive_scores(folder: Path, ref: dict[str, set[str]]) -> dict[str, Any]:
    """AUC and average precision of the mean guide log2 ratio (model-free baseline)."""
    import screenformula as sf
    from screenformula.evaluation import naive_gene_lfc, roc_auc

    data = sf.read_counts(folder / "counts.tsv", folder / "samples.tsv")
    lfc = naive_gene_lfc(data, "treatment", "treated", "ctrl")
    genes = lfc.index.astype(str).to_numpy()
    ess = np.isin(genes, list(ref["essential"]))
    keep = ess | np.isin(genes, list(ref["nonessential"]))
    depletion = -lfc.to_numpy(dtype=float)[keep]
    return {
        "auc": round(roc_auc(depletion, ess[keep]), 4),
        "ap": round(average_precision(ess[keep], depletion), 4),
    }


def stored_advi() -> dict[str, Any] | None:
    """The HAP1 mean-field ADVI (``approx``) and MAGeCK figures of ``results/real.json``."""
    path = RESULTS / "real.json"
    if not path.exists():
        return None
    case = json.loads(path.read_text()).get("cases", {}).get("hap1")
    if not case or "ours_approx" not in case:
        return None
    return {"ours_approx": case["ours_approx"], "mageck": case.get("mageck"), "env": case["env"]}


def run(args: argparse.Namespace) -> dict[str, Any]:
    settings = ",".join(filter(None, [os.environ.get(TWO_STAGE_ENV, ""), *args.set]))
    table, control, treated = hap1_table()
    depth = "full depth"
    if args.depth < 1:
        table = thin(table, args.depth, args.thin_seed)
        depth = f"{args.depth:g} depth (binomial thinning, seed {args.thin_seed})"
    ref = hap1_reference()
    case = make_case("hap1", table, control, treated, ref)
    record: dict[str, Any] = {
        "case": f"hap1 TKOv3 {depth}, T18A-C vs T0",
        "control": control,
        "treated": treated,
        "n_sgrnas": len(table),
        "n_genes": int(table["gene"].nunique()),
        "formula": FORMULA,
        "fit": {
            "method": METHOD,
            "random_seed": args.fit_seed,
            "store_sgrna": False,
            "log_likelihood": False,
            "settings": settings,
        },
        "child_env": THREADS,
        "env": environment(),
    }
    keep = Path(args.keep) if args.keep else None
    with tempfile.TemporaryDirectory(prefix="bench_two_stage_real_") as tmp:
        folder = Path(tmp)
        write_inputs(folder, case)
        record["baseline_mean_log_ratio"] = naive_scores(folder, ref)
        _say(f"mean guide log-ratio: {record['baseline_mean_log_ratio']}")

        try:
            timing = run_mageck(folder, case, "mageck", treated)
            keep_logs(folder, "mageck")
            scores = score_mageck_le(folder / "mageck.gene_summary.txt", ref)
            record["mageck"] = {**timing, **scores}
        except Exception as exc:  # noqa: BLE001 - reported, the other tool still runs
            keep_logs(folder, "mageck")
            record["mageck"] = {"error": _error(exc)}
        _say(f"mageck2 test: {record['mageck']}")

        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(folder)]
        cmd += ["--seed", str(args.fit_seed)]
        try:
            timing = measure(cmd, folder, dict(os.environ, **THREADS, **{TWO_STAGE_ENV: settings}))
            keep_logs(folder, "ours")
            detail = json.loads((folder / "stdout.txt").read_text().strip().splitlines()[-1])
            entry = {**timing, "delta_0.5": score_ours(folder / f"{METHOD}_genes.tsv", None, ref)}
            no_delta = score_ours(folder / f"{METHOD}_genes_d0.tsv", None, ref)
            entry["delta_0"] = {k: v for k, v in no_delta.items() if k.startswith("hits")}
            entry["diagnostics"] = detail
            record["ours_two_stage"] = entry
        except Exception as exc:  # noqa: BLE001
            keep_logs(folder, "ours")
            record["ours_two_stage"] = {"error": _error(exc)}
        brief = {k: v for k, v in record["ours_two_stage"].items() if k != "diagnostics"}
        _say(f"two-stage: {brief}")
        if keep is not None:
            shutil.copytree(folder, keep, dirs_exist_ok=True)
    ours, mageck = record["ours_two_stage"], record["mageck"]
    if "wall_s" in ours and "wall_s" in mageck:
        record["wall_ratio_ours_to_mageck"] = round(ours["wall_s"] / mageck["wall_s"], 2)
    record["load_end"] = round(os.getloadavg()[0], 1)
    record["stored_advi"] = stored_advi() if args.depth >= 1 else None  # full depth only
    return record


def _error(exc: BaseException) -> str:
    text = "".join(traceback.format_exception(exc))
    return text[-4000:]


def _say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------ the report
def _calls(scores: dict[str, Any]) -> str:
    return (
        f"{scores['hits']} ({scores['hits_essential']} / {scores['hits_nonessential']})"
        if scores
        else "-"
    )


def report(rec: dict[str, Any]) -> str:
    env = rec["env"]
    v = env["versions"]
    ours, mageck = rec.get("ours_two_stage", {}), rec.get("mageck", {})
    lines = [
        "# Two-stage engine on HAP1 TKOv3 (genome-wide) against mageck2 test",
        "",
        "Generated by `benchmarks/bench_two_stage_real.py` (do not edit by hand); issue 14.",
        "",
        f"- Run: {env['date']}, {env['cores']} cores ({env['cpu']}), git {env['git']}; "
        f"screenformula {v.get('screenformula')}, pymc {v.get('pymc')}, "
        f"nutpie {v.get('nutpie')}, numpy {v.get('numpy')}, mageck2 {v.get('mageck2')}.",
        f"- Load average (1 min): {env['load_start']} at start, {rec.get('load_end')} at end "
        "(the end includes our own stage-2 worker processes). "
        + (
            "The machine was otherwise idle when the run started; both tools ran back to "
            "back under `nice -n 5`."
            if float(env["load_start"] or 0) < 1.0
            else "**Other work was running when it started (load >= 1 on 2 cores), so both "
            "tools' wall times are inflated** (alike, run back to back under `nice -n 5`)."
        ),
        f"- Screen: {rec['n_genes']:,} genes, {rec['n_sgrnas']:,} guides; "
        f"{', '.join(rec['treated'])} vs {', '.join(rec['control'])}; formula `{rec['formula']}`, "
        "`pool=None`, T0 the reference.",
        '- Ours: `fit(method="two-stage")`, '
        + (
            f"`{TWO_STAGE_ENV}={rec['fit']['settings']}`, "
            if rec["fit"].get("settings")
            else "default settings, "
        )
        + "`random_seed=1`, "
        "`store_sgrna=False`, `log_likelihood=False`, child with "
        "`OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1`. Calls: `qvalue_down <= 0.05` (and "
        "`lfc < 0`) at `delta` = 0.5 log2 and at `delta` = 0. MAGeCK: `neg|fdr <= 0.05`.",
        "- AUC / average precision: CEGv2 essential vs NEGv1 non-essential genes ranked by "
        "depletion (`-lfc`; MAGeCK `-neg|lfc`); own statistic: our `lfc / lfc_sd`, "
        "MAGeCK's RRA `neg|score`. Wall time and peak memory: each tool's child process, "
        "count table on disk to gene table on disk; peak GB is the largest process's RSS "
        "(`wait4`), and *all* the peak of every process of the tool together (summed PSS, "
        "sampled every 0.25 s), where it was measured.",
        "",
        "| tool | AUC (LFC) | AUC (own statistic) | avg. precision | depleted at 5 % FDR "
        "(essential / non-essential) | wall s | CPU s | peak GB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    if "auc" in ours.get("delta_0.5", {}):
        s = ours["delta_0.5"]
        lines.append(
            f"| screenformula two-stage | {s['auc']:.4f} | {s['auc_own']:.4f} | {s['ap']:.4f} "
            f"| {_calls(s)}; delta 0: {_calls(ours['delta_0'])} | {ours['wall_s']:.0f} "
            f"| {ours['cpu_s']:.0f} | {peak_cell(ours)} |"
        )
    else:
        lines.append("| screenformula two-stage | failed (see below) | | | | | | |")
    if "auc" in mageck:
        lines.append(
            f"| mageck2 test | {mageck['auc']:.4f} | {mageck['auc_own']:.4f} | "
            f"{mageck['ap']:.4f} | {_calls(mageck)} | {mageck['wall_s']:.0f} | "
            f"{mageck['cpu_s']:.0f} | {peak_cell(mageck)} |"
        )
    else:
        lines.append("| mageck2 test | failed (see below) | | | | | | |")
    base = rec["baseline_mean_log_ratio"]
    lines.append(
        f"| mean guide log2 ratio (no model) | {base['auc']:.4f} | - | {base['ap']:.4f} "
        "| - | - | - | - |"
    )
    adv = rec.get("stored_advi")
    if adv:
        a = adv["ours_approx"]
        s = a["delta_0.5"]
        lines.append(
            f"| screenformula ADVI (`approx`), stored: `results/real.json` "
            f"({adv['env']['date']}, {adv['env']['cpu']}, git {adv['env']['git']}) | "
            f"{s['auc']:.4f} | "
            f"{s['auc_own']:.4f} | {s['ap']:.4f} | {_calls(s)}; delta 0: "
            f"{_calls(a['delta_0'])} | {a['wall_s']:.0f} | {a['cpu_s']:.0f} | "
            f"{a['peak_gb']:.2f} |"
        )
        if adv.get("mageck"):
            m = adv["mageck"]
            lines.append(
                f"| mageck2 test, stored run beside it (`neg|fdr < 0.05`) | {m['auc']:.4f} | "
                f"{m['auc_own']:.4f} | {m['ap']:.4f} | {_calls(m)} | {m['wall_s']:.0f} | "
                f"{m['cpu_s']:.0f} | {m['peak_gb']:.2f} |"
            )
    lines.append("")
    if "wall_ratio_ours_to_mageck" in rec:
        lines.append(
            f"Wall time, two-stage / mageck2 test (this run): "
            f"**{rec['wall_ratio_ours_to_mageck']:.2f}x** ({ours['wall_s']:.0f} s / "
            f"{mageck['wall_s']:.0f} s). Peak memory: {peak_cell(ours)} GB ours, "
            f"{peak_cell(mageck)} GB MAGeCK."
        )
        if "auc" in ours.get("delta_0.5", {}) and "auc" in mageck:
            d = ours["delta_0.5"]["auc"] - mageck["auc"]
            verdict = ">=" if d >= 0 else "<"
            lines.append(
                f"AUC two-stage {verdict} MAGeCK's ({ours['delta_0.5']['auc']:.4f} vs "
                f"{mageck['auc']:.4f}, difference {d:+.4f})."
            )
        if "hits_strict_lt" in mageck and mageck["hits_strict_lt"] != mageck["hits"]:
            lines.append(f"MAGeCK with `neg|fdr < 0.05`: {mageck['hits_strict_lt']} calls.")
        lines.append("")
    diag = ours.get("diagnostics")
    if diag:
        st1 = diag.get("stage1") or {}
        kh = diag.get("khat") or {}
        q = kh.get("quantiles", {})
        sec = diag.get("seconds") or {}
        hmc = diag.get("hmc") or {}
        cfg = diag.get("config") or {}
        lines += [
            "## Two-stage diagnostics (`fit.options`)",
            "",
            f"- Stage 1: NUTS on {st1.get('genes')} genes "
            f"({cfg.get('stage1_chains')} chains x {st1.get('draws', cfg.get('stage1_draws'))} "
            f"draws, of at most {cfg.get('stage1_draws')}, "
            f"{cfg.get('stage1_tune')} tuning): R-hat max {_fmt(st1.get('rhat_max'), 3)}, "
            f"bulk ESS min {_fmt(st1.get('ess_bulk_min'), 0)}, "
            f"divergences {st1.get('divergences')}; K = {diag.get('n_global_draws')} "
            "global draws carried into stage 2.",
            f"- Pareto k-hat over genes: median {q.get('q50')}, 90 % {q.get('q90')}, "
            f"99 % {q.get('q99')}, max {q.get('max')}; above 0.5: {kh.get('above_0.5')}, "
            f"above 0.7: {kh.get('above_0.7')}, above 1: {kh.get('above_1')}.",
            f"- Genes refitted by per-gene HMC: {diag.get('n_hmc_genes')} "
            f"(acceptance min {_fmt(hmc.get('accept_min'), 2)}, median "
            f"{_fmt(hmc.get('accept_median'), 2)}, divergences {hmc.get('divergences')}).",
            f"- Seconds (inside the fit): stage 1 {sec.get('stage1')}, stage 2 "
            f"{sec.get('stage2')}, fit total {sec.get('total')}; stage-2 parts "
            f"{sec.get('stage2_parts')}; {diag.get('n_chunks')} chunk(s).",
            f"- Child process seconds: {diag.get('child_seconds')} (the rest of the wall time "
            "is interpreter start-up and exit).",
        ]
        conv = st1.get("convergence") or {}
        if conv:
            lines += ["", "| stage-1 variable | R-hat max | bulk ESS min | tail ESS min |"]
            lines.append("|---|---|---|---|")
            for name, c in conv.items():
                lines.append(
                    f"| {name} | {_fmt(c.get('rhat_max'), 3)} | {_fmt(c.get('ess_bulk_min'), 0)}"
                    f" | {_fmt(c.get('ess_tail_min'), 0)} |"
                )
        if diag.get("warnings"):
            lines += ["", "Warnings raised in the child (first of each):", ""]
            lines += [f"- `{w}`" for w in diag["warnings"]]
        lines.append("")
    for tool, entry in (("two-stage", ours), ("mageck2", mageck)):
        if "error" in entry:
            lines += [f"## {tool} failed", "", "```", entry["error"].strip(), "```", ""]
    return "\n".join(lines)


def _fmt(value: Any, digits: int) -> str:
    if value is None:
        return "-"
    return f"{float(value):.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fit-seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--depth", type=float, default=1.0, help="fraction of reads kept")
    parser.add_argument("--thin-seed", type=int, default=1)
    parser.add_argument("--keep", help="copy the run folder (tables, logs) here")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument(
        "--set", nargs="*", default=[], help=f"two-stage settings KEY=VALUE (as ${TWO_STAGE_ENV})"
    )
    args = parser.parse_args()
    if args.out is None:
        name = "two_stage_real" if args.depth >= 1 else f"two_stage_real_depth{args.depth:g}"
        args.out = RESULTS / f"{name}.json"
    if args.child:
        child(Path(args.child), args.seed)
        return
    if args.report_only:
        record = json.loads(args.out.read_text())
    else:
        record = run(args)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=1, default=_jsonable))
    args.out.with_suffix(".md").write_text(report(record))
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}", file=sys.stderr)


if __name__ == "__main__":
    main()
