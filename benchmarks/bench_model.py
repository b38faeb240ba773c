"""Speed and sampling efficiency of `ScreenModel`, and of the closest plain Bambi model.

On simulated screens (``simulate_screen``: one pool + 3 control + 3 treated samples,
4 guides per gene) of each size in ``--sizes`` this records, for the formula
``count ~ 1 + treatment + (1 + treatment | gene) + (1 + treatment | gene:sgrna)``
(``pool="joint"``, ``dispersion="sgrna"``):

- build time (``ScreenModel`` construction, PyMC model build) and peak resident memory;
- the time of one log-density + gradient evaluation: PyMC's C-compiled ``dlogp`` and the
  numba function that nutpie samples with;
- NUTS (nutpie): compile time, sampling wall time, leapfrog steps, minimum bulk ESS and
  ESS per second over the hyperparameters and gene effects, R-hat, divergences;
- the same for plain Bambi on the long table (pool samples dropped) where it can build;
- a comparison of centring choices (``parameterization``) at ``--param-sizes``;
- with ``--grad-only``, the numba log-density + gradient of our model built with each
  negative-binomial implementation in ``--nb-kernels`` (``backend.likelihood.NB_KERNELS``:
  the fused Ops and the PyTensor expression), timed in the same process, calls
  interleaved, and their ratio.

Every (model, size) runs in its own subprocess, so peak memory (``ru_maxrss`` of that
child) is separate per run, and a child that grows past ``--mem-limit-gb`` is stopped.
Results are merged into ``benchmarks/results/bench_model.json`` (a record replaces an
earlier one with the same model, size, parameterisation and draws/tune/chains) and the
markdown tables in ``benchmarks/results/bench_model.md`` are rewritten from all records.

Examples
--------
    nice -n 10 python benchmarks/bench_model.py --sizes 500 2000 --draws 500 --tune 500 \
        --chains 2
    nohup nice -n 10 python benchmarks/bench_model.py --sizes 20000 --draws 1000 \
        --tune 1000 --chains 4 --no-bambi --no-param > benchmarks/results/bench_20k.log 2>&1 &
    nice -n 10 python benchmarks/bench_model.py --grad-only --sizes 2000 20000 --no-bambi \
        --no-param                                      # per-evaluation cost, both NB kernels
    python benchmarks/bench_model.py --report-only      # rewrite the markdown from the JSON
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

FORMULA = "count ~ 1 + treatment + (1 + treatment | gene) + (1 + treatment | gene:sgrna)"
#: Bambi's formula; ``{guide}`` is the guide grouping factor. The simulated guide IDs are
#: unique across genes, so ``sgrna`` is the same grouping as ``gene:sgrna``; Bambi/formulae
#: turn ``gene:sgrna`` into the Cartesian product of the two factors' levels
#: (n_genes x n_sgrnas levels, most never observed), so ``sgrna`` is the usable form.
BAMBI_FORMULA = (
    "count ~ 1 + treatment + (1 + treatment | gene) + (1 + treatment | {guide}) + offset(log_sf)"
)
#: Centring choices compared (label -> ``parameterization`` argument).
PARAMETERIZATIONS: dict[str, Any] = {
    "auto": "auto",
    "gene_nc": {"gene": False, "sgrna": "auto"},
    "all_nc": False,
}
PARAM_TEXT = {
    "auto": '"auto" (guide intercept + gene slope centred)',
    "gene_nc": '{"gene": False, "sgrna": "auto"} (gene slope non-centred)',
    "all_nc": "False (all non-centred)",
}
#: ESS/R-hat variables: hyperparameters and gene effects of our model ...
OURS_VARS = ["Intercept", "b", "sd_gene", "sd_sgrna", "cor_gene", "cor_sgrna", "r_gene", "phi_rate"]
#: ... the subset that Bambi's model also has (population effects and group sds) ...
OURS_COMPARABLE = ["Intercept", "b", "sd_gene", "sd_sgrna"]


def bambi_vars(guide: str) -> tuple[list[str], list[str]]:
    """Bambi's names of the comparable variables, and of those plus gene effects and alpha."""
    comparable = ["Intercept", "treatment", "1|gene_sigma", "treatment|gene_sigma"]
    comparable += [f"1|{guide}_sigma", f"treatment|{guide}_sigma"]
    return comparable, [*comparable, "1|gene", "treatment|gene", "alpha"]


HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
N_EVAL = 20  # gradient evaluations timed (after 3 warm-up calls)
PROGRESS_EVERY_S = 60.0


# --------------------------------------------------------------------------- in the child
def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # all threads of this process
    return usage.ru_utime + usage.ru_stime


def _time_calls(fn: Any, n: int = N_EVAL, warmup: int = 3) -> dict[str, float]:
    """Wall and CPU time (this thread) of ``fn()`` in milliseconds: median and mean.

    On a busy machine the wall time includes waiting for a core; the CPU time does not.
    """
    import numpy as np

    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(n):
        start, start_cpu = time.perf_counter(), time.thread_time()
        fn()
        cpu.append(time.thread_time() - start_cpu)
        wall.append(time.perf_counter() - start)
    w, c = np.asarray(wall) * 1e3, np.asarray(cpu) * 1e3
    return {
        "median_ms": float(np.median(w)),
        "mean_ms": float(w.mean()),
        "cpu_median_ms": float(np.median(c)),
        "cpu_mean_ms": float(c.mean()),
        "n": n,
    }


