"""The screenformula demo (``make demo``): real screens, end to end, in a few minutes.

1. The MAGeCK leukemia demo screen (999 guides of 100 genes; HL60 and KBM7, initial and
   final), compared as MAGeCK's own demo compares it (``-t *.final -c *.initial
   --norm-method control --control-gene AHNAK``): the default correlated formula fitted
   with NUTS, contrasts, MAGeCK-compatible files, figures and a one-page HTML report,
   and the top depleted genes set beside MAGeCK's reference output.
2. The HAP1 TKOv3 genome-wide dropout screen (18,056 genes, 71,090 guides), fitted with
   the default method (``"auto"``: the two-stage engine at this size), scored by how well
   gene LFCs separate core-essential (CEGv2) from non-essential (NEGv1) genes (ROC AUC)
   and by its calls (each with at most a 5 % chance of being wrong), beside MAGeCK's
   figures on the same screen.

Everything is written to ``demo-output/`` (``--out``): the demo replaces its own files
there (each one renamed into place whole) and touches nothing else. Run with
``python -m screenformula.demo`` (``--help`` for the options; ``--fast`` is a smoke test
with tiny draws).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from screenformula.evaluation import (
    compare_with_mageck,
    depletion_scores,
    mageck_comparison_figure,
    naive_gene_lfc,
    roc_auc,
    roc_figure,
)
from screenformula.inference.registry import method_names
from screenformula.results.fit import ConvergenceWarning
from screenformula.spec.formula import SCREEN_FORMULA

FORMULA = SCREEN_FORMULA
DEFAULT_OUT = Path("demo-output")
LEUKEMIA = "leukemia"
HAP1 = "hap1"
#: ``mageck2 test`` on the HAP1 TKOv3 screen (T18A-C vs T0), measured by
#: ``benchmarks/bench_two_stage_real.py``: ROC AUC of CEGv2 vs NEGv1 by ``neg|lfc``, and its
#: depletion calls (``neg|fdr <= 0.05``) among CEGv2 and NEGv1 genes.
MAGECK_HAP1_AUC = 0.9963
MAGECK_HAP1_CALLS = {"essential": 374, "nonessential": 0}
#: The minimum |LFC| (log2) a call must exceed with the stated confidence in the demo.
HAP1_DELTA = 0.5

_RULE = "=" * 78
#: The settings that help the leukemia fit converge, as the demo's own flags.
DEMO_WORDING = {
    "method": lambda v: f"method={v!r} in Python",
    "draws": lambda v: f"--draws {v} --tune {v}",
    "target_accept": lambda v: f"--target-accept {v}",
    "chains": lambda v: f"--chains {v}",
    "stage1_draws": lambda v: f"--stage1-draws {v}",
}
#: The same for the HAP1 fit, whose method has its own flag.
HAP1_WORDING = {**DEMO_WORDING, "method": lambda v: f"--hap1-method {v}"}


@dataclass(frozen=True)
class Settings:
    """How hard the demo samples (``--fast`` shrinks everything)."""

    chains: int = 4
    # 4 x 500 left the default model's leukemia fit at R-hat 1.02 (seed 2024); 1,000 passes
    draws: int = 1000
    tune: int = 1000
    target_accept: float | None = None  # each method's own: NUTS 0.8, stage 1 0.9
    hap1_method: str = "auto"
    hap1_draws: int = 1000
    stage1_draws: int | None = None
    hap1: bool = True
    save_fit: bool = False
    seed: int = 2024
    fast: bool = False


FAST = Settings(chains=2, draws=60, tune=60, hap1_draws=60, hap1=False, fast=True)


def _section(title: str) -> None:
    print(f"\n{_RULE}\n{title}\n{_RULE}", flush=True)


def _staged_outputs(out: Path, names: Sequence[str]) -> Any:
    """An `OutputSet` for the demo's own files in ``out`` (replaced, never refused)."""
    from screenformula.cli.outputs import OutputSet

    return OutputSet([out / n for n in names], force=True)


