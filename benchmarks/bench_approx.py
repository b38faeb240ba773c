"""Approximate inference (``fit(method="advi")``) against NUTS, and genome-wide speed.

Two parts, both on simulated screens (``simulate_screen``: one pool + 3 control + 3
treated samples, 4 guides per gene) and the formula
``count ~ 1 + treatment + (1 + treatment | gene) + (1 + treatment | gene:sgrna)``
(``pool="joint"``, ``dispersion="sgrna"``, the `ScreenModel` defaults):

1. ``accuracy`` (``--genes 2000``): NUTS (nutpie, 2 chains x 500 draws after 500 tuning
   steps) against ADVI with the default settings and with the variants in ``VARIANTS``.
   Gene LFC = ``b[treatment[treated]] + r_gene[:, treatment[treated]]`` (natural log).
   Reported: Pearson correlation of the gene LFC posterior means, the median over genes
   of ``sd_advi / sd_nuts`` (with the 10th and 90th percentiles), hit calls at q = 0.05
   (lfsr = ``min(P(LFC > 0), P(LFC < 0))``, q = running mean of the sorted lfsr, hit if
   ``q <= 0.05``; `screenformula.results.contrast_core` when it imports, else the same
   inline), their agreement (hits of both, Jaccard index), the AUC of ``|mean| / sd``
   for the simulated hit genes (``truth.genes["is_hit"]``), the group sds, and wall
   times. The NUTS reference is cached (``--cache-dir``) and reused when its settings
   match.
2. ``genome`` (``--genome-genes 20000``): from a MAGeCK-format count table on disk to a
   gene results table, in a fresh Python process: `read_counts` with a sample sheet,
   ``ScreenModel``, ``fit(method="advi")``, ``fit.contrast().genes`` written as TSV.
   Compared (wall time, the ratio) with ``mageck2 test`` on the same file (control = the
   3 control samples; the pool sample is not used by ``mageck test``), installed from
   PyPI in its own virtual environment (``--mageck-venv``, created when missing). Each
   is run ``--repeats`` times; the first ADVI run may include PyTensor's C compilation
   (cached on disk afterwards).

Results go to ``benchmarks/results/bench_approx.json`` and are appended (never rewritten)
to ``benchmarks/README.md`` under "## Approximate inference".

Examples
--------
    nice -n 10 python benchmarks/bench_approx.py                  # both parts
    nice -n 10 python benchmarks/bench_approx.py --parts genome --repeats 2
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

FORMULA = "count ~ 1 + treatment + (1 + treatment | gene) + (1 + treatment | gene:sgrna)"
COEF = "treatment[treated]"
HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
README = HERE / "README.md"
SECTION = "## Approximate inference"
NUTS_SETTINGS = {"draws": 500, "tune": 500, "chains": 2, "random_seed": 1}
#: ADVI variants measured besides the defaults: label -> (ScreenModel kwargs, fit kwargs).
VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "default": ({}, {}),
    "default, random_seed=2": ({}, {"random_seed": 2}),
    "default, random_seed=3": ({}, {"random_seed": 3}),
    "default, 3000 iterations (no early stop)": ({}, {"tolerance": 0, "n": 3000}),
    "obj_n_mc=10": ({}, {"obj_n_mc": 10}),
    "guide effects centred": ({"parameterization": {"sgrna": True}}, {}),
    "guide effects centred, 4000 iterations": (
        {"parameterization": {"sgrna": True}},
        {"tolerance": 0, "n": 4000},
    ),
    "all effects centred, 4000 iterations": (
        {"parameterization": True},
        {"tolerance": 0, "n": 4000},
    ),
}
#: ScreenModel kwargs of the genome-wide ADVI runs besides the default (run once each).
GENOME_VARIANTS: dict[str, dict[str, Any]] = {
    "guide effects centred": {"parameterization": {"sgrna": True}},
}
MAGECK_VENV = Path("/tmp/mageck-venv")
MAGECK_PYTHON = "/root/.pyenv/versions/3.11.7/bin/python"


# ------------------------------------------------------------------------- helpers
def _quiet() -> None:
    warnings.filterwarnings("ignore")
    import logging

    logging.getLogger("pymc").setLevel(logging.ERROR)


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def lfsr_and_hits(draws: np.ndarray, fdr: float = 0.05) -> tuple[np.ndarray, np.ndarray, str]:
    """lfsr per gene (draws x genes), hit calls at q <= ``fdr``, and where they came from."""
    try:
        from screenformula.results import contrast_core as core

        lfsr = core.lfsr(draws)
        q = core.qvalues(lfsr)
        source = "screenformula.results.contrast_core"
    except Exception:  # noqa: BLE001 - the module is optional here
        up = (draws > 0).mean(axis=0)
        down = (draws < 0).mean(axis=0)
        lfsr = 1.0 - np.maximum(up, down)
        order = np.argsort(lfsr, kind="stable")
        q = np.empty_like(lfsr)
        q[order] = np.cumsum(lfsr[order]) / np.arange(1, lfsr.size + 1)
        source = "inline"
    return lfsr, q <= fdr, source


def auc(is_hit: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve of ``score`` for ``is_hit`` (Mann-Whitney, ties averaged)."""
    from scipy.stats import rankdata

    y = np.asarray(is_hit, dtype=bool)
    ranks = rankdata(score)
    n1, n0 = int(y.sum()), int((~y).sum())
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def gene_lfc_draws(fit: Any) -> tuple[np.ndarray, np.ndarray]:
    """Gene LFC draws (draws x genes) and the gene names, from a fit's posterior."""
    post = fit.posterior
    lfc = post["b"].sel(b_coef=COEF) + post["r_gene"].sel(gene_coef=COEF)
    lfc = lfc.stack(sample=("chain", "draw")).transpose("sample", "gene")
    return np.asarray(lfc.values), np.asarray(lfc["gene"].values).astype(str)


