"""Pool component: does modelling the plasmid/T0 sample improve gene LFCs?

Simulates screens where a guide's starting abundance and its treatment response are
correlated (``sgrna_correlation``), fits the same formula with ``pool="joint"``,
``"offset"``, ``"covariate"`` and without the pool (the pool samples removed), and
records per mode: RMSE of gene LFC posterior means against the truth, coverage of
central 90% intervals, the recovered guide-level correlation (joint), and wall time
relative to the joint fit (same process).

Run: .venv/bin/python benchmarks/bench_pool.py [--seeds 3] [--genes 300]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np

import screenformula as sf

FORMULA = "count ~ 1 + treatment + (1 + treatment | gene) + (1 + treatment | gene:sgrna)"
COEF = "treatment[treated]"
OUT = Path(__file__).parent / "results"


def gene_lfc(fit):
    post = fit.posterior
    draws = post["b"].sel(b_coef=COEF) + post["r_gene"].sel(gene_coef=COEF)
    return draws.stack(sample=("chain", "draw")).transpose("gene", "sample")


def run(seed: int, n_genes: int, draws: int) -> list[dict]:
    data, truth = sf.simulate_screen(
        n_genes=n_genes,
        gene_effects="normal",
        tau_sgrna=(1.0, 0.5),
        sgrna_correlation=-0.6,
        n_replicates=2,
        random_seed=seed,
    )
    true = truth.genes.set_index("gene")["lfc"]
    rows = []
    for mode in ("joint", "offset", "covariate", None):
        d = data if mode else data.subset(samples=list(data.screen_samples))
        model = sf.ScreenModel(FORMULA, d, pool=mode)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = model.fit(draws=draws, tune=draws, chains=2, random_seed=seed, progress=False)
        wall = time.perf_counter() - start
        lfc = gene_lfc(fit)
        t = true.loc[lfc["gene"].values].to_numpy()
        mean = lfc.mean("sample").values
        lo, hi = np.quantile(lfc.values, [0.05, 0.95], axis=1)
        row = {
            "seed": seed,
            "pool": str(mode),
            "rmse": float(np.sqrt(np.mean((mean - t) ** 2))),
            "coverage90": float(np.mean((t >= lo) & (t <= hi))),
            "mean_sd": float(lfc.std("sample").mean()),
            "wall_s": round(wall, 1),
            "divergences": fit.diagnostics(warn=False).attrs["divergences"],
        }
        if "cor_sgrna" in fit.posterior:
            row["cor_sgrna"] = float(fit.posterior["cor_sgrna"].isel(sgrna_cor=0).mean())
        rows.append(row)
        print(row, flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--genes", type=int, default=300)
    parser.add_argument("--draws", type=int, default=500)
    args = parser.parse_args()
    rows = [r for seed in range(args.seeds) for r in run(100 + seed, args.genes, args.draws)]
    OUT.mkdir(exist_ok=True)
    (OUT / "pool.json").write_text(json.dumps(rows, indent=1))
    import pandas as pd

    table = pd.DataFrame(rows).groupby("pool")[["rmse", "coverage90", "mean_sd", "wall_s"]].mean()
    joint = table.loc["joint"]
    table["rmse_vs_joint"] = table["rmse"] / joint["rmse"]
    table["time_vs_joint"] = table["wall_s"] / joint["wall_s"]
    cor = pd.DataFrame(rows).dropna(subset=["cor_sgrna"]).groupby("pool")["cor_sgrna"].mean()
    text = table.round(3).to_string() + "\n\nrecovered guide-level correlation (truth -0.6):\n"
    text += cor.round(3).to_string() + "\n"
    (OUT / "pool.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
