"""Candidate defaults on a panel of real screens, against MAGeCK: one command, one table.

Issue 15 asks for the model defaults to be chosen on a panel, not by taste. Every case
of the panel is one of `bench_real`'s (the same counts, sample sheets, reference gene
sets and scoring, MAGeCK run on the same table), and every candidate is a model setting
fitted to it in its own process:

- ``seed``: the seed's model, ``dispersion="sgrna"`` (``phi[s] ~ Gamma(1, phi_rate)``),
  normal gene effects: the default until now;
- ``trend``: ``dispersion="trend"`` (log phi linear in the guide's starting abundance per
  sample class, guides shrunk toward the trend), normal gene effects;
- ``trend-t``: the same dispersion, Student-t gene effects
  (``(1 + treatment | gr(gene, dist = "student"))``);
- ``seed-t``: per-guide dispersion with Student-t gene effects;
- ``trend-sample``: ``dispersion="trend-sample"`` (a trend per sequenced sample, not per
  condition, as Chronos fits one dispersion per replicate), normal gene effects;
- ``trend-scale``: ``trend`` with replicate scales (``replicate_scale="condition"``);
- ``trend-t3scale``: ``trend-scale`` with Student-t(3) gene slopes
  (``gr(gene, dist = "student_slopes")``, df fixed at 3): the default since 2026-12-06
  (``screenformula test``'s and the demo's formula);
- ``trend-t2scale``: ``trend-t3scale`` with df fixed at 2 (heavier tails, less pull on
  large slopes).

The simulated screens (``--cases sim``, or ``sim_hits`` / ``sim_normal_11``; see
`panel_simulated`) have a table of their own: realised FDR against the known truth,
power and 90 % interval coverage.

Columns: ROC AUC of essential (CEGv2, or the study's) against non-essential genes by
depletion, the essential and non-essential genes called depleted at 5 % FDR (delta 0.5
log2, the command line's default), wall seconds. JACKS's joint fit is scored per line.

    nice -n 5 .venv/bin/python benchmarks/bench_panel.py --cases hap1 hap1_1rep \\
        --candidates seed trend trend-t --method two-stage
    .venv/bin/python benchmarks/bench_panel.py --report-only

Results merge into ``benchmarks/results/panel.json`` (by case and candidate, so a rerun
of one part keeps the rest) and the table is written to ``benchmarks/results/panel.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_real as br  # noqa: E402 - benchmarks/ is not a package
import panel_simulated as ps  # noqa: E402

RESULTS = HERE / "results"
GENE_TERMS = {
    "normal": "gene",
    "student": 'gr(gene, dist = "student")',
    "student_slopes": 'gr(gene, dist = "student_slopes")',
}
#: name -> (dispersion, gene-effect distribution); ``PRIORS`` holds a candidate's priors
CANDIDATES = {
    "seed": ("sgrna", "normal"),
    "trend": ("trend", "normal"),
    "trend-t": ("trend", "student"),
    "seed-t": ("sgrna", "student"),
    "trend-sample": ("trend-sample", "normal"),
    "trend-tslopes": ("trend", "student_slopes"),
    "trend-t3slopes": ("trend", "student_slopes"),
    "trend-sharedeff": ("trend", "normal"),
    "trend-scale": ("trend", "normal"),
    "trend-t3scale": ("trend", "student_slopes"),
    "trend-t2scale": ("trend", "student_slopes"),
    "trend-t3states": ("trend", "student_slopes"),
    "trend-sharedeff-scale": ("trend", "normal"),
    "trend-sharedeff-states": ("trend", "normal"),
}
#: Model settings of each candidate: ``trend-scale``, ``trend-t3scale`` and
#: ``trend-t2scale`` give each replicate of a treated condition its own factor on the
#: treatment effects (``replicate_scale``, the default since 2026-12-06); every other
#: candidate was measured without. ``trend-t3states`` is ``trend-t3scale`` with guide states
#: (``guide_states="majority"``: at most (k - 1) // 2 of a gene's k guides fail), summed on
#: the two-stage engine's grid; ``trend-sharedeff-scale`` is JACKS's joint design with
#: replicate scales (``screenformula test``'s with several groups), ``-states`` the same
#: with guide states, summed by a mixture of Laplace approximations
OPTIONS = {name: {"replicate_scale": "none"} for name in CANDIDATES} | {
    "trend-scale": {"replicate_scale": "condition"},
    "trend-t3scale": {"replicate_scale": "condition"},
    "trend-t2scale": {"replicate_scale": "condition"},
    "trend-t3states": {"replicate_scale": "condition", "guide_states": "majority"},
    "trend-sharedeff-scale": {"replicate_scale": "condition"},
    "trend-sharedeff-states": {"replicate_scale": "condition", "guide_states": "majority"},
}
#: Candidates with a formula of their own. ``trend-sharedeff`` (JACKS's joint fit): gene
#: effects per condition, one guide efficacy shared by every treated condition (JACKS's
#: design), from the sample sheet's ``treated`` column (``no`` for the controls)
FORMULAS = {
    "trend-sharedeff": (
        "count ~ 1 + treatment + (1 + treatment | gene) + (1 + treated | gene:sgrna)"
    ),
    "trend-sharedeff-scale": (
        "count ~ 1 + treatment + (1 + treatment | gene) + (1 + treated | gene:sgrna)"
    ),
    "trend-sharedeff-states": (
        "count ~ 1 + treatment + (1 + treatment | gene) + (1 + treated | gene:sgrna)"
    ),
}
#: Student-t gene slopes with df fixed at 3 or 2 (brms's constant()), as estimating it genome-wide
#: runs df below 1 with the slopes' sd near 0, where stage 1 cannot mix
PRIORS = {
    "trend-t3slopes": {"df": ("Constant", {"value": 3})},
    "trend-t3scale": {"df": ("Constant", {"value": 3})},
    "trend-t2scale": {"df": ("Constant", {"value": 2})},
    "trend-t3states": {"df": ("Constant", {"value": 3})},
}


def formula(candidate: str) -> str:
    """The mean formula of a candidate (bench_real's, with its gene-effect distribution)."""
    if candidate in FORMULAS:
        return FORMULAS[candidate]
    gene = GENE_TERMS[CANDIDATES[candidate][1]]
    return f"count ~ 1 + treatment + (1 + treatment | {gene}) + (1 + treatment | gene:sgrna)"


def panel_cases(names: list[str], args: argparse.Namespace) -> list[dict[str, Any]]:
    """The panel's cases, from bench_real's builders (``--levels`` of thinning)."""
    ns = argparse.Namespace(levels=args.levels, replicates=[3, 1], seeds=args.seeds)
    every: dict[str, dict[str, Any]] = {}
    builders = (
        br.hap1_cases,
        br.lowdepth_cases,
        br.rt112_cases,
        br.jacks_cases,
        br.leukemia_cases,
        br.drugz_cases,
    )
    for builder in builders:
        for case in builder(ns):
            every[case["name"]] = case
    aliases = {"hap1_1rep": "hap1_1of1_1rep_s0"}
    out = []
    for name in names:
        if ps.is_simulated(name):
            out.extend(ps.simulated_cases([name]))
            continue
        key = aliases.get(name, name)
        exact = [c for n, c in every.items() if n == key]
        matches = exact or [c for n, c in every.items() if n.startswith(key + "_")]
        if not matches:
            raise SystemExit(f"unknown case {name!r}; known: {', '.join(sorted(every))}")
        out.extend(matches)
    return out


def child(folder: Path, candidate: str, method: str, seed: int, hdi_prob: float) -> None:
    """Fit one candidate on the case in ``folder``; write its gene table; print details."""
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.getLogger("pymc").setLevel(logging.ERROR)
    import screenformula as sf

    data = sf.read_counts(folder / "counts.tsv", folder / "samples.tsv")
    dispersion = CANDIDATES[candidate][0]
    priors = {k: sf.Prior(name, **args) for k, (name, args) in PRIORS.get(candidate, {}).items()}
    model = sf.ScreenModel(
        formula(candidate),
        data,
        pool=None,
        reference={"treatment": "ctrl"},
        dispersion=dispersion,
        priors=priors or None,
        **OPTIONS.get(candidate, {}),
    )
    fit = model.fit(
        method, random_seed=seed, progress=False, store_sgrna=False, log_likelihood=False
    )
    genes = fit.contrast(
        "treatment", ref="ctrl", delta=br.DELTA, hdi_prob=hdi_prob, fdr_target=br.FDR
    ).genes
    genes.to_csv(folder / f"{candidate}_genes.tsv", sep="\t", index=False)
    keep = os.environ.get("BENCH_PANEL_KEEP")  # a folder that keeps every gene table
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        genes.to_csv(Path(keep) / f"{folder.name}_{candidate}_genes.tsv", sep="\t", index=False)
    print(json.dumps(br.fit_detail(fit)))


def run_case(case: dict[str, Any], args: argparse.Namespace, stored: dict) -> None:
    """Both tools on one case; results merged into ``stored`` after each fit."""
    record = stored["cases"].setdefault(case["name"], {})
    keys = ("group", "level", "replicates", "joint", "simulated")
    record.update({k: case[k] for k in keys if k in case})
    with tempfile.TemporaryDirectory(prefix=f"bench_panel_{case['name']}_") as tmp:
        folder = Path(tmp)
        table = case["table"]
        table.to_csv(folder / "counts.tsv", sep="\t", index=False)
        samples = list(table.columns[2:])
        condition = [br.sample_condition(s, case) for s in samples]
        treated = ["no" if c == "ctrl" else "yes" for c in condition]
        sheet = pd.DataFrame(
            {
                "sample": samples,
                "condition": condition,
                "treatment": condition,
                "treated": treated,
                "pool": False,
            }
        )
        sheet.to_csv(folder / "samples.tsv", sep="\t", index=False)
        ref = case.get("reference")
        score_baseline(case, record)
        if not case.get("joint") and ("mageck" not in record or args.rerun_mageck):
            timing = br.run_mageck(folder, case, "mageck", case["treated"])
            summary = folder / "mageck.gene_summary.txt"
            if case.get("simulated"):
                record["mageck"] = {**timing, **ps.score_simulated(summary, case, "mageck")}
            elif case.get("directions"):
                record["mageck"] = {**timing, **score_directions(summary, "mageck")}
            else:
                record["mageck"] = {
                    **timing,
                    **br.score_mageck(summary, ref),
                    "ranks": ranks_of_mageck(summary, ref),
                }
            progress(case, "mageck2", record["mageck"])
            save(stored, args.out)
        for candidate in args.candidates:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(folder)]
            cmd += [candidate, "--method", args.method, "--fit-seed", str(args.fit_seed)]
            if case.get("simulated"):
                cmd += ["--hdi-prob", str(ps.HDI_PROB)]
            try:
                timing = br.measure(cmd, folder)
            except RuntimeError as err:
                record[candidate] = {"error": str(err).splitlines()[-1][:300]}
                save(stored, args.out)
                continue
            detail = json.loads((folder / "stdout.txt").read_text().strip().splitlines()[-1])
            entry = {**timing, **detail, "method": args.method}
            path = folder / f"{candidate}_genes.tsv"
            if case.get("joint"):
                entry["per_line"] = {
                    line: {
                        **br.score_ours(path, line, ref),
                        "ranks": ranks_of_ours(path, line, ref),
                    }
                    for line in br.JACKS_LINES
                }
            elif case.get("simulated"):
                entry.update(ps.score_simulated(path, case, "ours"))
            elif case.get("directions"):
                entry.update(score_directions(path, "ours"))
            else:
                entry.update(br.score_ours(path, None, ref), ranks=ranks_of_ours(path, None, ref))
            record[candidate] = entry
            progress(case, candidate, entry)
            save(stored, args.out)


