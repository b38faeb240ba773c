"""Two-stage engine vs full NUTS on simulated screens, and its genome-wide timing.

Usage::

    python benchmarks/bench_two_stage.py --genes 500 --seeds 1 2 --timing-genes 20000

For each seed: a screen of ``--genes`` genes (4 guides, pool + 3 control + 3 treated,
10 % hits) fitted by full NUTS (``--nuts-chains`` x ``--nuts-draws``) and by
`fit_two_stage`; compared on the gene LFC posterior (treated vs control): correlation of
means, ratio of sds (median, 5-95 %), hit calls at q = 0.05 (q-value: running mean of the
sorted local false sign rates), 90 % interval coverage of the true LFC, and on the genes
whose calls can move (1 < |mean| / sd < 3 under NUTS) the median ratios of sds and of
|means| and the slope of the means (how the calls near the threshold shift). NUTS's own
run-to-run agreement (its first half of chains against its second half) is the ceiling.
Then the two-stage fit alone on ``--timing-genes`` genes. Writes
``benchmarks/results/two_stage.{json,md}``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

import screenformula as sf  # noqa: E402
from screenformula.inference.nuts import sample_nuts, stored_variables  # noqa: E402
from screenformula.inference.two_stage.engine import fit_two_stage  # noqa: E402

FORMULA = "count ~ 1 + treatment + (1 + treatment | gene) + (1 + treatment | gene:sgrna)"
COEF = "treatment[treated]"
OUT = Path(__file__).parent / "results"


def lfc_draws(post) -> np.ndarray:  # noqa: ANN001
    """(draws, genes) gene LFC draws from a posterior Dataset."""
    lfc = post["b"].sel(b_coef=COEF) + post["r_gene"].sel(gene_coef=COEF)
    return lfc.stack(s=("chain", "draw")).transpose("s", "gene").values


def hits(draws: np.ndarray, q: float = 0.05, rule: str = "qvalue") -> np.ndarray:
    """Hit calls: genes whose lfsr q-value (running mean of sorted lfsr) is at most ``q``;
    ``rule="local"``: whose own lfsr is (the library's default call rule, at delta 0)."""
    pos = (draws > 0).mean(0)
    lfsr = np.minimum(pos, 1 - pos)
    if rule == "local":
        return lfsr <= q
    order = np.argsort(lfsr)
    qval = np.empty_like(lfsr)
    qval[order] = np.cumsum(lfsr[order]) / np.arange(1, len(lfsr) + 1)
    return qval <= q


def compare(a: np.ndarray, b: np.ndarray, truth: np.ndarray) -> dict:
    """Agreement of draws ``a`` (method) with reference draws ``b`` (``truth``: or None)."""
    mean_a, mean_b, sd_b = a.mean(0), b.mean(0), b.std(0)
    ratio = a.std(0) / sd_b
    border = (np.abs(mean_b) > sd_b) & (np.abs(mean_b) < 3 * sd_b)  # calls that can move
    lo, hi = np.quantile(a, [0.05, 0.95], axis=0)
    lo_b, hi_b = np.quantile(b, [0.05, 0.95], axis=0)
    return {
        "corr_means": float(np.corrcoef(mean_a, mean_b)[0, 1]),
        "sd_ratio_median": float(np.median(ratio)),
        "sd_ratio_5": float(np.quantile(ratio, 0.05)),
        "sd_ratio_95": float(np.quantile(ratio, 0.95)),
        "frac_sd_ratio_in_0.8_1.25": float(np.mean((ratio > 0.8) & (ratio < 1.25))),
        "slope_means": float(np.polyfit(mean_b, mean_a, 1)[0]),
        "border_genes": int(border.sum()),
        "border_sd_ratio_median": float(np.median(ratio[border])) if border.any() else None,
        "border_abs_mean_ratio_median": (
            float(np.median(np.abs(mean_a[border] / mean_b[border]))) if border.any() else None
        ),
        "hit_agreement": float(np.mean(hits(a) == hits(b))),
        "hits": int(hits(a).sum()),
        "hits_ref": int(hits(b).sum()),
        "hit_agreement_local": float(np.mean(hits(a, rule="local") == hits(b, rule="local"))),
        "hits_local": int(hits(a, rule="local").sum()),
        "hits_local_ref": int(hits(b, rule="local").sum()),
        "coverage90": None if truth is None else float(np.mean((truth >= lo) & (truth <= hi))),
        "coverage90_ref": (
            None if truth is None else float(np.mean((truth >= lo_b) & (truth <= hi_b)))
        ),
    }


def nuts_reference(
    model: sf.ScreenModel, name: str, seed: int, args: argparse.Namespace
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Full NUTS's gene LFC draws (all chains, first half, second half) and its seconds.

    With ``--nuts-cache DIR`` they are kept in ``DIR`` and reused by a later run with the
    same screen, model and NUTS settings (the two-stage side can then be rerun alone). The
    key holds a hash of ``repr(model)`` (formula, dispersion, priors): a changed default
    model never reads an old model's reference.
    """
    model_hash = hashlib.sha1(repr(model).encode()).hexdigest()[:8]
    key = f"nuts_{name}_s{seed}_c{args.nuts_chains}_d{args.nuts_draws}_{model_hash}.npz"
    cache = Path(args.nuts_cache) / key if args.nuts_cache else None
    if cache is not None and cache.exists():
        saved = np.load(cache)
        return saved["ref"], saved["first"], saved["second"], float(saved["seconds"])
    start = time.perf_counter()
    nuts = sample_nuts(
        model.pymc_model,
        draws=args.nuts_draws,
        tune=args.nuts_draws,
        chains=args.nuts_chains,
        cores=args.nuts_chains,
        random_seed=seed,
        engine="nutpie",
        var_names=stored_variables(model.pymc_model, False),
        progress=False,
        target_accept=0.8,
    )
    seconds = time.perf_counter() - start
    post = nuts["posterior"]
    half = args.nuts_chains // 2
    ref = lfc_draws(post)
    first = lfc_draws(post.isel(chain=slice(0, half)))
    second = lfc_draws(post.isel(chain=slice(half, None)))
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, ref=ref, first=first, second=second, seconds=seconds)
    return ref, first, second, seconds


def run_seed(n_genes: int, seed: int, args: argparse.Namespace) -> dict:
    """One simulated screen: NUTS and two-stage, compared."""
    data, truth = sf.simulate_screen(n_genes=n_genes, random_seed=seed)
    model = sf.ScreenModel(FORMULA, data)
    true = truth.genes.set_index("gene").loc[list(map(str, data.gene_names)), "lfc"].to_numpy()
    return compare_fits(model, f"g{n_genes}", seed, true, args)


def hap1_reference_model() -> tuple[sf.ScreenModel, np.ndarray]:
    """HAP1 TKOv3 restricted to its CEGv2 and NEGv1 genes (T18A-C vs T0), as `bench_real`.

    Returns the model and, per gene, whether it is core-essential.
    """
    from screenformula import datasets
    from screenformula.io.screen_data import ScreenData

    raw = datasets.load_hap1_tkov3(t0_as_pool=False)
    ref = datasets.load_reference_genes()
    essential, nonessential = set(ref["essential"]), set(ref["nonessential"])
    genes = np.asarray(raw.genes_of_sgrna, dtype=str)
    keep = np.isin(genes, list(essential | nonessential))
    sheet = raw.samples.copy()
    sheet["treatment"] = np.where(sheet["condition"].astype(str) == "T0", "ctrl", "treated")
    data = ScreenData(
        np.asarray(raw.counts)[keep],
        np.asarray(raw.sgrnas)[keep],
        genes[keep],
        sheet,
        size_factors="median",
    )
    model = sf.ScreenModel(FORMULA, data, pool=None, reference={"treatment": "ctrl"})
    return model, np.isin(np.asarray(data.gene_names, dtype=str), list(essential))


def run_hap1_reference(args: argparse.Namespace) -> dict:
    """The real screen's reference genes: NUTS and two-stage compared (no truth: no coverage)."""
    from screenformula.evaluation import roc_auc

    model, essential = hap1_reference_model()
    out = compare_fits(model, "hap1ref", 1, None, args, fit_seed=args.fit_seed)
    out["screen"] = "HAP1 CEGv2 + NEGv1 genes"
    out["auc_nuts"] = round(roc_auc(-out.pop("_nuts_mean"), essential), 4)
    out["auc_two_stage"] = round(roc_auc(-out.pop("_two_mean"), essential), 4)
    return out


def compare_fits(
    model: sf.ScreenModel,
    name: str,
    seed: int,
    true: np.ndarray | None,
    args: argparse.Namespace,
    fit_seed: int | None = None,
) -> dict:
    """Full NUTS and the two-stage fit of ``model``, compared on the gene LFC posterior.

    ``seed`` is NUTS's (and the two-stage fit's unless ``fit_seed`` is given).
    """
    ref, first, second, t_nuts = nuts_reference(model, name, seed, args)
    start = time.perf_counter()
    fit_seed = seed if fit_seed is None else fit_seed
    idata, options = fit_two_stage(
        model, draws=args.draws, random_seed=fit_seed, progress=False, **args.overrides
    )
    t_two = time.perf_counter() - start
    two = lfc_draws(idata["posterior"].to_dataset())
    return {
        "seed": seed,
        "fit_seed": fit_seed,
        "n_genes": int(model.data.n_genes),
        "_nuts_mean": ref.mean(0),
        "_two_mean": two.mean(0),
        "nuts_seconds": round(t_nuts, 1),
        "two_stage_seconds": round(t_two, 1),
        "two_stage_vs_nuts": compare(two, ref, true),
        "nuts_half_vs_half": compare(first, second, true),
        "two_stage_options": {
            k: options[k] for k in ("stage1", "khat", "n_hmc_genes", "hmc", "seconds")
        },
    }


def run_timing(n_genes: int, args: argparse.Namespace) -> dict:
    """The two-stage fit alone on a genome-scale screen."""
    data, _ = sf.simulate_screen(n_genes=n_genes, n_controls=200, random_seed=7)
    model = sf.ScreenModel(FORMULA, data)
    start = time.perf_counter()
    _, options = fit_two_stage(
        model, draws=args.draws, random_seed=7, progress=False, **args.overrides
    )
    import resource

    return {
        "n_genes": n_genes,
        "n_sgrnas": int(data.n_sgrnas),
        "wall_seconds": round(time.perf_counter() - start, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "options": {k: options[k] for k in ("stage1", "khat", "n_hmc_genes", "hmc", "seconds")},
    }


def _coverage(c: dict) -> str:
    """The coverage cell: the method's and NUTS's, or n/a without a truth."""
    if c["coverage90"] is None:
        return "n/a"
    return f"{c['coverage90']:.3f} ({c['coverage90_ref']:.3f})"


def _local(c: dict) -> str:
    """The local rule's agreement (lfsr <= 0.05 per gene), where it was scored."""
    if "hit_agreement_local" not in c:
        return ""
    return f"; local rule {c['hit_agreement_local']:.3f}, {c['hits_local']}/{c['hits_local_ref']}"


def markdown(result: dict) -> str:
    """A table of the comparison."""
    lines = [
        "# Two-stage engine vs full NUTS",
        "",
        *([f"Run: `{result['command']}` ({result['when']}).", ""] if "command" in result else []),
        f"NUTS: {result['nuts_chains']} x {result['nuts_draws']} draws; two-stage: "
        f"{result['draws']} draws, settings {result['overrides'] or 'default'}.",
        "",
        "| screen | genes | who | corr means | sd ratio median [5-95 %] | in [0.8,1.25] "
        "| hit agreement (hits) | coverage 90 % (NUTS) | HMC genes | k-hat>0.7 | s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["seeds"]:
        screen = r.get("screen", f"simulated, seed {r['seed']}")
        for who, key in (
            ("two-stage", "two_stage_vs_nuts"),
            ("NUTS half/half", "nuts_half_vs_half"),
        ):
            c = r[key]
            extra = (
                f"{r['two_stage_options']['n_hmc_genes']} | "
                f"{r['two_stage_options']['khat']['above_0.7']} | {r['two_stage_seconds']}"
                if key == "two_stage_vs_nuts"
                else f"- | - | {r['nuts_seconds']}"
            )
            lines.append(
                f"| {screen} | {r['n_genes']} | {who} | {c['corr_means']:.4f} | "
                f"{c['sd_ratio_median']:.3f} [{c['sd_ratio_5']:.3f}, {c['sd_ratio_95']:.3f}] | "
                f"{c['frac_sd_ratio_in_0.8_1.25']:.3f} | {c['hit_agreement']:.3f} "
                f"({c['hits']}/{c['hits_ref']}{_local(c)}) | {_coverage(c)}"
                f" | {extra} |"
            )
    for r in result["seeds"]:
        c, h = r["two_stage_vs_nuts"], r["nuts_half_vs_half"]
        if c.get("border_genes"):
            screen = r.get("screen", f"simulated, seed {r['seed']}")
            lines.append(
                f"\n{screen}: on the {c['border_genes']} genes with 1 < |mean| / sd < 3 "
                "under NUTS, "
                f"two-stage sd ratio {c['border_sd_ratio_median']:.3f} and |mean| ratio "
                f"{c['border_abs_mean_ratio_median']:.3f} (NUTS halves "
                f"{h['border_sd_ratio_median']:.3f} and {h['border_abs_mean_ratio_median']:.3f}); "
                f"slope of means {c['slope_means']:.4f} (halves {h['slope_means']:.4f})."
            )
    for r in result["seeds"]:
        if "auc_nuts" in r:
            lines.append(
                f"\n{r['screen']}: ROC AUC of the posterior mean LFC, CEGv2 vs NEGv1: NUTS "
                f"{r['auc_nuts']}, two-stage {r['auc_two_stage']} (no truth: coverage n/a)."
            )
    if result.get("timing"):
        t = result["timing"]
        lines += [
            "",
            f"Genome-scale timing: {t['n_genes']:,} genes, {t['n_sgrnas']:,} guides: "
            f"{t['wall_seconds']} s wall, peak RSS {t.get('peak_rss_mb')} MB "
            f"(stage 1 {t['options']['seconds']['stage1']} s, "
            f"stage 2 {t['options']['seconds']['stage2']} s; parts "
            f"{t['options']['seconds']['stage2_parts']}), HMC genes "
            f"{t['options']['n_hmc_genes']}, k-hat {t['options']['khat']}.",
        ]
    return "\n".join(lines) + "\n"


def _setting(value: str) -> bool | int | float:
    """A ``--set`` value: true / false, else a number."""
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    return float(value) if "." in value else int(value)


def main() -> None:
    """Run the benchmark and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genes", type=int, default=500)
    parser.add_argument("--seeds", type=int, nargs="*", default=[1])
    parser.add_argument("--nuts-draws", type=int, default=1000)
    parser.add_argument("--nuts-chains", type=int, default=4)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--timing-genes", type=int, default=0)
    parser.add_argument("--set", nargs="*", default=[], help="config overrides, key=value")
    parser.add_argument("--out", default=str(OUT / "two_stage"))
    parser.add_argument("--nuts-cache", default="", help="folder keeping NUTS's draws")
    parser.add_argument(
        "--hap1-reference", action="store_true", help="also HAP1's CEGv2 + NEGv1 genes"
    )
    parser.add_argument(
        "--fit-seed", type=int, default=1, help="the two-stage fit's seed on HAP1's genes"
    )
    args = parser.parse_args()
    args.overrides = {k: _setting(v) for k, v in (s.split("=") for s in args.set)}
    result = {
        "command": "python benchmarks/bench_two_stage.py " + " ".join(sys.argv[1:]),
        "when": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores",
        "nuts_draws": args.nuts_draws,
        "nuts_chains": args.nuts_chains,
        "draws": args.draws,
        "overrides": args.overrides,
        "seeds": [],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def write() -> None:
        out.with_suffix(".json").write_text(json.dumps(result, indent=1, default=str))
        out.with_suffix(".md").write_text(markdown(result))

    for seed in args.seeds:  # written after each seed: a long run keeps what it finished
        entry = run_seed(args.genes, seed, args)
        result["seeds"].append({k: v for k, v in entry.items() if not k.startswith("_")})
        write()
    if args.hap1_reference:
        result["seeds"].append(run_hap1_reference(args))
        write()
    if args.timing_genes:
        result["timing"] = run_timing(args.timing_genes, args)
        write()
    print(markdown(result))


if __name__ == "__main__":
    main()
