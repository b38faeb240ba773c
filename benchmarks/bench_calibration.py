"""Calibration of the contrast summaries on simulated screens with known truth.

For each simulated screen (``simulate_screen``: 200 genes x 4 guides, one pool sample,
control and one treatment in triplicate, 10 gene groups), fit the seed's nested model
``count ~ 1 + treatment + (1 + treatment | group/gene/sgrna)`` with NUTS and measure:

- realised FDR of the hits at q = 0.05: the share of called genes whose true LFC is 0
  or of the other sign (``delta = 0``), and, with ``delta = 0.5`` (log2), whose true |LFC|
  is at most delta or of the other sign; also the share of true effects found (power) and,
  for ``delta = 0``, the share of wrong signs among calls on genes with a true effect;
- coverage of the central 90 % posterior intervals of the gene LFCs (all genes, and split
  into genes with a true effect and genes without);

each against the simulated truth ("raw") and against the truth on the scale the counts
identify ("norm."): the true LFC plus the offset the estimated size factors put on every
LFC (``normalisation_offset``; 0 with ``--true-sf-seeds`` screens, which are refitted
with the true size factors to isolate normalisation from the contrast summaries);
- whether the true top (bottom) gene group has the highest ``prob_top`` (``prob_bottom``).

Two kinds of screens: ``hits`` (spike-and-slab: 10 % of genes have an effect, the rest
exactly 0; two hit groups) and ``normal`` (effects drawn from the model's own
hierarchical prior, where coverage should be nominal). Prints a Markdown table.

    nice -n 10 .venv/bin/python benchmarks/bench_calibration.py
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

import screenformula as sf

FORMULA = "count ~ 1 + treatment + (1 + treatment | group/gene/sgrna)"
RESULTS = Path(__file__).resolve().parent / "results"
LOG2 = np.log(2.0)


def one_screen(kind: str, seed: int, size_factors: str, args: argparse.Namespace) -> dict:
    """Simulate, fit and score one screen."""
    data, truth = sf.simulate_screen(
        n_genes=args.genes,
        n_groups=args.groups,
        frac_group_hits=0.2,
        gene_effects=kind,
        size_factors=size_factors,
        random_seed=seed,
    )
    start = time.perf_counter()
    name = f"{kind}_{seed}" + ("" if size_factors == "median" else f"_{size_factors}")
    saved = Path(args.fits) / f"{name}.nc" if args.fits else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if saved is not None and saved.exists():
            fit = sf.load_fit(saved)  # re-score a fit made by an earlier run
        else:
            fit = sf.ScreenModel(FORMULA, data).fit(
                draws=args.draws,
                tune=args.tune,
                chains=args.chains,
                progress=False,
                random_seed=seed,
            )
            if saved is not None:
                saved.parent.mkdir(parents=True, exist_ok=True)
                fit.save(saved)
        diag = fit.diagnostics(warn=False)
    seconds = time.perf_counter() - start
    out = {
        "kind": kind,
        "seed": seed,
        "size_factors": size_factors,
        "fit_seconds": round(seconds, 1),
        "rhat_max": float(diag["rhat_max"].max()),
        "divergences": int(diag.attrs["divergences"]),
    }
    true_ln = truth.lfc_table()["treated"].reindex(data.gene_names).to_numpy()
    norm_ln = true_ln + normalisation_offset(data, truth)
    out["norm_offset"] = float(norm_ln[0] - true_ln[0])
    for delta in (0.0, 0.5):
        # the q-value rule (hits at q <= 0.05); the default local rule is scored beside it
        res = fit.contrast(delta=delta, fdr_target=0.05, call_rule="qvalue")
        genes = res.genes.set_index("gene").loc[data.gene_names]
        sign = np.sign(genes["lfc"].to_numpy())
        local = np.minimum(genes["error_down"], genes["error_up"]).to_numpy() <= 0.05
        for key, called in ((f"d{delta:g}", genes["hit"].to_numpy()), (f"d{delta:g}_local", local)):
            out[f"{key}_called"] = int(called.sum())
            for scale, truth_ln in (("", true_ln), ("norm_", norm_ln)):
                real = np.abs(truth_ln) > delta * LOG2
                false = called & (~real | (np.sign(truth_ln) != sign))
                out[f"{key}_{scale}false"] = int(false.sum())
                out[f"{key}_{scale}fdp"] = float(false.sum() / max(called.sum(), 1))
                out[f"{key}_{scale}power"] = float((called & ~false).sum() / max(real.sum(), 1))
        called = genes["hit"].to_numpy()
        if delta == 0.0:
            nonzero = called & (true_ln != 0)
            wrong = nonzero & (np.sign(true_ln) != sign)
            out["d0_false_sign"] = float(wrong.sum() / max(nonzero.sum(), 1))
            draws = res.draws["gene"].values[:, :, 0]
            low, high = np.quantile(draws, [0.05, 0.95], axis=0)
            for scale, truth_ln in (("", true_ln), ("norm_", norm_ln)):
                inside = (low <= truth_ln) & (truth_ln <= high)
                out[f"{scale}coverage90"] = float(inside.mean())
            q25, q75 = np.quantile(draws, [0.25, 0.75], axis=0)
            out["norm_coverage50"] = float(((q25 <= norm_ln) & (norm_ln <= q75)).mean())
            out["lfsr_bins"] = lfsr_calibration(genes["lfsr"].to_numpy(), sign, norm_ln)
            inside = (low <= true_ln) & (true_ln <= high)
            effect = true_ln != 0
            out["coverage90_effect"] = float(inside[effect].mean()) if effect.any() else None
            out["coverage90_null"] = float(inside[~effect].mean()) if (~effect).any() else None
            groups = res.groups.set_index("group")
            true_groups = truth.groups.set_index("group")["effect"].reindex(groups.index)
            out["top_group_ok"] = _extreme_ok(true_groups, groups["prob_top"], largest=True)
            out["bottom_group_ok"] = _extreme_ok(true_groups, groups["prob_bottom"], largest=False)
    if kind == "normal":  # the hyper-parameters are the model's own only in these screens
        out["hyper"] = hyper_coverage(fit, truth, out["norm_offset"])
    return out


#: lfsr bins for the calibration check: realised wrong-sign rate vs mean lfsr per bin.
LFSR_EDGES = (0.0, 0.01, 0.05, 0.1, 0.2, 0.5)


def lfsr_calibration(lfsr: np.ndarray, sign: np.ndarray, truth_ln: np.ndarray) -> list[dict]:
    """Per lfsr bin: genes, summed lfsr (the expected wrong signs) and realised wrong signs.

    A gene's sign is wrong when the true LFC (normalised scale) is 0 or of the other sign
    than its posterior mean, which is what the lfsr bounds.
    """
    wrong = np.sign(truth_ln) != sign
    bins = []
    for low, high in zip(LFSR_EDGES[:-1], LFSR_EDGES[1:], strict=True):
        inside = (lfsr > low if low > 0 else lfsr >= 0) & (lfsr <= high)
        bins.append(
            {
                "low": low,
                "high": high,
                "n": int(inside.sum()),
                "expected": float(lfsr[inside].sum()),
                "wrong": int(wrong[inside].sum()),
            }
        )
    return bins


def hyper_coverage(fit, truth, norm_offset: float) -> dict[str, list[bool]]:
    """Whether each hyper-parameter's true value lies in its central 50 % and 90 % intervals.

    Group, gene and guide sds (intercept and treatment), the gene and guide intercept-slope
    correlations, and the population treatment slope (on the normalised scale).
    """
    post = fit.posterior
    p = truth.params
    targets = []
    for level, tau in (("group", "tau_group"), ("gene", "tau_gene"), ("sgrna", "tau_sgrna")):
        values = post[f"sd_{level}"].values.reshape(-1, 2)
        targets += [
            (f"sd_{level}[intercept]", values[:, 0], p[tau]["intercept"]),
            (f"sd_{level}[treated]", values[:, 1], p[tau]["treated"]),
        ]
    for level, cor in (("gene", "gene_correlation"), ("sgrna", "sgrna_correlation")):
        values = post[f"cor_{level}"].values  # the pairs (chain, draw, pair); before: matrices
        draws = values.reshape(-1) if values.ndim == 3 else values.reshape(-1, 2, 2)[:, 0, 1]
        targets.append((f"cor_{level}", draws, float(np.asarray(p[cor])[0][1])))
    b = post["b"].sel(b_coef="treatment[treated]").values.ravel()
    targets.append(("b[treated]", b, p["b"]["treated"] + norm_offset))
    out = {}
    for name, draws, true in targets:
        q05, q25, q75, q95 = np.quantile(draws, [0.05, 0.25, 0.75, 0.95])
        out[name] = [bool(q25 <= true <= q75), bool(q05 <= true <= q95)]
    return out


def normalisation_offset(data: sf.ScreenData, truth) -> float:
    """What the estimated size factors add to every LFC (treated vs control, natural log).

    Counts are ``L_true * exp(eta)`` while the model uses ``L_est``, so the LFC it can
    identify is the true LFC plus the mean of ``log(L_true / L_est)`` over the treated
    samples minus that over the control samples (0 with the true size factors).
    """
    true_sf = truth.samples.set_index("sample")["size_factor"].reindex(data.size_factors.index)
    shift = np.log(true_sf / data.size_factors)  # over the samples ``data`` keeps
    treatment = data.samples["treatment"].astype(str)
    return float(shift[treatment == "treated"].mean() - shift[treatment == "control"].mean())


def _extreme_ok(true, prob, largest: bool):
    """Whether the true extreme group has the highest probability (None: no clear extreme)."""
    values = true.to_numpy()
    best = values.max() if largest else values.min()
    if (largest and best <= 0) or (not largest and best >= 0):
        return None  # the hit groups all go the other way: no group stands out
    if np.sum(values == best) > 1:
        return None
    return bool(true.index[np.argmax(values == best)] == prob.idxmax())


def _fmt(v, pct: bool = False) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "no"
    return f"{v:.1%}" if pct else f"{v:.3g}"


def _pair(r: dict, raw: str, norm: str) -> str:
    return f"{_fmt(r[raw], True)} / {_fmt(r[norm], True)}"


def _local(r: dict) -> str:
    if "d0.5_local_called" not in r:  # a row stored before the local rule was scored
        return "-"
    return (
        f"{r['d0.5_local_called']} / {_fmt(r['d0.5_local_fdp'], True)} / "
        f"{_fmt(r['d0.5_local_power'], True)}"
    )


COLUMNS = [
    ("screen", lambda r: r["kind"]),
    ("seed", lambda r: r["seed"]),
    ("size factors", lambda r: r["size_factors"]),
    ("LFC offset", lambda r: f"{r['norm_offset']:+.3f}"),
    ("hits (d=0)", lambda r: r["d0_called"]),
    ("FDP (d=0)", lambda r: _fmt(r["d0_fdp"], True)),
    ("false signs (d=0)", lambda r: _fmt(r["d0_false_sign"], True)),
    ("hits (d=0.5)", lambda r: r["d0.5_called"]),
    ("FDP (d=0.5) raw / norm.", lambda r: _pair(r, "d0.5_fdp", "d0.5_norm_fdp")),
    ("power (d=0.5)", lambda r: _fmt(r["d0.5_power"], True)),
    ("local rule (d=0.5): hits / FDP / power", lambda r: _local(r)),
    ("cover 90% raw / norm.", lambda r: _pair(r, "coverage90", "norm_coverage90")),
    ("cover 50% norm.", lambda r: _fmt(r.get("norm_coverage50"), True)),
    (
        "cover: effect / null",
        lambda r: f"{_fmt(r['coverage90_effect'], True)} / {_fmt(r['coverage90_null'], True)}",
    ),
    ("top group", lambda r: _fmt(r["top_group_ok"])),
    ("bottom group", lambda r: _fmt(r["bottom_group_ok"])),
    ("R-hat max", lambda r: f"{r['rhat_max']:.3f}"),
    ("div.", lambda r: r["divergences"]),
]


def markdown(rows: list[dict]) -> str:
    """The results as a Markdown table plus averages."""
    lines = [
        "| " + " | ".join(name for name, _ in COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for r in rows:
        lines.append("| " + " | ".join(str(get(r)) for _, get in COLUMNS) + " |")
    for label, subset in (
        ("median-of-ratios size factors", [r for r in rows if r["size_factors"] == "median"]),
        ("true size factors", [r for r in rows if r["size_factors"] == "true"]),
    ):
        if not subset:
            continue

        def mean(key: str, rows: list[dict] = subset) -> float:
            return float(np.mean([r[key] for r in rows]))

        tops = [
            r[k] for r in subset for k in ("top_group_ok", "bottom_group_ok") if r[k] is not None
        ]
        lines += [
            "",
            f"{label} ({len(subset)} screens), means over screens:",
            f"- realised FDR of hits at q = 0.05 with delta = 0.5 log2: {mean('d0.5_fdp'):.1%} "
            f"against the simulated truth, {mean('d0.5_norm_fdp'):.1%} against the truth on "
            "the normalised scale",
            *(
                [
                    f"- the local rule (the default: each call's own error <= 0.05), delta "
                    f"0.5: realised FDR {mean('d0.5_local_fdp'):.1%} against the simulated "
                    f"truth, {mean('d0.5_local_norm_fdp'):.1%} on the normalised scale; "
                    f"power {mean('d0.5_local_power'):.1%} (q-value rule: "
                    f"{mean('d0.5_power'):.1%})"
                ]
                if all("d0.5_local_fdp" in r for r in subset)
                else []
            ),
            f"- with delta = 0: {mean('d0_fdp'):.1%} (genes with a true LFC of exactly 0 "
            f"count as false); wrong signs among calls on genes with an effect: "
            f"{mean('d0_false_sign'):.1%}",
            f"- coverage of central 90% intervals of gene LFCs: {mean('coverage90'):.1%} "
            f"(normalised scale: {mean('norm_coverage90'):.1%})",
            f"- the true extreme group has the highest prob_top / prob_bottom: {sum(tops)} of "
            f"{len(tops)} cases with a clear extreme",
        ]
    lines += ["", *lfsr_table(rows), "", *hyper_table(rows)]
    return "\n".join(lines)


def lfsr_table(rows: list[dict]) -> list[str]:
    """Expected (summed lfsr) vs realised wrong signs per lfsr bin, over every screen."""
    scored = [r["lfsr_bins"] for r in rows if "lfsr_bins" in r]
    if not scored:
        return []
    out = [
        f"lfsr calibration ({len(scored)} screens, delta = 0, normalised scale): genes per "
        "lfsr bin, the wrong signs the lfsr predicts (its sum) and those realised.",
        "",
        "| lfsr | genes | expected wrong signs | realised | realised rate |",
        "|---|---|---|---|---|",
    ]
    for k, first in enumerate(scored[0]):
        n = sum(b[k]["n"] for b in scored)
        expected = sum(b[k]["expected"] for b in scored)
        wrong = sum(b[k]["wrong"] for b in scored)
        rate = f"{wrong / n:.1%}" if n else "n/a"
        out.append(
            f"| ({first['low']:g}, {first['high']:g}] | {n} | {expected:.1f} | {wrong} | {rate} |"
        )
    return out


def hyper_table(rows: list[dict]) -> list[str]:
    """Share of `normal` screens whose true hyper-parameter lies in the 50 % / 90 % interval."""
    scored = [r["hyper"] for r in rows if "hyper" in r]
    if not scored:
        return []
    out = [
        f"Hyper-parameter coverage ({len(scored)} `normal` screens, effects drawn from the "
        "model's prior): how many screens' central 50 % / 90 % intervals hold the truth.",
        "",
        "| parameter | in 50 % interval | in 90 % interval |",
        "|---|---|---|",
    ]
    for name in scored[0]:
        in50 = sum(h[name][0] for h in scored)
        in90 = sum(h[name][1] for h in scored)
        out.append(f"| {name} | {in50} of {len(scored)} | {in90} of {len(scored)} |")
    total = sum(len(h) for h in scored)
    in50 = sum(v[0] for h in scored for v in h.values())
    in90 = sum(v[1] for h in scored for v in h.values())
    out.append(f"| all | {in50 / total:.0%} | {in90 / total:.0%} |")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hits-seeds", type=int, nargs="*", default=[1, 2, 3, 4])
    parser.add_argument("--normal-seeds", type=int, nargs="*", default=[11, 12])
    parser.add_argument(
        "--true-sf-seeds",
        type=int,
        nargs="*",
        default=[1, 2],
        help="hits screens refit with the true size factors (isolates normalisation)",
    )
    parser.add_argument("--genes", type=int, default=200)
    parser.add_argument("--groups", type=int, default=10)
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--tune", type=int, default=500)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument(
        "--json",
        type=Path,
        default=RESULTS / "calibration.json",
        help="the raw results (the README's table is made from the default file)",
    )
    parser.add_argument("--fits", help="save fits here (and reuse those already there)")
    args = parser.parse_args()
    rows = []
    screens = [("hits", s, "median") for s in args.hits_seeds]
    screens += [("normal", s, "median") for s in args.normal_seeds]
    screens += [("hits", s, "true") for s in args.true_sf_seeds]
    for kind, seed, size_factors in screens:
        rows.append(one_screen(kind, seed, size_factors, args))
        print(json.dumps(rows[-1]), flush=True)
    print()
    print(markdown(rows))
    args.json.write_text(json.dumps(rows, indent=1))
    args.json.with_suffix(".md").write_text(markdown(rows) + "\n")
    if args.json == RESULTS / "calibration.json":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import update_readme

        update_readme.main([])


if __name__ == "__main__":
    main()