def progress(case: dict[str, Any], tool: str, entry: dict[str, Any]) -> None:
    """One line on stderr per fit: bench_real's (AUC and q-rule calls), or for a simulated
    or by-direction case the cell the table will show."""
    if case.get("simulated"):
        print(f"{case['name']} {tool}: {ps.simulated_cell(entry)}", file=sys.stderr, flush=True)
    elif case.get("directions"):
        print(f"{case['name']} {tool}: {_cell(entry)}", file=sys.stderr, flush=True)
    else:
        br._progress(case["name"], tool, entry)


def reference_ranks(
    genes: pd.Series, depletion: pd.Series, ref: dict[str, set[str]], top: int = 3000
) -> dict[str, list[int]]:
    """Ranks (1 = most depleted, over every gene) of the reference genes in the top ``top``.

    With them the report compares tools at the same number of calls: how many essential
    and non-essential genes each one ranks among its ``k`` most depleted genes.
    """
    order = pd.Series(depletion.to_numpy(dtype=float), index=genes.astype(str).to_numpy())
    ranks = order.rank(ascending=False, method="first").astype(int)
    ranks = ranks[ranks <= top]
    return {
        kind: sorted(int(r) for g, r in ranks.items() if g in ref[kind])
        for kind in ("essential", "nonessential")
    }


