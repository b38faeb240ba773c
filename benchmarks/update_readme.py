"""Write the README's evidence tables from the benchmarks' saved results (never by hand).

Reads ``benchmarks/results/real.json`` (``bench_real.py``), ``panel.json``
(``bench_panel.py``), ``scale.json``
(``bench_scale.py``) and ``calibration.json`` (``bench_calibration.py --json``) and replaces
what lies between the README's ``<!-- evidence:start -->`` and ``<!-- evidence:end -->``
markers. Each benchmark calls it when it finishes; run it alone after editing the
formatting. ``--check`` exits 1 when the README differs from what the results give
(the test suite runs it).

    .venv/bin/python benchmarks/update_readme.py [--check]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from report_real import headline_rows, peak_all  # noqa: E402

RESULTS = HERE / "results"
README = HERE.parent / "README.md"
START, END = "<!-- evidence:start -->", "<!-- evidence:end -->"


def _load(name: str) -> Any:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


def real_section(real: dict[str, Any] | None) -> list[str]:
    if not real or not real.get("cases"):
        return ["*No `bench_real.py` results yet.*"]
    envs = sorted({(r["env"]["date"], r["env"]["cpu"]) for r in real["cases"].values()})
    when = f"{envs[0][0]} to {envs[-1][0]}" if len(envs) > 1 else envs[0][0]
    return [
        f"Real screens, both tools on the same counts (`benchmarks/bench_real.py`, {when}, "
        f"{envs[0][1]}, 2 shared cores). AUC: CEGv2 essential vs NEGv1 non-essential genes "
        "(RT112: the study's own lists) ranked by LFC; hits: genes called depleted at 5 % FDR "
        "(ours: each call's own error <= 0.05 beyond `delta = 0.5`, the default call rule, "
        "then in brackets `qvalue_down <= 0.05`, where recorded; MAGeCK `neg|fdr < 0.05`). "
        "Rows marked *dispersion trend* fit the default model before replicate scales and "
        'Student-t(3) gene slopes (`replicate_scale="none"`, normal gene effects; the panel '
        "below has today's default, `trend-t3scale`); the others, run before the trend, the "
        'per-guide `dispersion="sgrna"`.',
        "",
        *headline_rows(real),
    ]


def panel_section(panel: dict[str, Any] | None) -> list[str]:
    if not panel or not panel.get("cases"):
        return ["*No `bench_panel.py` results yet.*"]
    from bench_panel import panel_tables  # imports bench_real (pandas): only when used

    return [
        "**The defaults, chosen on a panel of real screens** (`benchmarks/bench_panel.py`, "
        f"{panel.get('env', {}).get('cpu', '?')}, 2 shared cores; "
        "`benchmarks/results/panel.md` has the machine and run notes).",
        "",
        *panel_tables(panel),
    ]


def calibration_section(rows: list[dict[str, Any]] | None) -> list[str]:
    if not rows:
        return ["*No `bench_calibration.py` results yet.*"]
    median = [r for r in rows if r["size_factors"] == "median"]

    def mean(key: str) -> float:
        return float(np.mean([r[key] for r in median if r.get(key) is not None]))

    hyper = [v for r in rows if "hyper" in r for v in r["hyper"].values()]
    bins = [b for r in rows if "lfsr_bins" in r for b in r["lfsr_bins"] if b["high"] <= 0.05]
    lines = [
        f"Calibration on {len(median)} simulated screens with known truth "
        "(`benchmarks/bench_calibration.py`, NUTS; truth on the scale the counts identify):",
        "",
        "| what | nominal | realised |",
        "|---|---|---|",
        f"| gene LFCs in their central 90 % interval | 90 % | {mean('norm_coverage90'):.1%} |",
    ]
    if any("norm_coverage50" in r for r in median):
        lines.append(
            f"| gene LFCs in their central 50 % interval | 50 % | {mean('norm_coverage50'):.1%} |"
        )
    lines.append(
        f"| false discoveries among hits at q <= 0.05, delta = 0.5 | <= 5 % | "
        f"{mean('d0.5_norm_fdp'):.1%} |"
    )
    if all("d0.5_local_norm_fdp" in r for r in median):
        lines.append(
            f"| false discoveries among hits by the local rule (the default: each call's own "
            f"error <= 0.05), delta = 0.5 | <= 5 % | {mean('d0.5_local_norm_fdp'):.1%} "
            f"(power {mean('d0.5_local_power'):.0%}, q-value rule {mean('d0.5_power'):.0%}) |"
        )
    if bins:
        n = sum(b["n"] for b in bins)
        expected = sum(b["expected"] for b in bins)
        wrong = sum(b["wrong"] for b in bins)
        lines.append(
            f"| wrong signs among genes with lfsr <= 0.05 | {expected / max(n, 1):.1%} "
            f"(their mean lfsr) | {wrong / max(n, 1):.1%} ({wrong} of {n}) |"
        )
    if hyper:
        lines.append(
            f"| hyper-parameters (sds, correlations, slope) in their 90 % interval | 90 % | "
            f"{np.mean([h[1] for h in hyper]):.0%} ({len(hyper)} cases) |"
        )
    return lines


#: ``bench_scale.py``'s labels for our main fit, newest first (``approx``: before ``--method``).
SCALE_TOOLS = ("screenformula auto", "screenformula two-stage", "screenformula approx")


def scale_section(scale: dict[str, Any] | None) -> list[str]:
    if not scale:
        return ["*No `bench_scale.py` results yet.*"]
    rows = scale["rows"]
    tools = {r["tool"] for r in rows}
    ours = next((t for t in SCALE_TOOLS if t in tools), "screenformula approx")
    method = ours.removeprefix("screenformula ")
    lines = [
        f"Speed, table on disk to gene table (`benchmarks/bench_scale.py`, {scale['env']['date']}, "
        f"simulated screens, pool + 3 + 3 samples): wall seconds and peak memory (the largest "
        "process / every process of the tool together, summed PSS, where larger: the "
        "two-stage engine's stage 2 runs in worker processes).",
        "",
        f"| genes (guides) | mageck2 test | {ours} | screenformula NUTS | {method} / test |",
        "|---|---|---|---|---|",
    ]
    for n_genes in sorted({r["n_genes"] for r in rows}):
        by_tool = {r["tool"]: r for r in rows if r["n_genes"] == n_genes and r["replicates"] == 3}
        if "mageck2 test" not in by_tool:
            continue

        def cell(tool: str, by_tool: dict[str, Any] = by_tool) -> str:
            r = by_tool.get(tool)
            if r is None or "wall_s" not in r:
                return "not run"
            auto = tool == "screenformula auto" and r.get("method_used")
            used = f" ({r['method_used']})" if auto else ""  # what auto ran
            peak = f"{r['peak_gb']:.1f}"
            if (tree := peak_all(r)) is not None:  # workers beside it
                peak += f" / {tree:.1f}"
            return f"{r['wall_s']:.0f} s, {peak} GB{used}"

        test, main = by_tool["mageck2 test"], by_tool.get(ours)
        ratio = f"{main['wall_s'] / test['wall_s']:.1f}x" if main and "wall_s" in main else ""
        lines.append(
            f"| {n_genes:,} ({test['n_sgrnas']:,}) | {cell('mageck2 test')} | "
            f"{cell(ours)} | {cell('screenformula NUTS')} | {ratio} |"
        )
    if method == "approx":
        lines += [
            "",
            "NUTS beyond 500 genes is not in this table: at 2,000 genes its sampling took 158 s "
            "in `bench_model.py` (2 x 1,000 iterations), and genome-wide it needs about 2 hours "
            "on 2 cores. On the real HAP1 "
            "screen (table above) the approximate fit took about as long as `mageck2 test`, "
            "whose run time depends on the data more than on its size.",
        ]
    else:
        lines += [
            "",
            f"`{ours}`: `fit(method={method!r})` with its default draws"
            + (
                " (in brackets: the method it ran, NUTS up to 2,000 genes and the two-stage "
                "engine above)"
                if method == "auto"
                else ""
            )
            + ". The NUTS column (2 chains x 500 draws) stops at 500 genes: genome-wide, "
            "NUTS needs about 2 hours on 2 cores.",
        ]
    return lines


def render() -> str:
    lines = [
        START,
        "<!-- generated by benchmarks/update_readme.py from benchmarks/results/*.json -->",
        "",
        *real_section(_load("real.json")),
        "",
        *panel_section(_load("panel.json")),
        "",
        *calibration_section(_load("calibration.json")),
        "",
        *scale_section(_load("scale.json")),
        "",
        "How to reproduce each figure, and the full tables (low depth, several conditions, "
        "where MAGeCK wins), are in [`benchmarks/README.md`](benchmarks/README.md).",
        END,
    ]
    return "\n".join(lines)


def updated(text: str) -> str:
    start, end = text.index(START), text.index(END) + len(END)
    return text[:start] + render() + text[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    text = README.read_text()
    new = updated(text)
    if args.check:
        if new != text:
            print(
                "README.md's evidence tables differ from benchmarks/results/*.json: run "
                "benchmarks/update_readme.py"
            )
            return 1
        return 0
    README.write_text(new)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