# ----------------------------------------------------------------- leukemia
def leukemia_data() -> Any:
    """The MAGeCK demo screen as MAGeCK's demo compares it.

    Condition ``final`` against ``initial`` is the treatment factor (``initial`` the
    reference); no sample is a pool; size factors from the AHNAK control guides
    (MAGeCK's ``--norm-method control --control-gene``).
    """
    from screenformula import datasets
    from screenformula.io.screen_data import ScreenData

    raw = datasets.load_mageck_leukemia("sample", initial_as_pool=False, size_factors="none")
    sheet = raw.samples.copy()
    sheet["treatment"] = sheet["condition"].astype(str)
    return ScreenData(
        raw.counts,
        raw.sgrnas,
        raw.genes_of_sgrna,
        sheet,
        controls=raw.controls,
        size_factors="control",
        source=raw.source,
    )


def run_leukemia(out: Path, settings: Settings) -> dict[str, Any]:
    """Fit, contrast, write files and the report for the MAGeCK leukemia screen."""
    import screenformula as sf
    from screenformula import datasets, plotting
    from screenformula.report import Section, write_report

    _section("1. MAGeCK leukemia demo screen: final vs initial (NUTS)")
    data = leukemia_data()
    print(data)
    model = sf.ScreenModel(FORMULA, data, pool=None, reference={"treatment": "initial"})
    print(
        f"\nFormula: {FORMULA}\nFitting with NUTS (nutpie): {settings.chains} chains x "
        f"{settings.tune} warm-up + {settings.draws} draws ...",
        flush=True,
    )
    start = time.perf_counter()
    fit = model.fit(
        draws=settings.draws,
        tune=settings.tune,
        chains=settings.chains,
        random_seed=settings.seed,
        target_accept=settings.target_accept,
        progress=False,
        log_likelihood=False,
    )
    fit_seconds = time.perf_counter() - start
    diag = fit.diagnostics(warn=False)
    problems = diag.attrs.get("problems", [])
    verdict = fit.convergence()
    print(
        f"  fitted in {fit_seconds:.1f} s; divergences: {diag.attrs.get('divergences', 0)}; "
        + (
            "convergence checks passed (R-hat, ESS, divergences)"
            if verdict.trusted
            else "the convergence checks FAILED:"
        )
    )
    if not verdict.trusted:
        print(verdict.message(DEMO_WORDING))
    with warnings.catch_warnings():  # said just above, worded as the demo's flags
        warnings.simplefilter("ignore", UserWarning)
        result = fit.contrast("treatment", ref="initial")
    print(result)

    names = {
        "gene_summary": f"{LEUKEMIA}.gene_summary.txt",
        "sgrna_summary": f"{LEUKEMIA}.sgrna_summary.txt",
        "genes": f"{LEUKEMIA}.genes.tsv",
        "volcano": f"{LEUKEMIA}.volcano.png",
        "rank": f"{LEUKEMIA}.rank.png",
        "forest": f"{LEUKEMIA}.forest.png",
        "comparison": f"{LEUKEMIA}.mageck_comparison.tsv",
        "report": f"{LEUKEMIA}.report.html",
    }
    if settings.save_fit:
        names["fit"] = f"{LEUKEMIA}.fit.nc"
    with _staged_outputs(out, list(names.values())) as outputs:
        staged = {k: outputs.staged(out / v) for k, v in names.items()}
        result.to_mageck(outputs.stage / LEUKEMIA, overwrite=True)
        result.genes.to_csv(staged["genes"], sep="\t", index=False, float_format="%.6g")
        if settings.save_fit:  # about 90 MB: every draw of every guide-level variable
            fit.save(staged["fit"], overwrite=True)
        genes = result.genes
        plotting.volcano_plot(genes, path=staged["volcano"])
        plotting.rank_plot(genes, path=staged["rank"])
        plotting.forest_plot(genes, top=20, path=staged["forest"])

        ours = pd.read_csv(staged["gene_summary"], sep="\t")
        comparison = compare_with_mageck(ours, datasets.mageck_reference_output("gene"))
        comparison["table"].to_csv(staged["comparison"], sep="\t", index=False, float_format="%.6g")
        shown = comparison["table"].head(20).copy()
        shown.attrs["caption"] = "Top 20 depleted genes (ours) beside MAGeCK's ranks"
        section = Section(
            "Comparison with MAGeCK",
            text=(
                f"MAGeCK v0.5.9.2's own output on this screen (mageck test -k sample.txt "
                f"-t HL60.final,KBM7.final -c HL60.initial,KBM7.initial --norm-method control "
                f"--control-gene AHNAK), on the {comparison['n_genes']} genes both tables "
                f"rank.\n\nTop depleted genes by neg|rank shared with MAGeCK: "
                f"{comparison['overlap_top10']} of the top 10, {comparison['overlap_top20']} "
                f"of the top 20. Spearman correlation of gene LFCs: "
                f"{comparison['spearman_lfc']:.3f}; of depletion ranks: "
                f"{comparison['spearman_neg_rank']:.3f}."
            ),
            figures=[mageck_comparison_figure(comparison["table"])],
            tables=[shown],
        )
        write_report(
            fit,
            result,
            staged["report"],
            title="MAGeCK leukemia demo: final vs initial",
            extra=section,
            diagnostics=diag,
            wording=DEMO_WORDING,
        )
        written = outputs.commit()
    print(f"\nWrote {len(written)} files to {out}/ ({', '.join(p.name for p in written)})")
    return {
        "fit_seconds": round(fit_seconds, 1),
        "divergences": int(diag.attrs.get("divergences", 0)),
        "convergence_problems": problems,
        "provisional": result.provisional,
        "advice": verdict.advice(DEMO_WORDING) if not verdict.trusted else None,
        "delta": float(result.settings["delta"]),
        "hits": int(result.genes["hit"].sum()),
        "n_draws": int(result.settings["n_draws"]),
        "report": str(out / names["report"]),
        "top_depleted": _top(result.genes, "down"),
        "top_enriched": _top(result.genes, "up"),
        "mageck": {k: v for k, v in comparison.items() if k != "table"},
    }