def ranks_of_ours(path: Path, contrast: str | None, ref: dict[str, set[str]]) -> dict:
    genes = pd.read_csv(path, sep="\t")
    if contrast is not None:
        genes = genes[genes["contrast"].astype(str).str.startswith(contrast)]
    if "is_control" in genes:
        genes = genes[~genes["is_control"].astype(bool)]
    return reference_ranks(genes["gene"], -genes["lfc"], ref)


def ranks_of_mageck(path: Path, ref: dict[str, set[str]]) -> dict:
    table = pd.read_csv(path, sep="\t")
    return reference_ranks(table["id"], -table["neg|lfc"], ref)


def mean_log_ratio(case: dict[str, Any], treated: list[str]) -> pd.Series:
    """The plain baseline: per gene, the mean over its guides of log2 (treated / control).

    Counts median-of-ratios normalised over the case's samples, + 0.5; treated and control
    replicates averaged in log space. No model, no test: a ranking only.
    """
    table = case["table"]
    samples = [*case["control"], *treated]
    logs = np.log(table[samples].to_numpy(dtype=float) + 0.5)
    size = np.exp(np.median(logs - logs.mean(axis=1, keepdims=True), axis=0))
    norm = np.log2(table[samples].to_numpy(dtype=float) / size + 0.5)
    n_ctrl = len(case["control"])
    ratio = norm[:, n_ctrl:].mean(axis=1) - norm[:, :n_ctrl].mean(axis=1)
    return pd.Series(ratio).groupby(table["gene"].to_numpy()).mean()


