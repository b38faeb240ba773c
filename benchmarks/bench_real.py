"""Real screens against MAGeCK (``mageck2 test``), both tools run on the same counts.

Each case writes a MAGeCK-format count table and a sample sheet to a folder, then runs

- **screenformula** in a child process, table on disk -> gene table on disk
  (``sf.read_counts`` -> ``ScreenModel`` -> ``fit`` -> ``contrast``), with the default
  formula ``count ~ 1 + treatment + (1 + treatment | gene) + (1 + treatment | gene:sgrna)``,
  the reference sample(s) as the treatment's reference level (``pool=None``), and
- **mageck2 test** (PyPI, own venv, its ``RRA`` helper on PATH) with the same treated and
  control samples,

and scores both the same way on reference gene sets: ROC AUC and average precision of
essential vs non-essential genes by depletion (``-lfc`` for us, ``-neg|lfc`` for MAGeCK;
each tool's own statistic too: our ``lfc / lfc_sd``, MAGeCK's ``neg|score``), and the
genes called depleted at 5 % FDR (ours: ``qvalue_down <= 0.05`` with ``delta`` = 0.5 log2,
the command line's default, and with ``delta = 0``; MAGeCK: ``neg|fdr < 0.05``) with the
non-essential genes among them (false discoveries). Wall time and peak memory (the
child's and its descendants' maximum RSS, from ``wait4``) are measured back to back.

Cases (``--only``):

- ``hap1``: ``../shared/data/bagel-hap1-tkov3``, T18A-C vs T0, CEGv2 vs NEGv1;
- ``rt112``: ``../shared/data/cb2-evers-rt112``, after (A1-3) vs before (B1-3), the study's
  46 essential and 47 non-essential genes;
- ``lowdepth``: HAP1 binomially thinned to 1/4, 1/10 and 1/25 of its reads (every sample,
  T0 included), with all three day-18 replicates and with only T18A, several seeds;
- ``hap1nuts``: HAP1 restricted to the CEGv2 / NEGv1 genes, at full and 1/10 depth, so
  that NUTS runs too (the approximation against the exact posterior on real data);
- ``leukemia``: MAGeCK's leukemia demo (``../shared/data/mageck-leukemia``, 1,000 genes),
  HL60 and KBM7 final vs initial as replicates, CEGv2/NEGv1;
- ``jacks``: ``../shared/data/jacks-aml-yusa-small`` (5 AML lines x 2 replicates, shared
  plasmid): all lines in one model against fitting each line alone, per-line CEGv2/NEGv1
  AUC (MAGeCK per line for reference); each also with ``dispersion="shared"``, because
  per-guide dispersion with two samples a side can absorb a guide's depletion.

"Ours" is one fit per case with ``--method`` (default ``"auto"``, the library's default:
NUTS up to 2,000 genes, i.e. ``rt112``, ``hap1nuts`` and ``jacks``, and the two-stage engine
above, i.e. the genome-wide HAP1 cases; ``two-stage``, ``approx`` and ``nuts`` force one),
with the library's default draws, stored as ``ours_<method>`` (``ours_auto``,
``ours_two_stage``, ...; results from before ``--method``, ``ours_approx``, still render).
The child records the method that ran (``method_used``: what ``auto`` picked), its R-hat
max (NUTS) or its stage-1 R-hat max (two-stage). The ``hap1nuts`` and ``rt112`` cases add
a NUTS fit (2 chains x 500 draws after 500 tuning steps, ``ours_nuts``; not with
``--quick``), the ``jacks`` cases the same method with ``dispersion="shared"``
(``ours_<method>_shared``).

    nice -n 5 .venv/bin/python benchmarks/bench_real.py            # everything, method auto
    nice -n 5 .venv/bin/python benchmarks/bench_real.py --method approx   # as before (~1 h)
    .venv/bin/python benchmarks/bench_real.py --quick              # one seed, fewer levels
    .venv/bin/python benchmarks/bench_real.py --only rt112 --report-only

Results go to ``benchmarks/results/real.json`` (merged by case, so ``--only`` reruns
one part) and the tables to ``benchmarks/results/real.md``; ``benchmarks/update_readme.py``
puts the headline table into the README.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
SHARED = Path(os.environ.get("SCREENFORMULA_DATA", ROOT.parent / "shared" / "data"))
FORMULA = "count ~ 1 + treatment + (1 + treatment | gene) + (1 + treatment | gene:sgrna)"
MAGECK_VENV = Path(os.environ.get("MAGECK_VENV", "/tmp/mageck-venv"))
FDR = 0.05
DELTA = 0.5
NUTS = {"draws": 500, "tune": 500, "chains": 2}
#: ``--method`` choices for the main fit (``auto`` is the library's default).
METHODS = ("auto", "two-stage", "approx", "nuts")
DISPERSIONS = ("trend", "sgrna", "shared")  # "trend": the library's default


# ------------------------------------------------------------------------ the cases
def hap1_table() -> tuple[pd.DataFrame, list[str], list[str]]:
    """HAP1 TKOv3 counts (sgRNA, gene, T0, T18A-C), the control and treated samples."""
    table = pd.read_csv(SHARED / "bagel-hap1-tkov3" / "reads_hap1.txt", sep="\t")
    table.columns = ["sgRNA", "gene", *(c.removeprefix("HAP1_") for c in table.columns[2:])]
    return table, ["T0"], ["T18A", "T18B", "T18C"]


def hap1_reference() -> dict[str, set[str]]:
    from screenformula import datasets

    ref = datasets.load_reference_genes()
    return {"essential": set(ref["essential"]), "nonessential": set(ref["nonessential"])}


def thin(table: pd.DataFrame, fraction: float, seed: int) -> pd.DataFrame:
    """Binomial thinning of every count column to ``fraction`` of its reads."""
    rng = np.random.default_rng(seed)
    out = table.copy()
    for col in table.columns[2:]:
        out[col] = rng.binomial(table[col].to_numpy(dtype=np.int64), fraction)
    return out


def make_case(
    name: str,
    table: pd.DataFrame,
    control: list[str],
    treated: list[str],
    reference: dict[str, set[str]],
    **extra: Any,
) -> dict[str, Any]:
    return {
        "name": name,
        "table": table[["sgRNA", "gene", *control, *treated]],
        "control": control,
        "treated": treated,
        "reference": reference,
        **extra,
    }


def hap1_cases(args: argparse.Namespace) -> list[dict[str, Any]]:
    table, control, treated = hap1_table()
    return [make_case("hap1", table, control, treated, hap1_reference(), group="hap1")]


def lowdepth_cases(args: argparse.Namespace) -> list[dict[str, Any]]:
    table, control, treated = hap1_table()
    ref = hap1_reference()
    cases = []
    for reps in args.replicates:
        for level in args.levels:
            if level == 1 and reps == len(treated):
                continue  # that is the `hap1` case, which the low-depth table reuses
            seeds = [0] if level == 1 else args.seeds
            for seed in seeds:
                thinned = table if level == 1 else thin(table, 1.0 / level, seed)
                cases.append(
                    make_case(
                        f"hap1_1of{level}_{reps}rep_s{seed}",
                        thinned,
                        control,
                        treated[:reps],
                        ref,
                        group="lowdepth",
                        level=level,
                        replicates=reps,
                        seed=seed,
                    )
                )
    return cases


def hap1_nuts_cases(args: argparse.Namespace) -> list[dict[str, Any]]:
    """HAP1 restricted to the CEGv2 and NEGv1 genes (~5,800 guides): small enough for NUTS.

    Full depth and 1/10 depth (first seed), all three replicates; both tools see only
    these guides (their size factors come from them too).
    """
    table, control, treated = hap1_table()
    ref = hap1_reference()
    table = table[table["gene"].isin(ref["essential"] | ref["nonessential"])]
    cases = []
    for level in (1, 10):
        thinned = table if level == 1 else thin(table, 1.0 / level, args.seeds[0])
        name = "hap1_refgenes" + ("" if level == 1 else f"_1of{level}")
        cases.append(
            make_case(
                name, thinned, control, treated, ref, group="hap1nuts", level=level, nuts=True
            )
        )
    return cases


def rt112_cases(args: argparse.Namespace) -> list[dict[str, Any]]:
    folder = SHARED / "cb2-evers-rt112"
    table = pd.read_csv(folder / "Evers_RT112_counts.tsv", sep="\t")
    table = table.rename(columns={"Gene": "gene"})
    ref = {
        key: set(pd.read_csv(folder / f"Evers_{f}genes.txt", header=None)[0].astype(str))
        for key, f in (("essential", "e"), ("nonessential", "n"))
    }
    return [
        make_case(
            "rt112", table, ["B1", "B2", "B3"], ["A1", "A2", "A3"], ref, group="rt112", nuts=True
        )
    ]


def leukemia_cases(args: argparse.Namespace) -> list[dict[str, Any]]:
    """MAGeCK's leukemia demo: HL60 and KBM7 final against initial, the lines as replicates.

    ``leukemia.new.csv`` (1,000 genes, 9,999 guides; ``sample.txt`` is its first 100
    genes), taken as MAGeCK's own demo takes it (``-t HL60.final,KBM7.final -c
    HL60.initial,KBM7.initial``), scored on the 17 CEGv2 and 19 NEGv1 genes it holds.
    """
    table = pd.read_csv(SHARED / "mageck-leukemia" / "leukemia.new.csv")
    table = table.rename(columns={"Gene": "gene"})
    control, treated = ["HL60.initial", "KBM7.initial"], ["HL60.final", "KBM7.final"]
    return [make_case("leukemia", table, control, treated, hap1_reference(), group="leukemia")]


def drugz_cases(args: argparse.Namespace) -> list[dict[str, Any]]:
    """drugZ's example: olaparib against control arms at T15 (T0 left out), both directions.

    Nine guides of two genes (a format example, MIT): no reference genes, so the case
    is scored by its calls down and up, not by AUC; it checks the drug-vs-control
    contrast in each direction end to end, beside MAGeCK on the same table.
    """
    table = pd.read_csv(SHARED / "drugz-example" / "sgRNA_count.txt", sep="\t")
    table = table.rename(columns={"Gene": "gene"})
    control = [c for c in table.columns if c.endswith("_control")]
    treated = [c for c in table.columns if c.endswith("_olaparib")]
    none: dict[str, set[str]] = {"essential": set(), "nonessential": set()}
    return [make_case("drugz", table, control, treated, none, group="drugz", directions=True)]


JACKS_LINES = ("MOLM", "MV411", "HL60", "OCIAML2", "OCIAML3")


def jacks_cases(args: argparse.Namespace) -> list[dict[str, Any]]:
    folder = SHARED / "jacks-aml-yusa-small"
    table = pd.read_csv(folder / "example_count_data.tab", sep="\t")
    table = table.rename(columns={"Gene": "gene"})
    table.columns = ["sgRNA", "gene", "CTRL_1", "CTRL_2", *table.columns[4:]]
    control = ["CTRL_1", "CTRL_2"]
    ref = hap1_reference()
    every = [f"{line}_rep_{r}" for line in JACKS_LINES for r in (1, 2)]
    cases = [make_case("jacks_joint", table, control, every, ref, group="jacks", joint=True)]
    for line in JACKS_LINES:
        reps = [f"{line}_rep_1", f"{line}_rep_2"]
        cases.append(make_case(f"jacks_{line}", table, control, reps, ref, group="jacks"))
    return cases


CASES = {
    "rt112": rt112_cases,
    "hap1": hap1_cases,
    "jacks": jacks_cases,
    "lowdepth": lowdepth_cases,
    "hap1nuts": hap1_nuts_cases,
    "leukemia": leukemia_cases,
}


def sample_condition(sample: str, case: dict[str, Any]) -> str:
    if sample in case["control"]:
        return "ctrl"
    if case.get("joint"):
        return sample.split("_rep_")[0]
    return "treated"


# ------------------------------------------------------------------------ running
def ensure_mageck() -> Path:
    """The mageck2 executable in its own venv (installed from PyPI when missing)."""
    exe = MAGECK_VENV / "bin" / "mageck2"
    if not exe.exists():
        print(f"installing mageck2 into {MAGECK_VENV} ...", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(MAGECK_VENV)], check=True)
        subprocess.run([str(MAGECK_VENV / "bin" / "pip"), "install", "-q", "mageck2"], check=True)
    if not (MAGECK_VENV / "bin" / "RRA").exists():
        raise SystemExit(f"{MAGECK_VENV}/bin/RRA missing: mageck2's RRA helper did not install")
    return exe


class TreeMemory:
    """Peak memory of a process and all its descendants together, sampled in a thread.

    ``wait4``'s ``ru_maxrss`` is the largest *single* process's peak; a tool whose worker
    processes run beside it (our stage 2 forks one per core) uses more than that. Every
    ``interval`` seconds this sums the proportional set size (PSS: a page shared by n
    processes counts 1/n to each, so forked copy-on-write pages count once) and the RSS
    over the process tree, from ``/proc`` (Linux; elsewhere it records nothing).
    """

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        import threading

        self.pid, self.interval = pid, interval
        self.peak_pss_kb = 0
        self.peak_rss_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _tree(self) -> list[int]:
        """The pid and its descendants (``/proc/<pid>/task/*/children``)."""
        out, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            out.append(pid)
            for task in Path(f"/proc/{pid}/task").glob("*/children"):
                try:
                    todo += [int(c) for c in task.read_text().split()]
                except OSError:
                    pass
        return out

    def _run(self) -> None:
        while not self._stop.is_set():
            pss = rss = 0
            for pid in self._tree():
                try:
                    text = Path(f"/proc/{pid}/smaps_rollup").read_text()
                except OSError:
                    continue
                for line in text.splitlines():
                    if line.startswith("Pss:"):
                        pss += int(line.split()[1])
                    elif line.startswith("Rss:"):
                        rss += int(line.split()[1])
            self.peak_pss_kb = max(self.peak_pss_kb, pss)
            self.peak_rss_kb = max(self.peak_rss_kb, rss)
            self._stop.wait(self.interval)

    def stop(self) -> dict[str, float | None]:
        """Stop sampling; peak summed PSS and RSS in GB (None where nothing was read)."""
        self._stop.set()
        self._thread.join()
        gb = 1024**2
        return {
            "peak_tree_pss_gb": round(self.peak_pss_kb / gb, 2) if self.peak_pss_kb else None,
            "peak_tree_rss_gb": round(self.peak_rss_kb / gb, 2) if self.peak_rss_kb else None,
        }


def measure(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Wall seconds, CPU seconds and peak memory (GB) of one command and its descendants.

    ``peak_gb``: the largest single process's peak RSS (``wait4``); ``peak_tree_pss_gb``:
    the peak of the whole process tree's summed PSS (`TreeMemory`), what the tool and its
    worker processes held together.
    """
    start = time.perf_counter()
    with open(cwd / "stdout.txt", "w") as out, open(cwd / "stderr.txt", "w") as err:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=err)
        tree = TreeMemory(proc.pid)
        _, status, usage = os.wait4(proc.pid, 0)
        tree_peak = tree.stop()
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode:
        tail = (cwd / "stderr.txt").read_text()[-3000:]
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{tail}")
    return {
        "wall_s": round(wall, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "peak_gb": round(usage.ru_maxrss / 1024**2, 2),
        **tree_peak,
    }


def mageck_env(exe: Path) -> dict[str, str]:
    """The environment mageck2 runs in: its venv's bin (with the RRA helper) on PATH."""
    return dict(os.environ, PATH=f"{exe.parent}{os.pathsep}{os.environ.get('PATH', '')}")


def run_mageck(folder: Path, case: dict[str, Any], prefix: str, treated: list[str]) -> dict:
    exe = ensure_mageck()
    cmd = [str(exe), "test", "-k", "counts.tsv", "-t", ",".join(treated)]
    cmd += ["-c", ",".join(case["control"]), "-n", prefix]
    return measure(cmd, folder, mageck_env(exe))


def fit_tag(method: str, dispersion: str = "sgrna") -> str:
    """``auto`` -> ``auto``, ``two-stage`` -> ``two_stage``, + ``_shared`` or ``_trend``
    (the library's default since 2026-12-02; the bare tag is the per-guide ``sgrna``
    dispersion every earlier row fitted): file names, keys."""
    if method not in METHODS or dispersion not in DISPERSIONS:
        raise ValueError(f"unknown method {method!r} or dispersion {dispersion!r}")
    tag = method.replace("-", "_")
    return tag if dispersion == "sgrna" else f"{tag}_{dispersion}"


def run_ours(
    folder: Path, method: str, args: argparse.Namespace, dispersion: str = "sgrna"
) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(folder), method]
    cmd += ["--seed", str(args.fit_seed), "--dispersion", dispersion]
    return measure(cmd, folder)


def child(folder: Path, method: str, seed: int, dispersion: str = "sgrna") -> None:
    """Table on disk -> gene tables on disk (run in its own process to be timed).

    Writes ``<tag>_genes.tsv`` and ``<tag>_genes_d0.tsv`` (`fit_tag`) and prints one JSON
    line: the method that ran (``method_used``; what ``auto`` picked), NUTS's R-hat max,
    the two-stage engine's stage-1 R-hat max.
    """
    tag = fit_tag(method, dispersion)
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.getLogger("pymc").setLevel(logging.ERROR)
    import screenformula as sf

    data = sf.read_counts(folder / "counts.tsv", folder / "samples.tsv")
    model = sf.ScreenModel(
        FORMULA, data, pool=None, reference={"treatment": "ctrl"}, dispersion=dispersion
    )
    kwargs: dict[str, Any] = {"random_seed": seed, "progress": False, "store_sgrna": False}
    if method == "nuts":
        kwargs.update(NUTS)
    fit = model.fit(method, log_likelihood=False, **kwargs)
    for delta, name in ((DELTA, "genes.tsv"), (0.0, "genes_d0.tsv")):
        genes = fit.contrast("treatment", ref="ctrl", delta=delta, fdr_target=FDR).genes
        genes.to_csv(folder / f"{tag}_{name}", sep="\t", index=False)
    detail = fit_detail(fit)
    diag = fit.diagnostics() if detail["method_used"] == "nuts" else None
    print(json.dumps({**detail, "rhat_max": None if diag is None else _rhat_max(diag)}))


def fit_detail(fit: Any) -> dict[str, Any]:
    """What ran (``method_used``: ``auto``'s choice) and a two-stage fit's stage-1 R-hat max."""
    used = str(fit.method)  # "nuts", "two-stage", "advi"
    stage1 = (fit.options.get("stage1") or {}) if used == "two-stage" else {}
    rhat = stage1.get("rhat_max")
    return {"method_used": used, "stage1_rhat_max": None if rhat is None else round(float(rhat), 3)}


def _rhat_max(diag: Any) -> float | None:
    try:
        return round(float(diag["r_hat"].max()), 3)
    except Exception:  # noqa: BLE001 - the summary's layout is not essential here
        return None


# ------------------------------------------------------------------------ scoring
def auc(positive: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC of ``score`` for ``positive`` (Mann-Whitney; ties averaged)."""
    from scipy.stats import rankdata

    y = np.asarray(positive, dtype=bool)
    ranks = rankdata(score)
    n1, n0 = int(y.sum()), int((~y).sum())
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def average_precision(positive: np.ndarray, score: np.ndarray) -> float:
    """Average precision (area under the precision-recall steps), highest score first."""
    order = np.argsort(-np.asarray(score, dtype=float), kind="stable")
    y = np.asarray(positive, dtype=bool)[order]
    precision = np.cumsum(y) / np.arange(1, y.size + 1)
    return float(precision[y].sum() / max(y.sum(), 1))


def score_table(
    genes: pd.Series,
    depletion: np.ndarray,
    own: np.ndarray,
    called: np.ndarray,
    ref: dict[str, set[str]],
) -> dict[str, Any]:
    """The shared scoring of one tool's gene table (higher scores = more depleted)."""
    genes = genes.astype(str).to_numpy()
    ess = np.isin(genes, list(ref["essential"]))
    non = np.isin(genes, list(ref["nonessential"]))
    keep = ess | non
    return {
        "n_essential": int(ess.sum()),
        "n_nonessential": int(non.sum()),
        "auc": round(auc(ess[keep], depletion[keep]), 4),
        "ap": round(average_precision(ess[keep], depletion[keep]), 4),
        "auc_own": round(auc(ess[keep], own[keep]), 4),
        "hits": int(called.sum()),
        "hits_essential": int((called & ess).sum()),
        "hits_nonessential": int((called & non).sum()),
    }


def score_ours(path: Path, contrast: str | None, ref: dict[str, set[str]]) -> dict[str, Any]:
    genes = pd.read_csv(path, sep="\t")
    if contrast is not None:
        genes = genes[genes["contrast"].astype(str).str.startswith(contrast)]
    genes = genes[~genes["is_control"].astype(bool)] if "is_control" in genes else genes
    lfc = genes["lfc"].to_numpy(dtype=float)
    called = (genes["qvalue_down"].to_numpy(dtype=float) <= FDR) & (lfc < 0)
    z = -lfc / np.maximum(genes["lfc_sd"].to_numpy(dtype=float), 1e-12)
    out = score_table(genes["gene"], -lfc, z, called, ref)
    # the local rule: each call's own posterior error (not depleted beyond delta) <= FDR,
    # beside the list's Bayesian FDR (the q-value) <= FDR above
    local = (genes["error_down"].to_numpy(dtype=float) <= FDR) & (lfc < 0)
    scored = score_table(genes["gene"], -lfc, z, local, ref)
    out.update({f"local_{k}": scored[k] for k in ("hits", "hits_essential", "hits_nonessential")})
    return out


def score_mageck(path: Path, ref: dict[str, set[str]]) -> dict[str, Any]:
    table = pd.read_csv(path, sep="\t")
    called = table["neg|fdr"].to_numpy(dtype=float) < FDR
    depletion = -table["neg|lfc"].to_numpy(dtype=float)
    own = -table["neg|score"].to_numpy(dtype=float)
    return score_table(table["id"], depletion, own, called, ref)


def run_case(case: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Write, run both tools, score; returns the case's record."""
    record: dict[str, Any] = {
        k: case[k] for k in ("name", "group", "control", "treated") if k in case
    }
    record.update({k: case[k] for k in ("level", "replicates", "seed", "joint") if k in case})
    table = case["table"]
    record.update(n_sgrnas=len(table), n_genes=int(table["gene"].nunique()))
    record["reads"] = {c: int(table[c].sum()) for c in table.columns[2:]}
    with tempfile.TemporaryDirectory(prefix=f"bench_real_{case['name']}_") as tmp:
        folder = Path(tmp)
        table.to_csv(folder / "counts.tsv", sep="\t", index=False)
        samples = [c for c in table.columns[2:]]
        condition = [sample_condition(s, case) for s in samples]
        sheet = pd.DataFrame(
            {"sample": samples, "condition": condition, "treatment": condition, "pool": False}
        )
        sheet.to_csv(folder / "samples.tsv", sep="\t", index=False)
        ref = case["reference"]
        methods = [(args.method, args.dispersion_main)]
        if case.get("nuts") and not args.quick and args.method != "nuts":
            methods.append(("nuts", "sgrna"))  # NUTS (2 x 500 draws) next to the main fit
        methods += [(args.method, "shared")] if case.get("group") == "jacks" else []
        for method, dispersion in methods:
            tag = fit_tag(method, dispersion)
            timing = run_ours(folder, method, args, dispersion)
            detail = json.loads((folder / "stdout.txt").read_text().strip().splitlines()[-1])
            entry = {**timing, **{k: v for k, v in detail.items() if v is not None}}
            if case.get("joint"):
                entry["per_line"] = {
                    line: score_ours(folder / f"{tag}_genes.tsv", line, ref) for line in JACKS_LINES
                }
            else:
                entry["delta_0.5"] = score_ours(folder / f"{tag}_genes.tsv", None, ref)
                no_delta = score_ours(folder / f"{tag}_genes_d0.tsv", None, ref)
                entry["delta_0"] = {k: v for k, v in no_delta.items() if k.startswith("hits")}
            key = f"ours_{tag}"
            record[key] = entry
            _progress(case["name"], key, entry)
        if not case.get("joint"):
            timing = run_mageck(folder, case, "mageck", case["treated"])
            record["mageck"] = {**timing, **score_mageck(folder / "mageck.gene_summary.txt", ref)}
            _progress(case["name"], "mageck2", record["mageck"])
    return record


def _progress(name: str, tool: str, entry: dict[str, Any]) -> None:
    scores = entry.get("delta_0.5", entry)
    short = {k: scores.get(k) for k in ("auc", "hits_essential", "hits_nonessential")}
    print(
        f"[{datetime.now():%H:%M:%S}] {name} {tool}: {entry.get('wall_s')} s, "
        f"{entry.get('peak_gb')} GB, {short}",
        file=sys.stderr,
        flush=True,
    )


def environment() -> dict[str, Any]:
    from importlib.metadata import version

    from _machine import cpu_name, git_revision

    cpu = cpu_name()
    versions = {p: version(p) for p in ("screenformula", "pymc", "nutpie", "numpy")}
    ensure_mageck()  # a fresh machine has no MAGeCK venv yet
    mageck = subprocess.run(
        [str(MAGECK_VENV / "bin" / "pip"), "show", "mageck2"], capture_output=True, text=True
    ).stdout
    versions["mageck2"] = next(
        (ln.split(":", 1)[1].strip() for ln in mageck.splitlines() if ln.startswith("Version")),
        "?",
    )
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": os.cpu_count(),
        "cpu": cpu,
        "load_start": round(os.getloadavg()[0], 1),
        "git": git_revision(),
        "versions": versions,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument(
        "--dispersion-main",
        choices=("trend", "sgrna"),
        default="trend",
        help="the main fit's dispersion (default: the library's, 'trend'; 'sgrna': the "
        "per-guide dispersion of the rows stored before it)",
    )
    parser.add_argument("--quick", action="store_true", help="one seed, levels 1 and 10")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 4, 10, 25])
    parser.add_argument("--replicates", type=int, nargs="+", default=[3, 1])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--fit-seed", type=int, default=1)
    parser.add_argument(
        "--method",
        choices=METHODS,
        default="auto",
        help="screenformula's main fit (stored as ours_<method>, '-' as '_'; default: auto)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "real.json")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument(
        "--dispersion", choices=DISPERSIONS, default="sgrna", help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        child(Path(args.child[0]), args.child[1], args.seed, args.dispersion)
        return
    if args.quick:
        args.levels, args.seeds = [1, 10], args.seeds[:1]
    from report_real import write_report  # benchmarks/report_real.py

    stored = json.loads(args.out.read_text()) if args.out.exists() else {"cases": {}}
    if not args.report_only:
        if not SHARED.is_dir():
            raise SystemExit(f"shared data folder not found: {SHARED} (set SCREENFORMULA_DATA)")
        ensure_mageck()
        env = environment()
        for group in args.only:
            for case in CASES[group](args):
                stored["cases"][case["name"]] = {**run_case(case, args), "env": env}
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps(stored, indent=1))  # after every case
    write_report(stored, args.out.with_suffix(".md"))
    if args.out == RESULTS / "real.json":
        import update_readme

        update_readme.main([])
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}", file=sys.stderr)


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main()