def _top(genes: pd.DataFrame, direction: str, n: int = 10) -> list[dict[str, Any]]:
    from screenformula.report.html import top_genes

    rows = top_genes(genes, direction, n)
    return [
        {
            "gene": str(r["gene"]),
            "lfc": round(float(r["lfc"]), 3),
            "hdi": [round(float(r["hdi_low"]), 3), round(float(r["hdi_high"]), 3)],
            "lfsr": float(r["lfsr"]),
            "error": float(min(r["error_down"], r["error_up"])),
            "qvalue": float(r["qvalue"]),
            "hit": bool(r["hit"]),
        }
        for _, r in rows.iterrows()
    ]


def _print_top(title: str, rows: list[dict[str, Any]], n_draws: int) -> None:
    print(f"\n{title}")
    if not rows:
        print("  (none: no gene has a posterior mean LFC of that sign)")
        return

    def prob(value: float) -> str:  # 0 among the draws: below their resolution
        return f"<{1 / (n_draws + 1):.0e}" if value == 0 else f"{value:.3g}"

    print(
        f"  {'gene':<12} {'log2 LFC':>9} {'94% HDI':>18} {'lfsr':>8} {'error':>8} "
        f"{'q-value':>8}  hit"
    )
    for r in rows:
        hdi = f"[{r['hdi'][0]:+.2f}, {r['hdi'][1]:+.2f}]"
        print(
            f"  {r['gene']:<12} {r['lfc']:>+9.2f} {hdi:>18} {prob(r['lfsr']):>8} "
            f"{prob(r['error']):>8} {prob(r['qvalue']):>8}  {'yes' if r['hit'] else ''}"
        )