class NutpieProbe:
    """Times ``nutpie.compile_pymc_model`` and ``nutpie.sample`` wherever they are called.

    Our code and ``pm.sample(nuts_sampler="nutpie")`` (Bambi) both look the functions up on
    the ``nutpie`` module at call time, so patching the module attributes in this
    benchmark process separates compile time from sampling time, keeps the compiled model
    (to time its numba log-density + gradient) and logs sampling progress.
    """

    def __init__(self, label: str) -> None:
        import nutpie

        self.label = label
        self.compile_s = 0.0
        self.sample_s = 0.0
        self.sample_cpu_s = 0.0
        self.compiled: Any = None
        self.total_steps = 0
        self.progress: list[dict[str, Any]] = []
        self._compile, self._sample = nutpie.compile_pymc_model, nutpie.sample
        nutpie.compile_pymc_model = self.compile_pymc_model
        nutpie.sample = self.sample

    def compile_pymc_model(self, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        self.compiled = self._compile(*args, **kwargs)
        self.compile_s += time.perf_counter() - start
        return self.compiled

    def sample(self, *args: Any, **kwargs: Any) -> Any:
        inner = kwargs.pop("progress_callback", None)
        start = time.perf_counter()
        last = [start]

        def callback(chains: Any) -> None:
            if inner is not None:
                inner(chains)
            self.total_steps = int(sum(c.total_num_steps for c in chains))
            now = time.perf_counter()
            if now - last[0] >= PROGRESS_EVERY_S:
                last[0] = now
                done = sum(c.finished_draws for c in chains)
                total = sum(c.total_draws for c in chains)
                tuning = sum(bool(c.tuning) for c in chains)
                self.progress.append(
                    {"t": round(now - start, 1), "draws": done, "steps": self.total_steps}
                )
                print(
                    f"[{self.label}] {now - start:7.0f} s: {done}/{total} iterations "
                    f"({tuning} chains tuning), {self.total_steps:,} leapfrog steps",
                    file=sys.stderr,
                    flush=True,
                )

        kwargs["progress_callback"] = callback
        kwargs.setdefault("progress_rate", 1000)
        cpu = _cpu_s()
        try:
            return self._sample(*args, **kwargs)
        finally:
            self.sample_s += time.perf_counter() - start
            self.sample_cpu_s += _cpu_s() - cpu


def _simulate(n_genes: int, seed: int) -> Any:
    import screenformula as sf

    data, _ = sf.simulate_screen(
        n_genes=n_genes,
        n_sgrnas_per_gene=4,
        treatments=("treated",),
        n_replicates=3,
        n_pool_samples=1,
        random_seed=seed,
    )
    return data


def _nuts_summary(table: Any, names: list[str], seconds: float) -> dict[str, Any]:
    """Min bulk ESS, the variable it belongs to, ESS/s and max R-hat over ``names``."""
    sub = table.loc[[n for n in names if n in table.index]]
    if sub.empty:
        return {"ess_bulk_min": None, "ess_per_s": None, "rhat_max": None, "worst": None}
    ess = float(sub["ess_bulk_min"].min())
    return {
        "ess_bulk_min": ess,
        "worst": str(sub["ess_bulk_min"].idxmin()),
        "ess_per_s": ess / seconds if seconds > 0 else None,
        "rhat_max": float(sub["rhat_max"].max()),
        "missing": [n for n in names if n not in table.index],
    }


def _mean_steps(idata: Any) -> float | None:
    stats = idata["sample_stats"] if "sample_stats" in idata.children else None
    if stats is None or "n_steps" not in stats:
        return None
    return float(stats["n_steps"].mean())


def run_ours(job: dict[str, Any]) -> dict[str, Any]:
    """Build, time and (unless ``draws == 0``) fit our model; return the record."""
    import screenformula as sf

    rec: dict[str, Any] = {}
    start = time.perf_counter()
    data = _simulate(job["n_genes"], job["sim_seed"])
    rec["simulate_s"] = time.perf_counter() - start
    rec.update(n_sgrnas=data.n_sgrnas, n_samples=data.n_samples, n_obs=int(data.counts.size))

    start = time.perf_counter()
    model = sf.ScreenModel(FORMULA, data, parameterization=PARAMETERIZATIONS[job["param"]])
    rec["spec_s"] = time.perf_counter() - start
    start = time.perf_counter()
    pmm = model.pymc_model
    rec["pymc_build_s"] = time.perf_counter() - start
    _after_build(rec, pmm, job["label"])

    def fit() -> tuple[Any, Any]:
        result = model.fit(
            draws=job["draws"],
            tune=job["tune"],
            chains=job["chains"],
            cores=job["cores"],
            random_seed=job["seed"],
            progress=False,
            log_likelihood=False,
        )
        return result.idata, result.diagnostics(var_names=OURS_VARS, warn=False)

    probe = _nuts(rec, job, pmm, fit, OURS_COMPARABLE, OURS_VARS)
    if job["draws"] == 0 and len(job.get("nb_kernels") or []) > 1:
        rec.update(_compare_nb_kernels(job, data, probe.compiled))
    return rec


def _compare_nb_kernels(job: dict[str, Any], data: Any, compiled_default: Any) -> dict[str, Any]:
    """Numba logp+gradient of the model built with each NB kernel, in this process.

    Calls of the kernels alternate (after 3 warm-up calls each), so load from other jobs
    falls on both alike.
    """
    import numpy as np

    import screenformula as sf
    from screenformula.backend import likelihood

    out: dict[str, Any] = {"nb_kernel_default": likelihood.nb_kernel()}
    out["peak_before_nb_kernels_mb"] = _maxrss_mb()
    fns = {}
    for kernel in job["nb_kernels"]:
        if kernel == out["nb_kernel_default"]:
            compiled = compiled_default
        else:
            import nutpie

            os.environ["SCREENFORMULA_NB_KERNEL"] = kernel
            try:
                pmm = sf.ScreenModel(FORMULA, data).pymc_model
                compiled = nutpie.compile_pymc_model(pmm)
            finally:
                del os.environ["SCREENFORMULA_NB_KERNEL"]
        x = np.asarray(compiled.initial_point_func(0), dtype=np.float64)
        fns[kernel] = (compiled.logp_func, x)
    values = {k: fn(x) for k, (fn, x) in fns.items()}
    first = next(iter(values.values()))
    out["nb_kernels_max_rel_diff"] = max(
        float(np.max(np.abs(np.asarray(v[1]) - np.asarray(first[1]))))
        / float(np.max(np.abs(first[1])))
        for v in values.values()
    )
    for fn, x in fns.values():
        for _ in range(3):
            fn(x)
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    load_start = os.getloadavg()
    for _ in range(N_EVAL):
        for kernel, (fn, x) in fns.items():
            start, start_cpu = time.perf_counter(), time.thread_time()
            fn(x)
            cpu[kernel].append((time.thread_time() - start_cpu) * 1e3)
            wall[kernel].append((time.perf_counter() - start) * 1e3)
    out["nb_kernels"] = {
        k: {
            "median_ms": float(np.median(wall[k])),
            "cpu_median_ms": float(np.median(cpu[k])),
            "cpu_min_ms": float(np.min(cpu[k])),
            "n": N_EVAL,
        }
        for k in fns
    }
    out["nb_kernels_load"] = [load_start[0], os.getloadavg()[0]]
    text = ", ".join(f"{k} {v['cpu_median_ms']:.2f} ms" for k, v in out["nb_kernels"].items())
    print(f"[{job['label']}] numba logp+dlogp by NB kernel: {text}", file=sys.stderr, flush=True)
    return out


def run_bambi(job: dict[str, Any]) -> dict[str, Any]:
    """Build, time and (unless ``draws == 0``) fit the Bambi model; return the record."""
    import bambi as bmb
    import numpy as np

    from screenformula.results.diagnostics import convergence_table

    rec: dict[str, Any] = {"bambi_version": bmb.__version__}
    data = _simulate(job["n_genes"], job["sim_seed"])
    start = time.perf_counter()
    long = data.to_long(samples=list(data.screen_samples))
    long["log_sf"] = np.log(long["size_factor"])
    rec["long_table_s"] = time.perf_counter() - start
    rec.update(n_sgrnas=data.n_sgrnas, n_samples=len(data.screen_samples), n_obs=len(long))

    guide = job["param"]
    rec["formula"] = BAMBI_FORMULA.format(guide=guide)
    start = time.perf_counter()
    model = bmb.Model(rec["formula"], long, family="negativebinomial")
    rec["spec_s"] = time.perf_counter() - start
    print(f"[{job['label']}] bmb.Model in {rec['spec_s']:.1f} s", file=sys.stderr, flush=True)
    start = time.perf_counter()
    model.build()
    rec["pymc_build_s"] = time.perf_counter() - start
    pmm = model.backend.model
    _after_build(rec, pmm, job["label"])
    comparable, all_vars = bambi_vars(guide)

    def fit() -> tuple[Any, Any]:
        idata = model.fit(
            draws=job["draws"],
            tune=job["tune"],
            chains=job["chains"],
            cores=job["cores"],
            random_seed=job["seed"],
            inference_method="nutpie",
            progressbar=False,
        )
        table = convergence_table(idata, [v for v in all_vars if v in idata["posterior"]])
        return idata, table

    _nuts(rec, job, pmm, fit, comparable, all_vars)
    return rec


def _after_build(rec: dict[str, Any], pmm: Any, label: str) -> None:
    rec["build_s"] = rec["spec_s"] + rec["pymc_build_s"]
    rec["maxrss_after_build_mb"] = _maxrss_mb()
    rec["n_free"] = int(sum(pmm.initial_point()[v.name].size for v in pmm.value_vars))
    print(f"[{label}] built in {rec['build_s']:.1f} s", file=sys.stderr, flush=True)
    rec.update(_time_pymc_gradient(pmm, label))


def _nuts(
    rec: dict[str, Any],
    job: dict[str, Any],
    pmm: Any,
    fit: Any,
    comparable: list[str],
    all_vars: list[str],
) -> NutpieProbe:
    """Run ``fit`` under a `NutpieProbe` (or only compile when ``draws == 0``)."""
    import nutpie

    probe = NutpieProbe(job["label"])
    if job["draws"] == 0:  # gradient timings only
        nutpie.compile_pymc_model(pmm)
        rec["nutpie_compile_s"] = probe.compile_s
        rec.update(_time_nutpie_gradient(probe.compiled, job["label"]))
        return probe
    start = time.perf_counter()
    idata, table = fit()
    rec["fit_total_s"] = time.perf_counter() - start
    rec["nutpie_compile_s"] = probe.compile_s
    rec["sample_s"] = probe.sample_s
    rec["sample_cpu_s"] = probe.sample_cpu_s
    rec["total_steps"] = probe.total_steps
    rec["progress"] = probe.progress
    rec["mean_steps_per_draw"] = _mean_steps(idata)
    rec["maxrss_after_fit_mb"] = _maxrss_mb()
    rec["divergences"] = int(table.attrs["divergences"])
    rec["all"] = _nuts_summary(table, all_vars, rec["sample_s"])
    rec["comparable"] = _nuts_summary(table, comparable, rec["sample_s"])
    rec["per_variable"] = {
        k: {"ess_bulk_min": float(v["ess_bulk_min"]), "rhat_max": float(v["rhat_max"])}
        for k, v in table.iterrows()
    }
    rec.update(_time_nutpie_gradient(probe.compiled, job["label"]))
    return probe


def _time_pymc_gradient(pmm: Any, label: str) -> dict[str, Any]:
    """PyMC's C-compiled logp and dlogp at the initial point."""
    out: dict[str, Any] = {}
    point = pmm.initial_point()
    start = time.perf_counter()
    logp = pmm.compile_logp()
    dlogp = pmm.compile_dlogp()
    out["c_compile_s"] = time.perf_counter() - start
    out["c_logp"] = _time_calls(lambda: logp(point))
    out["c_dlogp"] = _time_calls(lambda: dlogp(point))
    print(
        f"[{label}] C logp {out['c_logp']['cpu_median_ms']:.2f} ms, "
        f"dlogp {out['c_dlogp']['cpu_median_ms']:.2f} ms (CPU time)",
        file=sys.stderr,
        flush=True,
    )
    return out


def _time_nutpie_gradient(compiled: Any, label: str) -> dict[str, Any]:
    """The numba log-density + gradient that nutpie calls (one joint evaluation)."""
    import numpy as np

    if compiled is None:
        return {}
    x = np.asarray(compiled.initial_point_func(0), dtype=np.float64)
    fn = compiled.logp_func
    out = {"numba_logp_dlogp": _time_calls(lambda: fn(x)), "n_dim": int(compiled.n_dim)}
    print(
        f"[{label}] numba logp+dlogp {out['numba_logp_dlogp']['cpu_median_ms']:.2f} ms (CPU time)",
        file=sys.stderr,
        flush=True,
    )
    return out


def child_main(job_path: str, out_path: str) -> None:
    import warnings

    warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS")
    job = json.loads(Path(job_path).read_text())
    runner = run_bambi if job["model"] == "bambi" else run_ours
    rec = runner(job)
    rec["cpu_s"] = _cpu_s()
    Path(out_path).write_text(json.dumps(rec, default=float))


# -------------------------------------------------------------------------- in the parent
def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def run_job(job: dict[str, Any], mem_limit_gb: float, timeout_s: float | None) -> dict[str, Any]:
    """Run one job in a child process; return its record with peak memory and status."""
    with tempfile.TemporaryDirectory(prefix="bench_model_") as tmp:
        job_path, out_path = Path(tmp) / "job.json", Path(tmp) / "out.json"
        job_path.write_text(json.dumps(job))
        cmd = [sys.executable, str(Path(__file__).resolve()), "--job", str(job_path), str(out_path)]
        print(f"== {job['label']}: {' '.join(cmd[2:3])} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        proc = subprocess.Popen(cmd)
        status, peak_seen = "ok", 0.0
        while True:
            pid, wait_status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            peak_seen = max(peak_seen, _rss_mb(proc.pid))
            elapsed = time.perf_counter() - start
            if peak_seen > mem_limit_gb * 1024:
                status = f"stopped: resident memory > {mem_limit_gb:g} GB"
            elif timeout_s and elapsed > timeout_s:
                status = f"stopped: ran longer than {timeout_s:g} s"
            if status != "ok":
                os.kill(proc.pid, signal.SIGKILL)
                pid, wait_status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.5)
        proc.returncode = os.waitstatus_to_exitcode(wait_status)
        rec: dict[str, Any] = dict(job)
        rec["job_wall_s"] = time.perf_counter() - start
        rec["peak_rss_mb"] = max(usage.ru_maxrss / 1024.0, peak_seen)
        if status == "ok" and proc.returncode != 0:
            status = f"failed: exit code {proc.returncode}"
        if status == "ok" and out_path.exists():
            rec.update(json.loads(out_path.read_text()))
        rec["status"] = status
        return rec


def environment() -> dict[str, Any]:
    from importlib.metadata import version

    from _machine import cpu_name

    cpu = cpu_name()
    pkgs = ["screenformula", "pymc", "pytensor", "nutpie", "numba", "bambi", "formulae"]
    try:
        git = subprocess.run(
            ["git", "-C", str(HERE), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        git = ""
    return {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "git": git,
        "host_cores": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "versions": {p: version(p) for p in pkgs},
        "loadavg_start": os.getloadavg(),
    }


def _key(rec: dict[str, Any]) -> tuple:
    return (rec["model"], rec["n_genes"], rec["param"], rec["draws"], rec["tune"], rec["chains"])


def load_results(path: Path) -> list[dict[str, Any]]:
    if path.exists():
        return json.loads(path.read_text())["records"]
    return []


def save_results(path: Path, new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Merge ``new`` into the records at ``path`` (same key: replaced) and write them."""
    records = {_key(r): r for r in load_results(path)}
    records.update({_key(r): r for r in new})
    merged = sorted(records.values(), key=lambda r: (r["n_genes"], r["model"], r["param"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"formula": FORMULA, "records": merged}, indent=1, default=float))
    tmp.replace(path)
    return merged


# ------------------------------------------------------------------------------ report
def _f(value: Any, fmt: str = "{:.1f}") -> str:
    return "–" if value is None else fmt.format(value)


def _md(name: Any) -> str:
    """A variable name for a markdown table cell (Bambi's names contain ``|``)."""
    return str(name).replace("|", "\\|")


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def _derived(rec: dict[str, Any]) -> dict[str, Any]:
    """Figures computed from a record: ESS per CPU-second, CPU time per leapfrog step."""
    cpu, steps = rec.get("sample_cpu_s"), rec.get("total_steps")
    return {
        "ess_cpu_all": _ratio(rec["all"]["ess_bulk_min"], cpu),
        "ess_cpu_comparable": _ratio(rec["comparable"]["ess_bulk_min"], cpu),
        "cpu_ms_per_step": _ratio(1e3 * cpu, steps) if cpu else None,
        "ess_ksteps_all": _ratio(rec["all"]["ess_bulk_min"], (steps or 0) / 1e3),
        "ess_ksteps_comparable": _ratio(rec["comparable"]["ess_bulk_min"], (steps or 0) / 1e3),
    }


def _model_name(rec: dict[str, Any]) -> str:
    if rec["model"] == "bambi":
        return f"Bambi, `(1 + treatment \\| {rec['param']})`"
    return "screenformula"


def _row(rec: dict[str, Any]) -> str:
    run = f"{rec['chains']}×({rec['tune']}+{rec['draws']})"
    load = rec.get("env", {})
    load = (
        f"{load['loadavg_start'][0]:.1f}→{load['loadavg_end'][0]:.1f}"
        if "loadavg_end" in load
        else "–"
    )
    head = f"| {_model_name(rec)} | {rec['n_genes']:,} | {run} "
    if rec["status"] != "ok":
        return (
            head + f"| {rec['status']} (peak {rec['peak_rss_mb'] / 1024:.1f} GB after "
            f"{rec['job_wall_s']:.0f} s) " + "| " * 17 + "|"
        )
    steps = rec.get("total_steps") or 0
    all_, comp, d = rec["all"], rec["comparable"], _derived(rec)
    return head + (
        f"| {rec['build_s']:.1f} | {rec['peak_rss_mb'] / 1024:.2f} "
        f"| {rec['nutpie_compile_s']:.0f} | {rec['sample_s']:.0f} "
        f"| {_f(rec.get('sample_cpu_s'), '{:.0f}')} | {steps / 1e3:,.0f}k "
        f"| {_f(d['cpu_ms_per_step'], '{:.2f}')} "
        f"| {_f(all_['ess_bulk_min'], '{:.0f}')} ({_md(all_['worst'])}) "
        f"| {_f(all_['ess_per_s'], '{:.2f}')} | {_f(d['ess_cpu_all'], '{:.2f}')} "
        f"| {_f(d['ess_ksteps_all'], '{:.2f}')} "
        f"| {_f(comp['ess_bulk_min'], '{:.0f}')} ({_md(comp['worst'])}) "
        f"| {_f(comp['ess_per_s'], '{:.2f}')} | {_f(d['ess_cpu_comparable'], '{:.2f}')} "
        f"| {_f(d['ess_ksteps_comparable'], '{:.2f}')} "
        f"| {_f(all_['rhat_max'], '{:.3f}')} | {rec['divergences']} | {load} |"
    )


MAIN_HEAD = [
    "model",
    "genes",
    "chains×(tune+draws)",
    "build s",
    "peak GB",
    "nutpie compile s",
    "sampling wall s",
    "sampling CPU s",
    "leapfrog steps",
    "CPU ms / step",
    "min ESS, all (worst)",
    "ESS/s, all",
    "ESS/CPU-s, all",
    "ESS per 1k steps, all",
    "min ESS, comparable (worst)",
    "ESS/s, comparable",
    "ESS/CPU-s, comparable",
    "ESS per 1k steps, comparable",
    "R-hat max",
    "div",
    "load 1-min (start→end)",
]


def gradient_table(records: list[dict[str, Any]]) -> list[str]:
    """Per-evaluation cost: one row per (model, size), from the latest record that has it."""
    best: dict[tuple, dict[str, Any]] = {}
    for r in records:
        if r["status"] != "ok" or "numba_logp_dlogp" not in r:
            continue
        if r["model"] == "ours" and r["param"] != "auto":
            continue
        key = (r["n_genes"], r["model"], r["param"])
        # prefer records with CPU timings, then the most recent one
        rank = ("cpu_median_ms" in r["numba_logp_dlogp"], r.get("env", {}).get("date", ""))
        old = best.get(key)
        if old is None or rank >= (
            "cpu_median_ms" in old["numba_logp_dlogp"],
            old.get("env", {}).get("date", ""),
        ):
            best[key] = r
    if not best:
        return []
    lines = [
        "",
        "## Per-evaluation cost (log density + gradient)",
        "",
        "| model | genes | guides | observations | parameters | build s "
        "| peak GB (build + compile + timings) | `compile_logp` ms | `compile_dlogp` ms "
        "| numba logp+grad ms | numba ns / observation | nutpie compile s |",
        "|---" * 12 + "|",
    ]

    def ms(t: dict[str, Any]) -> str:
        if "cpu_median_ms" in t:
            return f"{t['cpu_median_ms']:.2f} (wall {t['median_ms']:.2f})"
        return f"wall {t['median_ms']:.2f}"

    for key in sorted(best):
        r = best[key]
        numba = r["numba_logp_dlogp"]
        per_obs = numba.get("cpu_median_ms", numba["median_ms"]) * 1e6 / r["n_obs"]
        peak = r["peak_rss_mb"] if r["draws"] == 0 else r.get("maxrss_after_build_mb", 0)
        peak = r.get("peak_before_nb_kernels_mb", peak)
        name = _model_name(r)
        if r["model"] == "ours":  # records from before the fused kernel used the expression
            name += f", NB `{r.get('nb_kernel_default', 'expression')}`"
        lines.append(
            f"| {name} | {r['n_genes']:,} | {r['n_sgrnas']:,} | {r['n_obs']:,} "
            f"| {r['n_free']:,} | {r['build_s']:.1f} | {peak / 1024:.2f} "
            f"| {ms(r['c_logp'])} | {ms(r['c_dlogp'])} | {ms(numba)} | {per_obs:.0f} "
            f"| {r['nutpie_compile_s']:.0f} |"
        )
    lines += [
        "",
        f"Median of {N_EVAL} calls at the initial point after 3 warm-up calls; CPU time of "
        "the calling thread (wall time in brackets: it includes waiting for a core when "
        "the machine is busy). *`compile_logp`* / *`compile_dlogp`*: PyMC's separate logp "
        "and gradient functions in PyTensor's default mode (numba in PyTensor 3; these "
        "columns were headed *C* before); *numba*: the joint logp+gradient function "
        "nutpie samples with (`compile_pymc_model(...).logp_func`). Observations include "
        "the pool sample for screenformula (it has a pool likelihood) and not for Bambi. "
        "Peak memory here is of a gradient-only run (`--grad-only`) where there is one "
        "(before the kernel comparison below), else the peak after building in the NUTS "
        "run. *NB*: the negative-binomial implementation the model was built with "
        "(`backend/likelihood.py`).",
    ]
    lines += nb_kernel_table([best[k] for k in sorted(best)])
    return lines


def nb_kernel_table(records: list[dict[str, Any]]) -> list[str]:
    """Our model's numba logp+gradient with each negative-binomial kernel, same process."""
    rows = [r for r in records if len(r.get("nb_kernels") or {}) > 1 and r["model"] == "ours"]
    rows = [r for r in rows if isinstance(r["nb_kernels"], dict)]
    if not rows:
        return []
    kernels = list(rows[0]["nb_kernels"])
    head = " | ".join(f"{k}: CPU ms (wall) | {k}: ns / observation" for k in kernels)
    lines = [
        "",
        "### Negative-binomial kernel",
        "",
        f"| genes | observations | {head} | ratio {kernels[-1]} / {kernels[0]} "
        "| max rel. gradient difference | load 1-min (start→end) | date |",
        "|---" * (2 * len(kernels) + 6) + "|",
    ]
    for r in rows:
        t = r["nb_kernels"]
        cells = " | ".join(
            f"{t[k]['cpu_median_ms']:.2f} ({t[k]['median_ms']:.2f}) "
            f"| {t[k]['cpu_median_ms'] * 1e6 / r['n_obs']:.0f}"
            for k in kernels
        )
        ratio = t[kernels[-1]]["cpu_median_ms"] / t[kernels[0]]["cpu_median_ms"]
        load = r.get("nb_kernels_load", [None, None])
        lines.append(
            f"| {r['n_genes']:,} | {r['n_obs']:,} | {cells} | **{ratio:.2f}×** "
            f"| {r.get('nb_kernels_max_rel_diff', float('nan')):.1e} "
            f"| {_f(load[0])}→{_f(load[1])} | {r.get('env', {}).get('date', '?')} |"
        )
    lines += [
        "",
        f"The numba log-density + gradient that nutpie samples with, for our model built "
        f"with each implementation (`SCREENFORMULA_NB_KERNEL`) in one process: median of "
        f"{N_EVAL} calls each at the same initial point, calls of the two alternating "
        "(after 3 warm-up calls each), CPU time of the calling thread (wall in brackets). "
        "*fused*: the `NegBinLogpSum` Op of `backend/nb_kernel.py`, density and both "
        "derivatives in one loop; *expression*: the PyTensor expression "
        "`nb_logp_elementwise` and its autodiff gradient. The gradient difference is the "
        "largest absolute difference relative to the largest gradient entry.",
    ]
    return lines


def markdown(records: list[dict[str, Any]], env: dict[str, Any] | None) -> str:
    """The markdown tables of all records."""
    grads = gradient_table(records)
    records = [r for r in records if r["draws"] > 0]
    lines = ["# bench_model results", ""]
    if env:
        lines += [
            f"Latest run {env['date']} on {env['host_cores']} cores ({env['cpu']}), "
            f"git {env.get('git', '?')}; "
            + ", ".join(f"{k} {v}" for k, v in env["versions"].items())
            + ".",
            "",
        ]
    lines += [
        f"Formula `{FORMULA}`; simulated screens, 1 pool + 3 control + 3 treated samples, "
        '4 guides per gene. screenformula: `pool="joint"`, `dispersion="sgrna"`, LKJ '
        "correlations. Bambi: the closest Bambi model, `"
        + BAMBI_FORMULA.format(guide="sgrna")
        + "` on the long table without the pool sample (no pool likelihood, no LKJ: "
        "independent varying effects, one shared `alpha`), "
        '`inference_method="nutpie"`. The guide IDs are unique, so `(… | sgrna)` is the same '
        "grouping as `(… | gene:sgrna)`; Bambi/formulae build `gene:sgrna` as the Cartesian "
        "product of gene and guide levels (n_genes × n_guides levels, nearly all unobserved), "
        "which is what the `gene:sgrna` rows (if any) show.",
        "",
        "*all*: ours over Intercept, b, sd_gene, sd_sgrna, cor_gene, cor_sgrna, r_gene, "
        "phi_rate; Bambi over Intercept, treatment, the four sds, 1|gene, treatment|gene, "
        "alpha. *comparable*: population effects and group sds only (ours Intercept, b, "
        "sd_gene, sd_sgrna; Bambi Intercept, treatment, 1|gene_sigma, treatment|gene_sigma, "
        "1|sgrna_sigma, treatment|sgrna_sigma). ESS/s = min bulk ESS / sampling wall time "
        "(warm-up included, nutpie compile excluded: it is in *nutpie compile s*). "
        "ESS/CPU-s = min bulk ESS / CPU seconds of the process while sampling (all threads), "
        "less sensitive to other jobs on the machine; *CPU ms / step* = sampling CPU time / "
        "leapfrog steps (warm-up included), the effective cost of one gradient in sampling; "
        "*ESS per 1k steps* = min bulk ESS per 1,000 leapfrog steps (gradient evaluations), "
        "independent of machine load. "
        "*load*: 1-minute load average when the run started and ended.",
        "",
        '## Default model (`parameterization="auto"`) and Bambi',
        "",
        "| " + " | ".join(MAIN_HEAD) + " |",
        "|---" * len(MAIN_HEAD) + "|",
    ]
    main = [r for r in records if r["param"] == "auto" or r["model"] == "bambi"]
    lines += [_row(r) for r in main]
    ratios = []
    for ours in main:
        if ours["model"] != "ours" or ours["status"] != "ok":
            continue
        for other in main:
            if not (
                other["model"] == "bambi"
                and other["status"] == "ok"
                and other["n_genes"] == ours["n_genes"]
            ):
                continue
            for what in ("comparable", "all"):
                wall = _ratio(ours[what]["ess_per_s"], other[what]["ess_per_s"])
                cpu = _ratio(_derived(ours)[f"ess_cpu_{what}"], _derived(other)[f"ess_cpu_{what}"])
                ratios.append(
                    f"- {ours['n_genes']:,} genes, {what} variables, Bambi "
                    f"`{other['param']}`: ESS/s ours / Bambi = **{_f(wall, '{:.1f}')}×** "
                    f"(per CPU-second: {_f(cpu, '{:.1f}')}×)"
                )
    if ratios:
        lines += ["", *ratios]
    order = list(PARAMETERIZATIONS)
    param = sorted(
        (r for r in records if r["model"] == "ours"),
        key=lambda r: (r["n_genes"], order.index(r["param"])),
    )
    sizes = {r["n_genes"] for r in param if r["param"] != "auto"}
    if sizes:
        lines += [
            "",
            "## Centring (`parameterization`)",
            "",
            "| parameterization | genes | chains×(tune+draws) | sampling wall s "
            "| sampling CPU s | leapfrog steps | min ESS, all (worst) | ESS/s, all "
            "| ESS/CPU-s, all | ESS per 1k steps, all | R-hat max | div "
            "| min bulk ESS per variable |",
            "|---" * 13 + "|",
        ]
        for r in param:
            if r["n_genes"] not in sizes:
                continue
            if r["status"] != "ok":
                lines.append(f"| {PARAM_TEXT[r['param']]} | {r['n_genes']:,} | {r['status']} |")
                continue
            per = ", ".join(f"{k} {v['ess_bulk_min']:.0f}" for k, v in r["per_variable"].items())
            lines.append(
                f"| {PARAM_TEXT[r['param']]} | {r['n_genes']:,} "
                f"| {r['chains']}×({r['tune']}+{r['draws']}) | {r['sample_s']:.0f} "
                f"| {_f(r.get('sample_cpu_s'), '{:.0f}')} "
                f"| {(r.get('total_steps') or 0) / 1e3:,.0f}k "
                f"| {_f(r['all']['ess_bulk_min'], '{:.0f}')} ({r['all']['worst']}) "
                f"| {_f(r['all']['ess_per_s'], '{:.2f}')} "
                f"| {_f(_derived(r)['ess_cpu_all'], '{:.2f}')} "
                f"| {_f(_derived(r)['ess_ksteps_all'], '{:.2f}')} "
                f"| {_f(r['all']['rhat_max'], '{:.3f}')} | {r['divergences']} | {per} |"
            )
    lines += grads
    return "\n".join(lines) + "\n"


def write_report(json_path: Path, md_path: Path) -> None:
    raw = json.loads(json_path.read_text()) if json_path.exists() else {"records": []}
    records = raw["records"]
    envs = [r["env"] for r in records if "env" in r]
    env = max(envs, key=lambda e: e["date"]) if envs else None
    md_path.write_text(markdown(records, env))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 2000, 20000])
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--tune", type=int, default=500)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--cores", type=int, default=None, help="default: one per chain")
    parser.add_argument("--seed", type=int, default=1, help="NUTS seed")
    parser.add_argument("--sim-seed", type=int, default=2024, help="simulation seed")
    parser.add_argument("--bambi-sizes", type=int, nargs="*", default=[500, 2000])
    parser.add_argument("--param-sizes", type=int, nargs="*", default=[2000])
    parser.add_argument(
        "--bambi-guide",
        nargs="+",
        default=["sgrna"],
        choices=["sgrna", "gene:sgrna"],
        help="Bambi's guide grouping factor (gene:sgrna builds a Cartesian product)",
    )
    parser.add_argument("--no-bambi", action="store_true")
    parser.add_argument("--no-param", action="store_true")
    parser.add_argument(
        "--grad-only",
        action="store_true",
        help="build and time the gradients only (no NUTS; recorded with draws=0)",
    )
    parser.add_argument(
        "--nb-kernels",
        nargs="*",
        default=["fused", "expression"],
        choices=["fused", "expression"],
        help="with --grad-only: also time our model built with each of these NB kernels",
    )
    parser.add_argument("--only", choices=["ours", "bambi", "param"], nargs="+")
    parser.add_argument("--mem-limit-gb", type=float, default=12.0)
    parser.add_argument("--timeout", type=float, default=None, help="seconds per job")
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_model.json")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--job", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.job:
        child_main(*args.job)
        return
    md_path = args.out.with_suffix(".md")
    if args.report_only:
        write_report(args.out, md_path)
        print(md_path.read_text())
        return

    only = set(args.only or ["ours", "bambi", "param"])
    jobs = []
    for n in args.sizes:
        variants = []
        if "ours" in only:
            variants.append(("ours", "auto"))
        if "bambi" in only and not args.no_bambi and n in args.bambi_sizes:
            variants += [("bambi", guide) for guide in args.bambi_guide]
        if "param" in only and not args.no_param and n in args.param_sizes:
            variants += [("ours", "gene_nc"), ("ours", "all_nc")]
        for model, param in variants:
            jobs.append(
                {
                    "model": model,
                    "param": param,
                    "n_genes": n,
                    "draws": 0 if args.grad_only else args.draws,
                    "tune": args.tune,
                    "chains": args.chains,
                    "cores": args.cores or args.chains,
                    "seed": args.seed,
                    "sim_seed": args.sim_seed,
                    "label": f"{model}/{param}/{n}",
                    "nb_kernels": args.nb_kernels if args.grad_only and model == "ours" else [],
                }
            )
    env = environment()
    for job in jobs:
        rec = run_job(job, args.mem_limit_gb, args.timeout)
        rec["env"] = {**env, "loadavg_end": os.getloadavg()}
        save_results(args.out, [rec])  # after each job, so a long run keeps what it has
        write_report(args.out, md_path)
        print(f"== {job['label']}: {rec['status']}", file=sys.stderr, flush=True)
    print(md_path.read_text())


if __name__ == "__main__":
    main()
