"""Markdown tables of ``bench_real.py``'s results (``results/real.json`` -> ``real.md``).

Also gives ``headline_rows`` to ``update_readme.py``: the README's short table.

"Ours" is each case's main fit: the first of `MAIN_KEYS` that it has (`main_key`):
``ours_auto_trend`` (the library's default model, dispersion "trend"), then the
per-guide ``sgrna`` dispersion fits stored before it (``ours_auto``, ``ours_two_stage``,
``ours_approx`` from before ``bench_real.py --method``), labelled with the method that
ran (`method_label`: ``auto: two-stage, dispersion trend``, ``approx``);
``<key>_shared`` is its ``dispersion="shared"`` variant (JACKS).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

#: Where a case's main fit is stored, by preference (``ours_nuts`` last: the extra NUTS
#: fit, main only in a ``--method nuts`` run).
MAIN_KEYS = (
    "ours_auto_trend",  # the library's default model (dispersion "trend")
    "ours_two_stage_trend",
    "ours_auto",  # the per-guide dispersion "sgrna", the default before the panel
    "ours_two_stage",
    "ours_approx",
    "ours_nuts",
)
_NAMES = {"nuts": "NUTS", "two-stage": "two-stage", "advi": "approx", "approx": "approx"}


def main_key(rec: dict[str, Any]) -> str | None:
    """The key of ``rec``'s main fit (`MAIN_KEYS`), None when it has none."""
    return next((key for key in MAIN_KEYS if key in rec), None)


def method_label(key: str, entry: dict[str, Any] | None = None) -> str:
    """``approx``, ``two-stage``, ``auto: NUTS`` (with what ``auto`` ran, when recorded)."""
    method = key.removeprefix("ours_").removesuffix("_shared")
    model = ", dispersion trend" if method.endswith("_trend") else ""
    method = method.removesuffix("_trend")
    if method == "auto":
        used = (entry or {}).get("method_used")
        return (f"auto: {_NAMES.get(used, used)}" if used else "auto") + model
    return _NAMES.get(method.replace("_", "-"), method) + model


def _labels(recs: list[dict[str, Any]]) -> str:
    """The distinct labels of these records' main fits, in order ('approx' when none)."""
    labels: list[str] = []
    for rec in recs:
        key = main_key(rec)
        if key is not None and method_label(key, rec[key]) not in labels:
            labels.append(method_label(key, rec[key]))
    return ", ".join(labels) or "approx"


def peak_all(entry: dict[str, Any]) -> float | None:
    """Every process of a tool together (summed PSS, GB), where sampled and larger than its
    largest process's peak (worker processes beside it); else None.

    A run shorter than the sampling interval can show a smaller tree figure than its
    largest process's peak: only a larger one says something.
    """
    tree = entry.get("peak_tree_pss_gb")
    return tree if tree is not None and tree > entry["peak_gb"] else None


def peak_cell(entry: dict[str, Any]) -> str:
    """A table cell for peak memory (GB): the largest process's RSS, then all processes
    together where `peak_all` has them: ``1.49 (all 2.31)``."""
    cell = _f(entry["peak_gb"], 2)
    if (tree := peak_all(entry)) is not None:
        cell += f" (all {tree:.2f})"
    return cell


def _f(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _hits(score: dict[str, Any]) -> str:
    """'hits (essential / non-essential)'."""
    return f"{score['hits']} ({score['hits_essential']} / {score['hits_nonessential']})"


def _env_line(env: dict[str, Any]) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items())
    return (
        f"{env['date']}, {env['cores']} cores ({env['cpu']}), load {env['load_start']} at "
        f"start, git {env['git']}; {versions}"
    )