# --------------------------------------------------------------------- HAP1
def run_hap1(out: Path, settings: Settings) -> dict[str, Any]:
    """Fit the HAP1 TKOv3 screen with the default method and score it on CEGv2/NEGv1."""
    import screenformula as sf
    from screenformula import datasets
    from screenformula.io.screen_data import ScreenData
    from screenformula.report import Section, write_report

    _section("2. HAP1 TKOv3 genome-wide dropout screen: T18 vs T0")
    raw = datasets.load_hap1_tkov3(t0_as_pool=False)
    sheet = raw.samples.copy()
    sheet["treatment"] = sheet["condition"].astype(str)
    data = ScreenData(
        raw.counts,
        raw.sgrnas,
        raw.genes_of_sgrna,
        sheet,
        controls=raw.controls,
        size_factors="median",
        source=raw.source,
    )
    print(data)
    model = sf.ScreenModel(FORMULA, data, pool=None, reference={"treatment": "T0"})
    stage1 = _hap1_stage1(settings, data.n_genes)
    print(
        f"\nFitting with method={settings.hap1_method!r}, {settings.hap1_draws} draws"
        + (f" (stage 1: {settings.stage1_draws} draws)" if stage1 else "")
        + " ..."
    )
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # an approximate method's notice
        fit = model.fit(
            settings.hap1_method,
            draws=settings.hap1_draws,
            random_seed=settings.seed,
            progress=False,
            store_sgrna=False,
            log_likelihood=False,
            target_accept=settings.target_accept,  # HAP1's NUTS, or its stage 1
            **stage1,
        )
    fit_seconds = time.perf_counter() - start
    with warnings.catch_warnings():  # said below, worded as the demo's flags
        warnings.simplefilter("ignore", ConvergenceWarning)
        result = fit.contrast("treatment", ref="T0", delta=HAP1_DELTA, fdr_target=0.05)
    genes = result.genes
    print(f"  fitted in {fit_seconds:.1f} s ({fit.method})")
    if fit.options.get("auto"):
        print(f"  {fit.options['auto']}")
    checks = _convergence_lines(fit)
    for line in checks:
        print(f"  {line}")
    verdict = fit.convergence()
    advice = None if verdict.trusted or verdict.approximate else verdict.advice(HAP1_WORDING)
    if advice:
        print(f"  To fix: {advice}.")
    print(result)

    ref = datasets.load_reference_genes()
    essential, nonessential = set(ref["essential"]), set(ref["nonessential"])
    scored, scores, positive = depletion_scores(genes, essential, nonessential)
    auc = roc_auc(scores, positive)
    naive = naive_gene_lfc(data, "treatment", "T18", "T0").reindex(scored["gene"])
    naive_scores = -naive.to_numpy(dtype=float)
    naive_auc = roc_auc(naive_scores, positive)
    down = genes["hit"] & (genes["direction"] == "down")
    calls = {
        "essential": int((down & genes["gene"].isin(essential)).sum()),
        "nonessential": int((down & genes["gene"].isin(nonessential)).sum()),
    }
    print(
        f"  ROC AUC, CEGv2 ({positive.sum()}) vs NEGv1 ({(~positive).sum()}) by gene LFC: "
        f"{auc:.4f} (MAGeCK: {MAGECK_HAP1_AUC}; model-free mean guide log ratio: "
        f"{naive_auc:.4f})"
    )
    print(
        f"  Depleted, each call's own error <= 0.05 (|LFC| > {HAP1_DELTA}): "
        f"{calls['essential']} CEGv2 and "
        f"{calls['nonessential']} NEGv1 genes (MAGeCK at 5 % FDR: "
        f"{MAGECK_HAP1_CALLS['essential']} and {MAGECK_HAP1_CALLS['nonessential']})"
    )

    names = {
        "gene_summary": f"{HAP1}.gene_summary.txt",
        "genes": f"{HAP1}.genes.tsv",
        "report": f"{HAP1}.report.html",
    }
    with _staged_outputs(out, list(names.values())) as outputs:
        staged = {k: outputs.staged(out / v) for k, v in names.items()}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # no sgrna_summary without guide draws
            result.to_mageck(outputs.stage / HAP1, overwrite=True)
        genes.to_csv(staged["genes"], sep="\t", index=False, float_format="%.6g")
        section = Section(
            "Essential-gene benchmark (CEGv2 vs NEGv1)",
            text=(
                f"How well do gene LFCs separate Hart et al.'s {int(positive.sum())} "
                f"core-essential genes (CEGv2) from the {int((~positive).sum())} non-essential "
                f"genes (NEGv1) found in this library? ROC AUC {auc:.4f} (MAGeCK on the same "
                f"screen: {MAGECK_HAP1_AUC}; a model-free baseline, each gene's mean guide "
                f"log2 ratio of normalised counts, gives {naive_auc:.4f}).\n\n"
                f"Depletion calls, each with at most a 5 % chance of not being depleted "
                f"beyond |LFC| = {HAP1_DELTA} log2 (so at most 5 % FDR): "
                f"{calls['essential']} CEGv2 and {calls['nonessential']} NEGv1 genes "
                f"(MAGeCK, neg|fdr <= 0.05: {MAGECK_HAP1_CALLS['essential']} and "
                f"{MAGECK_HAP1_CALLS['nonessential']}). Fitted with {fit.method} in "
                f"{fit_seconds:.0f} s. " + " ".join(checks)
            ),
            figures=[
                roc_figure(
                    [
                        (f"screenformula, {fit.method}", scores, positive, auc),
                        ("mean guide log ratio", naive_scores, positive, naive_auc),
                    ]
                )
            ],
        )
        write_report(
            fit,
            result,
            staged["report"],
            title="HAP1 TKOv3 dropout screen: T18 vs T0",
            extra=section,
            wording=HAP1_WORDING,
        )
        written = outputs.commit()
    print(f"\nWrote {len(written)} files to {out}/ ({', '.join(p.name for p in written)})")
    return {
        "method": fit.method,
        "fit_seconds": round(fit_seconds, 1),
        "auc_cegv2_vs_negv1": round(auc, 4),
        "auc_mean_guide_log_ratio": round(naive_auc, 4),
        "mageck_auc": MAGECK_HAP1_AUC,
        "depleted_calls": calls,
        "mageck_calls": MAGECK_HAP1_CALLS,
        "delta": HAP1_DELTA,
        "convergence": checks,
        "provisional": result.provisional,
        "advice": advice,
        "hits": int(genes["hit"].sum()),
        "report": str(out / names["report"]),
        "top_depleted": _top(genes, "down"),
    }


