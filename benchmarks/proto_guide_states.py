"""Prototype for issue 15: guides that work or fail, each gene's posterior on an exact grid.

`proto_guide_efficacy.py` sums each guide's two states (works: the gene's effect plus the
guide's deviation; fails: the screen's overall effect plus its deviation) out of a model
sampled by NUTS; a gene whose guides split has a bimodal posterior, which its chains did
not cross (gene LFC R-hat 1.77 on JACKS HL60). This script computes the same kind of
posterior without sampling it, two-stage as the library's engine:

1. **Stage 1**: the model without failing guides (trend dispersion per condition,
   replicate scales, Student-t(3) gene slopes; plain PyMC, nutpie 2 x 400 draws) on at
   most 600 random genes; the posterior means of the dispersion trend, the replicate
   scales and the guide intercepts' prior are kept.
2. **Stage 2, per guide**: its likelihood on a grid of its own treatment effect (step
   0.025 natural log), its intercept integrated out by Laplace's method (Newton on one
   coordinate), then convolved with its deviation ``N(0, sd_d)``: ``I_s(b)``.
3. **Stage 2, per gene**: the posterior of its effect ``b`` on the same grid, the t3
   prior times a sum over its guides' states of ``prod (1 - pi) I_s(b)`` (working) and
   ``pi I_s(b0)`` (failing). ``--states`` picks which states are summed: ``none`` (every
   guide works, the same model as the default up to the plug-in globals), ``any`` (each
   guide independently, JACKS's two-state efficacy) or ``majority`` (at most
   ``(k - 1) // 2`` of a gene's ``k`` guides fail: a gene's effect is what most of its
   guides show, so one outlying guide cannot carry a gene), by dynamic programming over
   the number failing. ``b0``, ``sd_b``, ``pi`` and ``sd_d`` maximise the marginal
   likelihood summed over at most 4,000 random genes (empirical Bayes, as stage 1
   subsamples; ``--pi`` fixes ``pi``); then every gene's posterior is computed.

Beside the panel's cases, ``sim_eff_<seed>`` and ``sim_fail_<seed>`` are its simulated
``hits`` screens with guides that fail (`guide_efficacy_case`).

Every gene's posterior is exact on the grid given the globals: no chain can miss a mode.
Draws from it are scored as the panel scores a case (`bench_real.score_ours`, or
`panel_simulated.score_simulated` against a simulated truth), with the library's local
errors, q-values and 90 % HDI. The prototype of the library's ``guide_states=``, whose grid
core (`screenformula.inference.two_stage.grid`) it now uses; it handles one
treated-vs-control contrast with its own stage 1 and drops the gene intercept's pooling
of its guides' baselines, where the library fits the user's model.

    SCREENFORMULA_DATA=../shared/data .venv/bin/python \\
        benchmarks/proto_guide_states.py jacks_HL60 --states majority

Appends one record per run to ``results/guide_states.json`` (``--out``) and rewrites
``results/guide_states.md``; the gene table goes to ``--keep`` (default
``/tmp/proto_guide_states/<case>_<states>``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_panel as bp  # noqa: E402 - benchmarks/ is not a package
import bench_real as br  # noqa: E402
import panel_simulated as ps  # noqa: E402

from screenformula.inference.two_stage import grid as grid_core  # noqa: E402
from screenformula.results.contrast_core import hdi, local_errors, qvalues  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
#: grid of a guide's or gene's treatment effect (natural log) and its step: the library's
STEP = grid_core.GRID_STEP
GRID = grid_core.GRID
#: every gene's posterior on `GRID` given the globals: the library's
GeneGrid = grid_core.StateGrid
STAGE1_GENES = 600
N_DRAWS = 2000
#: genes whose summed marginal likelihood fits b0, sd_b, pi and sd_d
FIT_GENES = 4000
LOG2 = np.log(2.0)


# ------------------------------------------------------------------------ the screen
class Screen:
    """One panel case's counts, guides sorted by gene, size factors and conditions."""

    def __init__(self, case: dict[str, Any]) -> None:
        table = case["table"]
        samples = list(table.columns[2:])
        cond = np.array([br.sample_condition(s, case) for s in samples])
        counts = table[samples].to_numpy(float)
        seen = counts[:, cond == "ctrl"].sum(1) > 0  # the panel's filter
        genes = table.iloc[:, 1].to_numpy()[seen]
        order = np.argsort(genes, kind="stable")
        self.counts = counts[seen][order]
        self.gene_names, self.gene = np.unique(genes[order], return_inverse=True)
        log_counts = np.log(self.counts + 0.5)  # median-of-ratios size factors
        self.log_sf = np.median(log_counts - log_counts.mean(1)[:, None], axis=0)
        self.treated = (cond != "ctrl").astype(float)
        normalised = self.counts[:, cond == "ctrl"] / np.exp(self.log_sf[cond == "ctrl"])
        self.ctrl_log_mean = np.log(normalised.mean(1) + 0.5)
        self.abundance = self.ctrl_log_mean - self.ctrl_log_mean.mean()
        self.starts = np.r_[0, np.flatnonzero(np.diff(self.gene)) + 1]
        self.n_guides = np.diff(np.r_[self.starts, len(self.gene)])

    @property
    def replicates(self) -> np.ndarray:
        return np.flatnonzero(self.treated == 1)