def hyper_means(fit: Any) -> dict[str, list[float]]:
    post = fit.posterior
    out = {}
    for name in ("sd_gene", "sd_sgrna", "phi_rate"):
        if name in post:
            out[name] = np.round(post[name].mean(("chain", "draw")).values.ravel(), 4).tolist()
    return out


def environment() -> dict[str, Any]:
    from importlib.metadata import version

    from _machine import cpu_name

    cpu = cpu_name()
    return {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "host_cores": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "versions": {p: version(p) for p in ("screenformula", "pymc", "pytensor", "nutpie")},
        "loadavg_start": [round(x, 1) for x in os.getloadavg()],
    }


# ------------------------------------------------------------------------ accuracy
def nuts_reference(n_genes: int, seed: int, cache_dir: Path) -> dict[str, Any]:
    """NUTS gene LFC draws and group sds (cached by genes, seed and sampler settings)."""
    import screenformula as sf

    key = f"nuts_{n_genes}g_seed{seed}_" + "_".join(f"{k}{v}" for k, v in NUTS_SETTINGS.items())
    path = cache_dir / f"{key}.npz"
    if path.exists():
        ref = np.load(path, allow_pickle=False)
        print(f"NUTS reference from {path}", file=sys.stderr)
        return {
            "lfc": ref["lfc"],
            "genes": ref["genes"],
            "wall_s": float(ref["wall_s"]),
            "hyper": json.loads(str(ref["hyper"])),
            "rhat_max": float(ref["rhat_max"]),
        }
    data, _ = sf.simulate_screen(n_genes=n_genes, random_seed=seed)
    model = sf.ScreenModel(FORMULA, data)
    start = time.perf_counter()
    fit = model.fit(progress=False, store_sgrna=False, log_likelihood=False, **NUTS_SETTINGS)
    wall = time.perf_counter() - start
    lfc, genes = gene_lfc_draws(fit)
    table = fit.diagnostics(warn=False)
    rhat = float(table["rhat_max"].max())
    hyper = hyper_means(fit)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.savez(path, lfc=lfc, genes=genes, wall_s=wall, hyper=json.dumps(hyper), rhat_max=rhat)
    return {"lfc": lfc, "genes": genes, "wall_s": wall, "hyper": hyper, "rhat_max": rhat}