def _hap1_stage1(settings: Settings, n_genes: int) -> dict[str, int]:
    """``fit`` keywords of ``--stage1-draws`` (none when not given or not two-stage)."""
    from screenformula.inference.registry import choose_method, get_method

    if settings.stage1_draws is None:
        return {}
    method = settings.hap1_method
    chosen = choose_method(n_genes)[0] if method == "auto" else get_method(method)
    if chosen.name != "two-stage":
        return {}
    return {"stage1_draws": settings.stage1_draws, "stage1_tune": settings.stage1_draws}


def _convergence_lines(fit: Any) -> list[str]:
    """What the fit's own checks say, in a line or two (empty problems: a clean bill)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = fit.diagnostics(warn=False)
    problems = table.attrs.get("problems", [])
    if not problems:
        return ["Convergence checks passed (R-hat, ESS, divergences; per-gene k-hat and HMC)."]
    return [f"Convergence checks did not all pass: {'; '.join(problems)}."]


# --------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    """The demo's command line."""
    p = argparse.ArgumentParser(
        prog="python -m screenformula.demo",
        description=(
            "Fit the bundled MAGeCK leukemia screen with NUTS and the HAP1 TKOv3 genome-wide "
            "screen with the default method (the two-stage engine), write MAGeCK-compatible "
            "files, figures and one-page HTML reports, and compare with MAGeCK."
        ),
    )
    p.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="output folder (default: demo-output); only the demo's files are replaced",
    )
    p.add_argument(
        "--fast",
        action="store_true",
        help="smoke test: tiny draws, no HAP1 (results not meaningful)",
    )
    p.add_argument("--no-hap1", action="store_true", help="skip the HAP1 genome-wide screen")
    p.add_argument("--seed", type=int, default=Settings.seed, help="random seed")
    p.add_argument(
        "--save-fit",
        action="store_true",
        help="also save the leukemia fit (leukemia.fit.nc, about 90 MB) for "
        "`screenformula contrast` / `screenformula plot`",
    )
    p.add_argument("--chains", type=int, help=f"NUTS chains (default {Settings.chains})")
    p.add_argument("--draws", type=int, help=f"NUTS draws per chain (default {Settings.draws})")
    p.add_argument("--tune", type=int, help=f"NUTS warm-up per chain (default {Settings.tune})")
    p.add_argument(
        "--target-accept",
        type=float,
        help="NUTS target acceptance, both screens (default: each method's own, 0.8 for "
        "NUTS and 0.9 for the two-stage engine's stage 1)",
    )
    p.add_argument(
        "--hap1-method",
        choices=method_names(),
        help=f"how to fit HAP1 (default {Settings.hap1_method!r}: the two-stage engine)",
    )
    p.add_argument(
        "--stage1-draws",
        type=int,
        metavar="N",
        help="HAP1 with the two-stage engine: draws and warm-up per chain of its stage 1 "
        "(default: up to 10,000 draws, stopping once converged, after 1,000 warm-up)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; returns the exit status."""
    import matplotlib

    matplotlib.use("Agg")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.stage1_draws is not None:
        if args.stage1_draws < 1:
            parser.error("--stage1-draws must be at least 1")
        if args.hap1_method not in (None, "auto", "two-stage"):
            parser.error(f"--stage1-draws does not apply to --hap1-method {args.hap1_method}")
    settings = FAST if args.fast else Settings()
    chosen = {
        k: v
        for k, v in (
            ("chains", args.chains),
            ("draws", args.draws),
            ("tune", args.tune),
            ("target_accept", args.target_accept),
            ("hap1_method", args.hap1_method),
            ("stage1_draws", args.stage1_draws),
        )
        if v is not None
    }
    settings = Settings(
        **{
            **settings.__dict__,
            **chosen,
            "seed": args.seed,
            "hap1": settings.hap1 and not args.no_hap1,
            "save_fit": args.save_fit,
        }
    )
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(
        "screenformula demo"
        + (" (--fast: tiny draws, results not meaningful)" if settings.fast else "")
    )
    print(f"Output folder: {out.resolve()}")

    summary: dict[str, Any] = {"settings": settings.__dict__, "load_average_at_start": load}
    summary[LEUKEMIA] = leukemia_summary = run_leukemia(out, settings)
    mageck = leukemia_summary["mageck"]
    n_draws = leukemia_summary["n_draws"]
    _print_top("Top depleted genes (final vs initial):", leukemia_summary["top_depleted"], n_draws)
    _print_top("Top enriched genes:", leukemia_summary["top_enriched"][:5], n_draws)
    print(
        f"\nAgainst MAGeCK's reference output ({mageck['n_genes']} genes): top-10 overlap "
        f"{mageck['overlap_top10']}/10, top-20 overlap {mageck['overlap_top20']}/20, "
        f"Spearman of LFCs {mageck['spearman_lfc']:.3f}, of depletion ranks "
        f"{mageck['spearman_neg_rank']:.3f}"
    )
    print(f"  ours:   {', '.join(mageck['ours_top20'][:10])}")
    print(f"  MAGeCK: {', '.join(mageck['mageck_top20'][:10])}")

    if not settings.hap1:
        summary[HAP1] = {"skipped": "--fast" if settings.fast else "--no-hap1"}
    else:
        summary[HAP1] = run_hap1(out, settings)

    total = time.perf_counter() - start
    summary["total_seconds"] = round(total, 1)
    summary_path = out / "demo-summary.json"
    from screenformula.io.atomic import write_text_atomic

    write_text_atomic(summary_path, json.dumps(summary, indent=1, default=str) + "\n")

    _section("Done")
    if leukemia_summary["provisional"]:
        print(
            "The leukemia fit did NOT pass its convergence checks: its hits are provisional "
            f"(to fix: {leukemia_summary['advice']})."
        )
    print(f"Report: {Path(summary[LEUKEMIA]['report']).resolve()}")
    if "report" in summary[HAP1]:
        print(f"Report (HAP1): {Path(summary[HAP1]['report']).resolve()}")
        print(
            f"HAP1 ROC AUC (CEGv2 vs NEGv1): {summary[HAP1]['auc_cegv2_vs_negv1']:.4f} "
            f"(MAGeCK: {MAGECK_HAP1_AUC})"
        )
        if summary[HAP1]["advice"]:
            print(
                "The HAP1 fit did NOT pass its convergence checks: its hits are provisional "
                f"(to fix: {summary[HAP1]['advice']})."
            )
    print(f"Summary: {summary_path.resolve()}")
    print(f"Demo finished in {total:.1f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