def score_mean_log_ratio(case: dict[str, Any], treated: list[str]) -> dict[str, Any]:
    """AUC and reference ranks of the plain mean guide log-ratio (no calls)."""
    lfc = mean_log_ratio(case, treated)
    ref = case["reference"]
    ess = lfc.index.isin(list(ref["essential"]))
    non = lfc.index.isin(list(ref["nonessential"]))
    keep = ess | non
    return {
        "auc": round(br.auc(ess[keep], -lfc.to_numpy()[keep]), 4),
        "ranks": reference_ranks(pd.Series(lfc.index), pd.Series(-lfc.to_numpy()), ref),
    }


def score_directions(path: Path, tool: str) -> dict[str, Any]:
    """Genes called down and up at 5 % FDR (a case without reference genes: drugZ's).

    Ours: the default local rule (each call's own error <= 0.05, |LFC| > delta), then the
    q-value rule; MAGeCK: neg|fdr and pos|fdr < 0.05.
    """
    table = pd.read_csv(path, sep="\t")
    if tool == "mageck":
        return {
            "genes": len(table),
            "down": int((table["neg|fdr"] < br.FDR).sum()),
            "up": int((table["pos|fdr"] < br.FDR).sum()),
        }
    lfc = table["lfc"].to_numpy(dtype=float)
    out: dict[str, Any] = {"genes": len(table)}
    for rule, prefix in (("error", "local_"), ("qvalue", "")):
        out[f"{prefix}down"] = int(((table[f"{rule}_down"] <= br.FDR) & (lfc < 0)).sum())
        out[f"{prefix}up"] = int(((table[f"{rule}_up"] <= br.FDR) & (lfc > 0)).sum())
    return out


def score_baseline(case: dict[str, Any], record: dict[str, Any]) -> None:
    """The mean guide log-ratio's scores into the case's record (per line when joint)."""
    if case.get("directions") or case.get("simulated"):
        return  # no reference genes to rank
    if case.get("joint"):
        record["mean_log_ratio"] = {
            "per_line": {
                line: score_mean_log_ratio(case, [f"{line}_rep_1", f"{line}_rep_2"])
                for line in br.JACKS_LINES
            }
        }
    else:
        record["mean_log_ratio"] = score_mean_log_ratio(case, case["treated"])


def save(stored: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(stored, indent=1))