def run_accuracy(n_genes: int, seed: int, cache_dir: Path, variants: list[str]) -> dict[str, Any]:
    import screenformula as sf

    _quiet()
    data, truth = sf.simulate_screen(n_genes=n_genes, random_seed=seed)
    ref = nuts_reference(n_genes, seed, cache_dir)
    genes = ref["genes"]
    is_hit = truth.genes.set_index("gene").loc[genes, "is_hit"].to_numpy()
    nuts_mean, nuts_sd = ref["lfc"].mean(axis=0), ref["lfc"].std(axis=0)
    _, nuts_hits, source = lfsr_and_hits(ref["lfc"])
    out: dict[str, Any] = {
        "n_genes": n_genes,
        "seed": seed,
        "nuts": {
            "settings": NUTS_SETTINGS,
            "wall_s": round(ref["wall_s"], 1),
            "rhat_max": round(ref["rhat_max"], 3),
            "hits": int(nuts_hits.sum()),
            "auc": round(auc(is_hit, np.abs(nuts_mean) / nuts_sd), 4),
            **ref["hyper"],
        },
        "hit_source": source,
        "n_true_hits": int(is_hit.sum()),
        "advi": {},
    }
    for label in variants:
        model_kwargs, fit_kwargs = VARIANTS[label]
        model = sf.ScreenModel(FORMULA, data, **model_kwargs)
        start, cpu = time.perf_counter(), _cpu_s()
        fit = model.fit(
            method="advi", progress=False, store_sgrna=False, **{"random_seed": 1, **fit_kwargs}
        )
        wall, cpu = time.perf_counter() - start, _cpu_s() - cpu
        lfc, advi_genes = gene_lfc_draws(fit)
        assert np.array_equal(advi_genes, genes)
        mean, sd = lfc.mean(axis=0), lfc.std(axis=0)
        _, hits, _ = lfsr_and_hits(lfc)
        ratio = sd / nuts_sd
        both = int((hits & nuts_hits).sum())
        either = int((hits | nuts_hits).sum())
        stats = fit.options["advi"]
        out["advi"][label] = {
            "model_kwargs": model_kwargs,
            "fit_kwargs": fit_kwargs,
            "wall_s": round(wall, 1),
            "cpu_s": round(cpu, 1),
            "iterations": stats["iterations"],
            "converged": stats["converged"],
            "final_loss": round(stats["final_loss"], 1),
            "r_mean": round(float(np.corrcoef(mean, nuts_mean)[0, 1]), 4),
            "sd_ratio_median": round(float(np.median(ratio)), 3),
            "sd_ratio_q10_q90": np.round(np.quantile(ratio, [0.1, 0.9]), 3).tolist(),
            "hits": int(hits.sum()),
            "hits_both": both,
            "jaccard": round(both / either, 3) if either else None,
            "auc": round(auc(is_hit, np.abs(mean) / sd), 4),
            **hyper_means(fit),
        }
        print(f"[accuracy] {label}: {out['advi'][label]}", file=sys.stderr, flush=True)
    return out


# -------------------------------------------------------------------------- genome
def write_screen(n_genes: int, seed: int, folder: Path) -> dict[str, Any]:
    """Simulate a screen and write counts.tsv (MAGeCK format), samples.tsv and truth."""
    import pandas as pd

    import screenformula as sf

    data, truth = sf.simulate_screen(n_genes=n_genes, random_seed=seed)
    counts = pd.DataFrame(data.counts, columns=[str(s) for s in data.samples.index])
    counts.insert(0, "Gene", np.asarray(data.genes_of_sgrna).astype(str))
    counts.insert(0, "sgRNA", np.asarray(data.sgrnas).astype(str))
    counts.to_csv(folder / "counts.tsv", sep="\t", index=False)
    data.samples.reset_index().to_csv(folder / "samples.tsv", sep="\t", index=False)
    truth.genes.to_csv(folder / "truth.tsv", sep="\t", index=False)
    sheet = data.samples
    return {
        "control": [str(s) for s in sheet.index[sheet["condition"] == "control"]],
        "treated": [str(s) for s in sheet.index[sheet["condition"] == "treated"]],
        "n_sgrnas": int(data.n_sgrnas),
        "samples": [str(s) for s in sheet.index],
    }


def ensure_mageck(venv: Path) -> Path:
    """The ``mageck2`` executable, installing mageck2 from PyPI into ``venv`` if missing."""
    exe = venv / "bin" / "mageck2"
    if not exe.exists():
        python = MAGECK_PYTHON if Path(MAGECK_PYTHON).exists() else sys.executable
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "mageck2"], check=True)
    # mageck2 calls its RRA helper through PATH; pip puts it next to mageck2
    if not (venv / "bin" / "RRA").exists():
        raise SystemExit(f"{venv}/bin/RRA missing: mageck2's RRA helper did not install")
    return exe


def time_command(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Wall and child CPU seconds of one command (which must succeed)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "stdout": proc.stdout}


def pipeline(folder: Path, model_kwargs: dict[str, Any]) -> None:
    """Count table on disk -> gene results table on disk, with ADVI (run in a child)."""
    start = time.perf_counter()
    _quiet()
    import screenformula as sf

    marks = {"import": time.perf_counter() - start}
    data = sf.read_counts(folder / "counts.tsv", folder / "samples.tsv")
    marks["read"] = time.perf_counter() - start
    model = sf.ScreenModel(FORMULA, data, **model_kwargs)
    _ = model.pymc_model
    marks["build"] = time.perf_counter() - start
    fit = model.fit(method="advi", random_seed=1, progress=False)
    marks["fit"] = time.perf_counter() - start
    genes = fit.contrast("treatment").genes
    marks["contrast"] = time.perf_counter() - start
    genes.to_csv(folder / "advi_genes.tsv", sep="\t", index=False)
    marks["write"] = time.perf_counter() - start
    steps = {k: round(v, 1) for k, v in marks.items()}
    print(json.dumps({"marks": steps, "advi": fit.options["advi"], "store": fit.options}))