def screen_rows(cases: dict[str, Any], names: list[str]) -> list[str]:
    """One block of rows per full-depth screen: our methods, then mageck2."""
    rows = [
        "| screen | tool | AUC (LFC) | AUC (own statistic) | avg. precision | depleted at 5 % FDR "
        "(essential / non-essential) | wall s | peak GB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        rec = cases.get(name)
        if rec is None:
            continue
        ref = f"{rec['n_genes']:,} genes, {rec['n_sgrnas']:,} guides"
        main = main_key(rec)
        tools = [("ours_nuts", "screenformula NUTS")]
        if main is not None and main != "ours_nuts":
            tools.append((main, f"screenformula {method_label(main, rec[main])}"))
        for key, label in (*tools, ("mageck", "mageck2 test")):
            entry = rec.get(key)
            if entry is None:
                continue
            score = entry.get("delta_0.5", entry)
            hits = _hits(score)
            if "delta_0" in entry:
                hits += f"; delta 0: {_hits(entry['delta_0'])}"
            rows.append(
                f"| {name} ({ref}) | {label} | {_f(score['auc'])} | {_f(score['auc_own'])} | "
                f"{_f(score['ap'])} | {hits} | {_f(entry['wall_s'], 0)} | "
                f"{peak_cell(entry)} |"
            )
    return rows


def lowdepth_summary(cases: dict[str, Any]) -> list[dict[str, Any]]:
    """Means over seeds per (depth, replicates): ours (each case's main fit, `main_key`;
    under ``"ours"``, its `method_label` under ``"label"``) vs mageck2."""
    groups: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for rec in cases.values():
        if rec.get("group") == "lowdepth":
            groups.setdefault((rec["level"], rec["replicates"]), []).append(rec)
        elif rec.get("name") == "hap1":  # full depth, every replicate
            groups.setdefault((1, len(rec["treated"])), []).append({**rec, "seed": 0})
    out = []
    for (level, reps), recs in sorted(groups.items(), key=lambda kv: (-kv[0][1], kv[0][0])):
        row: dict[str, Any] = {"level": level, "replicates": reps, "seeds": len(recs)}
        for key, pick in (("ours", main_key), ("mageck", lambda r: "mageck")):
            entries = [r[pick(r)] for r in recs if pick(r) in r]
            if not entries:
                continue
            scores = [e.get("delta_0.5", e) for e in entries]
            row[key] = {
                m: float(np.mean([s[m] for s in scores]))
                for m in ("auc", "ap", "hits_essential", "hits_nonessential")
            }
            for m in ("local_hits_essential", "local_hits_nonessential"):  # the default rule
                if all(m in s for s in scores):
                    row[key][m] = float(np.mean([s[m] for s in scores]))
            row[key]["wall_s"] = float(np.mean([e["wall_s"] for e in entries]))
            row[key]["auc_min"] = float(min(s["auc"] for s in scores))
            row[key]["auc_max"] = float(max(s["auc"] for s in scores))
        if "ours" in row:
            row["label"] = _labels(recs)
        row["reads_per_guide"] = float(
            np.mean([sum(r["reads"].values()) / len(r["reads"]) / r["n_sgrnas"] for r in recs])
        )
        out.append(row)
    return out


def lowdepth_rows(cases: dict[str, Any]) -> list[str]:
    rows = [
        "| depth | day-18 replicates | seeds | ours | mean reads / guide / sample | "
        "AUC ours / MAGeCK (range over seeds) | avg. precision ours / MAGeCK | "
        "essential at 5 % FDR ours / MAGeCK | non-essential at 5 % FDR ours / MAGeCK | "
        "wall s ours / MAGeCK |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in lowdepth_summary(cases):
        o, m = row.get("ours"), row.get("mageck")
        if not (o and m):
            continue
        depth = "full" if row["level"] == 1 else f"1/{row['level']}"
        rows.append(
            f"| {depth} | {row['replicates']} | {row['seeds']} | {row['label']} | "
            f"{row['reads_per_guide']:.0f} | "
            f"{o['auc']:.4f} ({o['auc_min']:.4f}-{o['auc_max']:.4f}) / {m['auc']:.4f} "
            f"({m['auc_min']:.4f}-{m['auc_max']:.4f}) | {o['ap']:.3f} / {m['ap']:.3f} | "
            f"{o['hits_essential']:.1f} / {m['hits_essential']:.1f} | "
            f"{o['hits_nonessential']:.1f} / {m['hits_nonessential']:.1f} | "
            f"{o['wall_s']:.0f} / {m['wall_s']:.0f} |"
        )
    return rows


def jacks_rows(cases: dict[str, Any]) -> list[str]:
    joint = cases.get("jacks_joint")
    if joint is None:
        return []
    rows = [
        "| cell line | CEGv2 / NEGv1 genes | dispersion | AUC joint (all lines, one model) | "
        "AUC line alone | AUC mageck2 (line alone) | depleted at 5 % FDR joint / alone / "
        "MAGeCK (essential, non-essential) |",
        "|---|---|---|---|---|---|---|",
    ]
    main = main_key(joint)
    if main is None:
        return []
    per_line = joint[main]["per_line"]
    for key, dispersion in ((main, "sgrna"), (f"{main}_shared", "shared")):
        for line in per_line:
            alone = cases.get(f"jacks_{line}")
            alone_key = None if alone is None else main_key(alone)
            if alone_key is not None and dispersion == "shared":
                alone_key += "_shared"
            if alone is None or key not in joint or alone_key not in alone:
                continue
            score = joint[key]["per_line"][line]
            a, m = alone[alone_key]["delta_0.5"], alone["mageck"]
            rows.append(
                f"| {line} | {score['n_essential']} / {score['n_nonessential']} | {dispersion} | "
                f"{score['auc']:.4f} | {a['auc']:.4f} | {m['auc']:.4f} | "
                f"{score['hits_essential']}, {score['hits_nonessential']} / "
                f"{a['hits_essential']}, {a['hits_nonessential']} / "
                f"{m['hits_essential']}, {m['hits_nonessential']} |"
            )
    alone_recs = [cases[f"jacks_{line}"] for line in per_line if f"jacks_{line}" in cases]
    walls = [r[main_key(r)]["wall_s"] for r in alone_recs if main_key(r) is not None]
    rows += [
        "",
        f"Wall time: joint {joint[main]['wall_s']:.0f} s; lines alone {sum(walls):.0f} s in all.",
    ]
    return rows


def write_report(stored: dict[str, Any], path: Path) -> None:
    cases = stored["cases"]
    envs = {rec["env"]["date"]: rec["env"] for rec in cases.values() if "env" in rec}
    lines = [
        "# bench_real results",
        "",
        "Generated by `benchmarks/bench_real.py` (do not edit by hand). Runs:",
        "",
        *(f"- {_env_line(env)}" for env in envs.values()),
        "",
        "Our hits: `qvalue_down <= 0.05` with `delta = 0.5` (log2; the command line's "
        "default), and after *delta 0*: with `delta = 0`. MAGeCK's: `neg|fdr < 0.05`. "
        "AUC and average precision: essential vs non-essential genes ranked by depletion "
        "(`-lfc`; MAGeCK `-neg|lfc`); *own statistic*: our `lfc / lfc_sd`, MAGeCK's RRA "
        "`neg|score`.",
        "",
        "## Full-depth screens",
        "",
        *screen_rows(cases, ["hap1", "rt112"]),
    ]
    nuts_recs = [rec for rec in cases.values() if rec.get("group") == "hap1nuts"]
    if nuts_recs:
        ours = _labels(nuts_recs)
        if ours == "approx":
            ours = "the approximation"
        else:
            ours = f"the default fit ({ours})" if ours.startswith("auto") else ours
        lines += [
            "",
            f"## HAP1 on the reference genes only: NUTS, {ours} and MAGeCK",
            "",
            "The 1,443 CEGv2 / NEGv1 genes of HAP1 (about 5,800 guides), small enough for "
            "NUTS, at full depth and at 1/10 depth (one thinning seed).",
            "",
            *screen_rows(cases, ["hap1_refgenes", "hap1_refgenes_1of10"]),
        ]
    low, hap1 = lowdepth_rows(cases), cases.get("hap1")
    if len(low) > 2:
        low_recs = [r for r in cases.values() if r.get("group") == "lowdepth" or r is hap1]
        lines += [
            "",
            f"## Low depth (HAP1, binomially thinned; ours = {_labels(low_recs)})",
            "",
            *low,
        ]
    jacks = jacks_rows(cases)
    if jacks:
        jacks_recs = [r for r in cases.values() if r.get("group") == "jacks"]
        lines += [
            "",
            f"## Several conditions at once (JACKS AML example; ours = {_labels(jacks_recs)})",
            "",
            *jacks,
        ]
    path.write_text("\n".join(lines) + "\n")


def headline_rows(stored: dict[str, Any]) -> list[str]:
    """The README's table: ours next to MAGeCK's on each real screen and setting."""
    cases = stored["cases"]
    rows = [
        "| screen (our method) | AUC ours / MAGeCK | essential at 5 % FDR ours / MAGeCK | "
        "non-essential at 5 % FDR ours / MAGeCK | wall s ours / MAGeCK |",
        "|---|---|---|---|---|",
    ]
    rec = cases.get("hap1")
    main = None if rec is None else main_key(rec)
    if rec and main and "mageck" in rec:
        o, m = rec[main]["delta_0.5"], rec["mageck"]
        label = f"HAP1 TKOv3 genome-wide, full depth ({method_label(main, rec[main])})"
        rows.append(_headline(label, o, m, rec[main]["wall_s"], m["wall_s"]))
    for row in lowdepth_summary(cases):
        if row["level"] == 1 and row["replicates"] == 3:
            continue  # the row above
        if row["level"] in (10, 1) and "ours" in row and "mageck" in row:
            o, m = row["ours"], row["mageck"]
            depth = "full depth" if row["level"] == 1 else "1/10 depth"
            reps = "1 day-18 replicate" if row["replicates"] == 1 else "3 day-18 replicates"
            label = f"HAP1 at {depth}, {reps} ({row['label']})"
            if row["seeds"] > 1:
                label += f", mean of {row['seeds']} thinnings"
            rows.append(_headline(label, o, m, o["wall_s"], m["wall_s"]))
    for name, depth in (("hap1_refgenes", "full depth"), ("hap1_refgenes_1of10", "1/10 depth")):
        rec = cases.get(name)
        if rec and "ours_nuts" in rec and "mageck" in rec:
            o, m = rec["ours_nuts"]["delta_0.5"], rec["mageck"]
            label = f"HAP1 CEGv2 + NEGv1 genes only, {depth} (NUTS)¹"
            rows.append(_headline(label, o, m, rec["ours_nuts"]["wall_s"], m["wall_s"]))
    rec = cases.get("rt112")
    main = None if rec is None else main_key(rec)
    if rec and main and "mageck" in rec:
        # the default fit (auto) when stored; else NUTS (2 x 500 draws) over the approximation
        key = main if main.startswith("ours_auto") or "ours_nuts" not in rec else "ours_nuts"
        o, m = rec[key]["delta_0.5"], rec["mageck"]
        label = f"RT112 (Evers et al.), 3 + 3 ({method_label(key, rec[key])})"
        rows.append(_headline(label, o, m, rec[key]["wall_s"], m["wall_s"]))
    lines = [c for c in cases if c.startswith("jacks_") and c != "jacks_joint"]
    alone = [cases[c] for c in lines if main_key(cases[c]) and "mageck" in cases[c]]
    if alone:
        o = np.mean([r[main_key(r)]["delta_0.5"]["auc"] for r in alone])
        m = np.mean([r["mageck"]["auc"] for r in alone])
        rows.append(
            f"| JACKS AML, {len(alone)} lines x 2 replicates vs plasmid, each line alone "
            f"({_labels(alone)}): mean AUC² | {o:.3f} / {m:.3f} | | | |"
        )
    rows += [
        "",
        "¹ Restricted to the reference genes so that NUTS fits in a benchmark run; "
        "with 44 % of the genes essential, MAGeCK's RRA null (most genes unaffected) does "
        "not hold there and its FDR calls are not comparable: read the AUC only. "
        "² 31 CEGv2 and 47 NEGv1 genes per line.",
    ]
    return rows


def _headline(label: str, o: dict, m: dict, wall_o: float, wall_m: float) -> str:
    def num(x: float) -> str:
        return f"{x:.0f}" if float(x).is_integer() else f"{x:.1f}"

    def ours(kind: str) -> str:  # the local rule (the default), q-values in brackets
        if f"local_{kind}" in o:
            return f"{num(o[f'local_{kind}'])} (q: {num(o[kind])})"
        return num(o[kind])

    return (
        f"| {label} | {o['auc']:.3f} / {m['auc']:.3f} | {ours('hits_essential')} / "
        f"{num(m['hits_essential'])} | {ours('hits_nonessential')} / "
        f"{num(m['hits_nonessential'])} | {wall_o:.0f} / {wall_m:.0f} |"
    )