# ------------------------------------------------------------------------ report
def _cell(entry: dict[str, Any] | None) -> str:
    if not entry:
        return "not run"
    if "error" in entry:
        text = entry["error"]
        return text[:100] if text.startswith("stopped") else f"failed: {text[:80]}"
    if "down" in entry:  # a case scored by direction (no reference genes)
        calls = f"{entry['down']} down / {entry['up']} up"
        if "local_down" in entry:
            calls = f"{entry['local_down']} down / {entry['local_up']} up (q: {calls})"
        return f"{calls} of {entry['genes']} genes · {entry['wall_s']:.0f} s"
    return f"{entry['auc']:.4f} · {_calls(entry)} · {entry['wall_s']:.0f} s"


def _calls(score: dict[str, Any]) -> str:
    """Essential / non-essential calls: the local rule, then the q-value rule in brackets
    (MAGeCK's and older rows have the one rule only)."""
    plain = f"{score['hits_essential']} / {score['hits_nonessential']}"
    if "local_hits_essential" not in score:
        return plain
    local = f"{score['local_hits_essential']} / {score['local_hits_nonessential']}"
    return f"{local} (q: {plain})"


def _baseline(entry: dict[str, Any] | None) -> str:
    return f"{entry['auc']:.4f}" if entry else "not run"


def write_report(stored: dict, path: Path) -> None:
    """The panel's tables, machine and notes as markdown (``results/panel.md``)."""
    lines = ["# Candidate defaults on the panel of real screens", "", *panel_tables(stored)]
    env = stored.get("env", {})
    if env:
        lines += [
            "",
            f"Machine: {env.get('cores')} cores, {env.get('cpu')}; {env.get('date')}; "
            f"git {env.get('git')}; load at start {env.get('load_start')}.",
        ]
    methods = sorted(
        {
            e.get("method_used", "?")
            for rec in stored["cases"].values()
            for e in rec.values()
            if isinstance(e, dict) and "method_used" in e
        }
    )
    lines.append(f"Methods that ran: {', '.join(methods)}.")
    if stored.get("notes"):
        lines += ["", *stored["notes"]]
    path.write_text("\n".join(lines) + "\n")


def describe(candidate: str) -> str:
    """A candidate as the table states it: dispersion, gene effects, own formula, priors."""
    dispersion, dist = CANDIDATES[candidate]
    text = f"`{candidate}` = dispersion {dispersion!r}, {dist} gene effects"
    if candidate in FORMULAS:
        text += f", `{FORMULAS[candidate]}`"
    for key, (name, args) in PRIORS.get(candidate, {}).items():
        text += f", {key} {name}({', '.join(f'{a}={v}' for a, v in args.items())})"
    scale = OPTIONS.get(candidate, {}).get("replicate_scale", "none")
    if scale != "none":
        text += f", replicate_scale={scale!r} (others: 'none')"
    states = OPTIONS.get(candidate, {}).get("guide_states", "none")
    if states != "none":
        text += f", guide_states={states!r}"
    return text


def panel_tables(stored: dict) -> list[str]:
    """Two tables: a row per case, a column per tool (AUC · essential / non-ess. calls · s),
    then the reference genes among each tool's k most depleted (k = MAGeCK's calls)."""
    cases = stored["cases"]
    names = [c for c in CANDIDATES if any(c in rec for rec in cases.values())]
    lines = [
        "Written by `benchmarks/bench_panel.py`. Each cell: ROC AUC (essential vs "
        "non-essential genes, by depletion) · essential / non-essential genes called "
        "depleted at 5 % FDR (ours, |LFC| > 0.5 log2: the default local rule, each call's "
        "own error <= 0.05, then in brackets the q-value rule, q <= 0.05, where the row "
        "was scored after both existed; MAGeCK: neg|fdr < 0.05) · wall seconds. The mean "
        "log-ratio (each gene's mean guide log2 ratio, "
        "median-normalised counts + 0.5) is a ranking without a model or calls: its AUC "
        "only. Candidates (see the script): " + "; ".join(describe(c) for c in names) + ".",
        "",
        "| case | mean log-ratio | MAGeCK | " + " | ".join(f"`{c}`" for c in names) + " |",
        "|---|---|---|" + "---|" * len(names),
    ]
    for case, rec in cases.items():
        if rec.get("simulated"):
            continue  # their own table, below
        if rec.get("joint"):
            for line in br.JACKS_LINES:
                cells = []
                for c in names:
                    entry = rec.get(c) or {}
                    score = entry.get("per_line", {}).get(line)
                    if "error" in entry:
                        cells.append(_cell(entry))
                    elif score is None:
                        cells.append("not run")
                    else:
                        cells.append(f"{score['auc']:.4f} · {_calls(score)}")
                mageck = _cell(cases.get(f"jacks_{line}", {}).get("mageck"))
                base = _baseline((rec.get("mean_log_ratio") or {}).get("per_line", {}).get(line))
                lines.append(f"| {case}: {line} | {base} | {mageck} | " + " | ".join(cells) + " |")
            continue
        cells = [_cell(rec.get(c)) for c in names]
        base = _baseline(rec.get("mean_log_ratio"))
        lines.append(
            f"| {case} | {base} | {_cell(rec.get('mageck'))} | " + " | ".join(cells) + " |"
        )
    return lines + matched_table(cases, names) + ps.simulated_table(cases, names)