def guide_efficacy_case(name: str) -> dict[str, Any]:
    """``sim_eff_<seed>`` / ``sim_fail_<seed>``: the panel's ``hits`` screens with guides that fail.

    As `panel_simulated.simulated_case` (200 genes x 4 guides, control and treated in
    triplicate, 10 % hits), but each guide's effect is its efficacy ``e_s`` times the
    gene's: ``e_s ~ Beta(4, 1.5)`` (``eff``: the simulator's default, mean 0.73) or
    ``Beta(0.5, 0.5)`` (``fail``: guides mostly work or mostly fail, mean 0.5). The truth
    scored against is the gene's LFC, the effect of a guide that works.
    """
    _, kind, seed = name.split("_")
    beta = (4.0, 1.5) if kind == "eff" else (0.5, 0.5)
    return ps.simulated_case("hits", int(seed), name, guide_efficiency=True, efficiency_beta=beta)


# ------------------------------------------------------------------------ stage 1
def stage1(screen: Screen, n_genes: int = STAGE1_GENES, seed: int = 0) -> dict[str, Any]:
    """Posterior means of the globals, by NUTS on a random gene subsample (no failing guides)."""
    import nutpie
    import pymc as pm
    import pytensor.tensor as pt

    n_all = len(screen.gene_names)
    keep = np.random.default_rng(seed).choice(n_all, size=min(n_genes, n_all), replace=False)
    rows = np.isin(screen.gene, keep)
    _, gene = np.unique(screen.gene[rows], return_inverse=True)
    y, abundance = screen.counts[rows], screen.abundance[rows]
    x, reps, cls = screen.treated, screen.replicates, screen.treated.astype(int)
    with pm.Model() as model:
        mu_a = pm.StudentT("mu_a", nu=3, mu=float(np.median(screen.ctrl_log_mean)), sigma=2.5)
        sd_gene_int = pm.Exponential("sd_gene_int", 1.0)
        sd_a = pm.Exponential("sd_a", 1.0)
        gene_int = pm.Normal("gene_int", 0, 1, shape=len(keep))
        a = pm.Normal("a", mu_a + sd_gene_int * gene_int[gene], sd_a, shape=len(gene))
        b0 = pm.StudentT("b0", nu=5, mu=0, sigma=1)
        sd_b = pm.Exponential("sd_b", 1.0)
        z_b = pm.StudentT("z_b", nu=3, mu=0, sigma=1, shape=len(keep))
        sd_d = pm.Exponential("sd_d", 1.0)
        z_d = pm.Normal("z_d", 0, 1, shape=len(gene))
        scale = pt.ones(len(x))
        if len(reps) > 1:
            log_scale = pm.ZeroSumNormal("log_scale", sigma=0.5, shape=len(reps))
            scale = pt.set_subtensor(scale[reps], pt.exp(log_scale))
        t0 = pm.Normal("t0", 3, 2, shape=2)  # log phi = t0 + t1 * abundance, per class
        t1 = pm.Normal("t1", 0, 1, shape=2)
        phi = pt.exp(t0[cls][None, :] + t1[cls][None, :] * abundance[:, None])
        effect = (b0 + sd_b * z_b)[gene] + sd_d * z_d
        eta = screen.log_sf[None, :] + a[:, None] + x[None, :] * scale[None, :] * effect[:, None]
        pm.NegativeBinomial("y", mu=pt.exp(eta), alpha=phi, observed=y)
    compiled = nutpie.compile_pymc_model(model, backend="numba")
    trace = nutpie.sample(compiled, draws=400, tune=500, chains=2, seed=1, progress_bar=False)
    post = trace.posterior if hasattr(trace, "posterior") else trace["posterior"]
    names = ["mu_a", "sd_gene_int", "sd_a", "b0", "sd_b", "sd_d", "t0", "t1"]
    means = {n: np.asarray(post[n].mean(("chain", "draw")).values) for n in names}
    means["log_scale"] = (
        np.asarray(post["log_scale"].mean(("chain", "draw")).values)
        if len(reps) > 1
        else np.zeros(0)
    )
    return {n: v.tolist() for n, v in means.items()}