def genome_auc(folder: Path) -> dict[str, float]:
    """AUC for the simulated hits of the ADVI gene table and of mageck2's gene summary."""
    import pandas as pd

    truth = pd.read_csv(folder / "truth.tsv", sep="\t").set_index("gene")
    out = {}
    if (folder / "advi_genes.tsv").exists():
        ours = pd.read_csv(folder / "advi_genes.tsv", sep="\t")
        ours = ours[ours["gene"].isin(truth.index)]
        score = np.abs(ours["lfc"]) / ours["lfc_sd"]
        out["advi"] = auc(truth.loc[ours["gene"], "is_hit"].to_numpy(), score.to_numpy())
    if (folder / "mageck.gene_summary.txt").exists():
        mageck = pd.read_csv(folder / "mageck.gene_summary.txt", sep="\t")
        mageck = mageck[mageck["id"].isin(truth.index)]
        p = np.minimum(mageck["neg|p-value"], mageck["pos|p-value"]).to_numpy()
        out["mageck2"] = auc(truth.loc[mageck["id"], "is_hit"].to_numpy(), -p)
    return {k: round(v, 4) for k, v in out.items()}


def run_genome(n_genes: int, seed: int, repeats: int, venv: Path) -> dict[str, Any]:
    exe = ensure_mageck(venv)
    env = dict(os.environ, PATH=f"{exe.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    with tempfile.TemporaryDirectory(prefix="bench_approx_") as tmp:
        folder = Path(tmp)
        info = write_screen(n_genes, seed, folder)
        mageck_cmd = [
            str(exe),
            "test",
            "-k",
            "counts.tsv",
            "-t",
            ",".join(info["treated"]),
            "-c",
            ",".join(info["control"]),
            "-n",
            "mageck",
        ]
        ours = [sys.executable, str(Path(__file__).resolve()), "--pipeline", str(folder)]
        jobs = []
        for _ in range(repeats):
            jobs += [("mageck2", "mageck2", mageck_cmd), ("advi", "ADVI, default", ours)]
        for label, kwargs in GENOME_VARIANTS.items():
            jobs.append(("advi", f"ADVI, {label}", [*ours, "--model-kwargs", json.dumps(kwargs)]))
        runs: list[dict[str, Any]] = []
        for kind, label, cmd in jobs:
            result = time_command(cmd, folder, env=env if kind == "mageck2" else None)
            stdout = result.pop("stdout").strip()
            result.update(kind=kind, label=label, loadavg=[round(x, 1) for x in os.getloadavg()])
            if kind == "advi":
                detail = json.loads(stdout.splitlines()[-1])
                result.update({k: detail[k] for k in ("marks", "advi")})
            result["auc"] = genome_auc(folder)[kind]
            runs.append(result)
            print(f"[genome] {label}: {result}", file=sys.stderr, flush=True)
    mageck = min(r["wall_s"] for r in runs if r["kind"] == "mageck2")
    advi = min(r["wall_s"] for r in runs if r["label"] == "ADVI, default")
    return {
        "n_genes": n_genes,
        "n_sgrnas": info["n_sgrnas"],
        "samples": info["samples"],
        "seed": seed,
        "mageck_command": " ".join(mageck_cmd),
        "runs": runs,
        "ratio_best": round(advi / mageck, 2),
    }


# ------------------------------------------------------------------------ reporting
def markdown(record: dict[str, Any]) -> str:
    env = record["env"]
    lines = [
        "",
        f"### Run of {env['date']}",
        "",
        f"`benchmarks/bench_approx.py`, {env['host_cores']} shared cores ({env['cpu']}), "
        f"load average {env['loadavg_start']} at start (other jobs running: wall times are "
        "inflated, ratios measured back to back); "
        + ", ".join(f"{k} {v}" for k, v in env["versions"].items())
        + ".",
    ]
    acc = record.get("accuracy")
    if acc:
        nuts = acc["nuts"]
        lines += [
            "",
            f"**ADVI vs NUTS, {acc['n_genes']:,} genes** (seed {acc['seed']}; "
            f"{acc['n_true_hits']} simulated hit genes). NUTS: nutpie, 2 chains x 500 draws "
            f"after 500 tuning, {nuts['wall_s']:.0f} s, R-hat max {nuts['rhat_max']}, "
            f"{nuts['hits']} hits at q = 0.05, AUC {nuts['auc']}, sd_gene {nuts.get('sd_gene')}, "
            f"sd_sgrna {nuts.get('sd_sgrna')} (Intercept, slope). Hit calls from "
            f"`{acc['hit_source']}`.",
            "",
            "| ADVI setting | wall s | iterations (converged) | r(LFC means) | "
            "sd ratio median (10-90 %) | hits | hits shared with NUTS (Jaccard) | AUC | "
            "sd_gene | sd_sgrna |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for label, a in acc["advi"].items():
            q10, q90 = a["sd_ratio_q10_q90"]
            lines.append(
                f"| {label} | {a['wall_s']:.0f} | {a['iterations']} "
                f"({'yes' if a['converged'] else 'no'}) | {a['r_mean']:.4f} | "
                f"{a['sd_ratio_median']:.2f} ({q10:.2f}-{q90:.2f}) | {a['hits']} | "
                f"{a['hits_both']} ({a['jaccard']}) | {a['auc']} | {a.get('sd_gene')} | "
                f"{a.get('sd_sgrna')} |"
            )
    gen = record.get("genome")
    if gen:
        lines += [
            "",
            f"**Genome-wide speed, {gen['n_genes']:,} genes x 4 guides "
            f"({gen['n_sgrnas']:,} sgRNAs), samples {', '.join(gen['samples'])}**: count "
            "table on disk to gene results table on disk, each a fresh process, in the "
            f"order listed. mageck2: `{gen['mageck_command']}` (its RRA helper on PATH). "
            "ADVI: `read_counts` + `ScreenModel` + `fit(method='advi')` + "
            "`fit.contrast().genes` written as TSV. AUC: the simulated hit genes, ranked by "
            "|mean| / sd (ADVI) or the smaller one-sided p-value (mageck2).",
            "",
            "| run | wall s | CPU s | steps (cumulative wall s) | iterations | AUC | "
            "load (1 min) |",
            "|---|---|---|---|---|---|---|",
        ]
        for run in gen["runs"]:
            marks = ", ".join(f"{k} {v}" for k, v in run.get("marks", {}).items())
            its = run.get("advi", {}).get("iterations", "")
            lines.append(
                f"| {run['label']} | {run['wall_s']} | {run['cpu_s']} | {marks} | {its} | "
                f"{run['auc']} | {run['loadavg'][0]} |"
            )
        lines += [
            "",
            f"Ratio, fastest default ADVI run / fastest mageck2 run: **{gen['ratio_best']}x**.",
        ]
    return "\n".join(lines) + "\n"


def append_report(record: dict[str, Any]) -> None:
    """Append this run to README.md under SECTION (added at the end when missing)."""
    text = README.read_text() if README.exists() else ""
    block = markdown(record)
    if SECTION not in text:
        block = f"\n{SECTION}\n" + block
    with README.open("a") as handle:
        handle.write(block)


def save_json(record: dict[str, Any]) -> None:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "bench_approx.json"
    records = json.loads(path.read_text()) if path.exists() else []
    records.append(record)
    path.write_text(json.dumps(records, indent=1) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", nargs="+", default=["accuracy", "genome"])
    parser.add_argument("--genes", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--genome-genes", type=int, default=20000)
    parser.add_argument("--genome-seed", type=int, default=2024)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--mageck-venv", type=Path, default=MAGECK_VENV)
    parser.add_argument(
        "--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "bench_approx_cache"
    )
    parser.add_argument("--no-report", action="store_true", help="JSON on stdout only")
    parser.add_argument("--pipeline", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--model-kwargs", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.pipeline:
        pipeline(args.pipeline, json.loads(args.model_kwargs))
        return
    record: dict[str, Any] = {"env": environment()}
    if "accuracy" in args.parts:
        record["accuracy"] = run_accuracy(args.genes, args.seed, args.cache_dir, args.variants)
    if "genome" in args.parts:
        record["genome"] = run_genome(
            args.genome_genes, args.genome_seed, args.repeats, args.mageck_venv
        )
    record["env"]["loadavg_end"] = [round(x, 1) for x in os.getloadavg()]
    if args.no_report:
        print(json.dumps(record, indent=1))
        return
    save_json(record)
    append_report(record)
    print(markdown(record))


if __name__ == "__main__":
    if shutil.which("nice") and os.nice(0) == 0:
        print("tip: run with nice -n 10 on shared machines", file=sys.stderr)
    main()