def _top(entry: dict[str, Any] | None, k: int) -> str:
    ranks = (entry or {}).get("ranks")
    if not ranks:
        return "not run"
    ess = sum(r <= k for r in ranks["essential"])
    non = sum(r <= k for r in ranks["nonessential"])
    return f"{ess} / {non}"


def matched_table(cases: dict[str, Any], names: list[str]) -> list[str]:
    """Essential / non-essential genes among each tool's k most depleted genes, k = MAGeCK's calls.

    Calls at a nominal 5 % FDR differ in number between tools (MAGeCK's RRA is
    conservative); at the same number of calls the comparison is of ranking alone.
    """
    rows = []
    for case, rec in cases.items():
        lines_ = br.JACKS_LINES if rec.get("joint") else [None]
        for line in lines_:
            mageck = (cases.get(f"jacks_{line}", {}) if line else rec).get("mageck") or {}
            if "ranks" not in mageck:
                continue
            k = mageck["hits"]
            base = rec.get("mean_log_ratio") or {}
            cells = [_top(base.get("per_line", {}).get(line) if line else base, k)]
            for c in names:
                entry = rec.get(c) or {}
                cells.append(_top(entry.get("per_line", {}).get(line) if line else entry, k))
            label = f"{case}: {line}" if line else case
            rows.append(f"| {label} | {k} | {_top(mageck, k)} | " + " | ".join(cells) + " |")
    if not rows:
        return []
    return [
        "",
        "At MAGeCK's number of calls `k` (every gene it calls at 5 % FDR): essential / "
        "non-essential genes among each tool's `k` most depleted genes (by LFC), a "
        "comparison of ranking at equal list length.",
        "",
        "| case | k | MAGeCK | mean log-ratio | " + " | ".join(f"`{c}`" for c in names) + " |",
        "|---|---|---|---|" + "---|" * len(names),
        *rows,
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=["hap1", "hap1_1rep", "rt112", "jacks"])
    parser.add_argument(
        "--candidates", nargs="+", choices=list(CANDIDATES), default=list(CANDIDATES)
    )
    parser.add_argument("--method", choices=br.METHODS, default="auto")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 4, 10, 25])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--fit-seed", type=int, default=1)
    parser.add_argument("--rerun-mageck", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS / "panel.json")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument(
        "--baseline-only", action="store_true", help="score the mean log-ratio of --cases only"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--hdi-prob", type=float, default=0.94, help=argparse.SUPPRESS)
    parser.add_argument("candidate", nargs="?", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(Path(args.child), args.candidate, args.method, args.fit_seed, args.hdi_prob)
        return
    stored = json.loads(args.out.read_text()) if args.out.exists() else {"cases": {}}
    if args.baseline_only:  # the mean log-ratio of --cases, no fits
        for case in panel_cases(args.cases, args):
            score_baseline(case, stored["cases"].setdefault(case["name"], {}))
        save(stored, args.out)
    elif not args.report_only:
        if not br.SHARED.is_dir():
            raise SystemExit(f"shared data folder not found: {br.SHARED}")
        br.ensure_mageck()
        stored["env"] = br.environment()
        for case in panel_cases(args.cases, args):
            run_case(case, args, stored)
    write_report(stored, args.out.with_suffix(".md"))
    if args.out.resolve() == (RESULTS / "panel.json").resolve():
        import update_readme

        update_readme.main([])
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}", file=sys.stderr)


if __name__ == "__main__":
    main()