# ------------------------------------------------------------------------ stage 2
def guide_log_lik(screen: Screen, g1: dict[str, Any]) -> np.ndarray:
    """Each guide's log-likelihood on `GRID`, its intercept integrated by Laplace.

    The library's `grid.guide_log_lik` on this script's plug-in globals.
    """
    scale = np.ones(len(screen.treated))
    if len(screen.replicates) > 1:
        scale[screen.replicates] = np.exp(np.asarray(g1["log_scale"]))
    cls = screen.treated.astype(int)
    t0, t1 = np.asarray(g1["t0"]), np.asarray(g1["t1"])
    phi = np.exp(t0[cls][None, :] + t1[cls][None, :] * screen.abundance[:, None])
    shape = screen.counts.shape
    log_lik, _ = grid_core.guide_log_lik(
        screen.counts,
        np.broadcast_to(screen.log_sf[None, :], shape),
        np.broadcast_to((screen.treated * scale)[None, :], shape),
        phi,
        g1["mu_a"],
        float(np.hypot(g1["sd_gene_int"], g1["sd_a"])),
    )
    return log_lik


def fit_globals(
    grid: GeneGrid, g1: dict[str, Any], pi: float | None
) -> tuple[dict[str, float], int]:
    """``b0, sd_b, pi, sd_d`` maximising the summed marginal likelihood (the library's)."""
    start = grid_core.StateGlobals(g1["b0"], g1["sd_b"], g1["sd_d"], 0.1)
    found, evals = grid_core.fit_state_globals(grid, start, fix_pi=pi)
    return found.to_dict(), evals


def gene_table(screen: Screen, log_post: np.ndarray, seed: int = 1) -> pd.DataFrame:
    """Draws of each gene's log2 LFC from its grid posterior, summarised as the library does."""
    post = np.exp(log_post - log_post.max(1, keepdims=True))
    cdf = np.cumsum(post / post.sum(1, keepdims=True), axis=1)
    rng = np.random.default_rng(seed)
    u = rng.random((len(cdf), N_DRAWS))
    idx = np.stack([np.searchsorted(c, v) for c, v in zip(cdf, u, strict=True)])
    idx = np.minimum(idx, len(GRID) - 1)
    lfc = ((GRID[idx] + (rng.random(idx.shape) - 0.5) * STEP) / LOG2).T  # draws x genes
    return summarise_draws(screen.gene_names, lfc)


def summarise_draws(gene_names: np.ndarray, lfc: np.ndarray) -> pd.DataFrame:
    """The gene table the panel scores, from LFC draws (draws x genes).

    Local errors at the panel's delta, q-values and the 90 % HDI, by the library's
    `results/contrast_core`.
    """
    err_down, err_up, err = local_errors(lfc, br.DELTA)
    low, high = hdi(lfc, ps.HDI_PROB)
    return pd.DataFrame(
        {
            "gene": gene_names,
            "lfc": lfc.mean(0),
            "lfc_sd": lfc.std(0),
            "error_down": err_down,
            "error_up": err_up,
            "qvalue_down": qvalues(err_down),
            "qvalue": qvalues(err),
            "hdi_low": low,
            "hdi_high": high,
        }
    )


# ------------------------------------------------------------------------ report
def write_report(results: dict[str, Any], path: Path) -> None:
    """One row per case and states: calls, AUC or realised FDR and coverage, seconds."""
    lines = [
        "# Guide states on an exact grid (issue 15 prototype)",
        "",
        "`benchmarks/proto_guide_states.py`; cells: local-rule essential / non-essential"
        " calls (q-value rule in brackets), AUC; simulated: local-rule calls / false, q-value"
        " rule calls / false, 90 % HDI coverage.",
        "",
        "| case | states | pi | sd_d | calls | AUC / cover | s |",
        "|---|---|---|---|---|---|---|",
    ]
    for key in sorted(results):
        r = results[key]
        if "cover90" in r:
            calls = f"{r['local_calls']} / {r['local_false']} (q {r['calls']} / {r['false']})"
            score = f"cover {r['cover90']:.3f}"
        else:
            calls = (
                f"{r['local_hits_essential']} / {r['local_hits_nonessential']}"
                f" (q {r['hits_essential']} / {r['hits_nonessential']})"
            )
            score = f"{r['auc']:.4f}"
        lines.append(
            f"| {r['case']} | {r['states']} | {r['pi']:.3f} | {r['sd_d']:.3f} | {calls}"
            f" | {score} | {r['seconds']} |"
        )
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    warnings.filterwarnings("ignore")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("case")
    parser.add_argument("--states", choices=["none", "any", "majority"], default="majority")
    parser.add_argument("--pi", type=float, default=None, help="fix pi instead of fitting it")
    parser.add_argument("--out", type=Path, default=RESULTS / "guide_states.json")
    parser.add_argument("--keep", type=Path, default=None)
    args = parser.parse_args()
    start = time.time()
    if args.case.startswith(("sim_eff_", "sim_fail_")):
        case = guide_efficacy_case(args.case)
    else:
        levels = argparse.Namespace(levels=[1, 4, 10, 25], seeds=[1])
        case = bp.panel_cases([args.case], levels)[0]
    screen = Screen(case)
    g1 = stage1(screen)
    seconds1 = time.time() - start
    log_lik = guide_log_lik(screen, g1)
    # the globals from at most FIT_GENES random genes (as stage 1 subsamples), then every gene
    n_genes = len(screen.gene_names)
    fit_genes = np.random.default_rng(1).choice(n_genes, min(n_genes, FIT_GENES), replace=False)
    rows = np.isin(screen.gene, fit_genes)
    globals_, evals = fit_globals(
        GeneGrid(screen.gene[rows], log_lik[rows], args.states), g1, args.pi
    )
    grid = GeneGrid(screen.gene, log_lik, args.states)
    table = gene_table(screen, grid.log_post(**globals_))
    keep = args.keep or Path(f"/tmp/proto_guide_states/{args.case}_{args.states}")
    keep.mkdir(parents=True, exist_ok=True)
    table.to_csv(keep / "genes.tsv", sep="\t", index=False)
    if case.get("simulated"):
        score = ps.score_simulated(keep / "genes.tsv", case, "ours")
    else:
        ref = case.get("reference") or br.hap1_reference()
        score = br.score_ours(keep / "genes.tsv", None, ref)
    record = {
        "case": args.case,
        "states": args.states + ("" if args.pi is None else f" pi={args.pi}"),
        **{k: round(v, 4) for k, v in globals_.items()},
        "stage1_sd_d": round(g1["sd_d"], 4),
        "stage1_sd_b": round(g1["sd_b"], 4),
        "evals": evals,
        "stage1_s": round(seconds1),
        "seconds": round(time.time() - start),
        **{k: v for k, v in score.items() if not isinstance(v, (list, dict))},
    }
    print(json.dumps(record), flush=True)
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    results[f"{record['case']} {record['states']}"] = record
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    write_report(results, args.out.with_suffix(".md"))


if __name__ == "__main__":
    main()
