"""Speed of the contrast core at genome scale, as ratios (never timed unit tests).

20,000 genes x 4,000 draws (the size of a genome-wide fit with 4 chains x 1,000 draws):
each summary is timed as a multiple of a plain ``numpy.mean(draws, axis=0)`` over the
same array, measured in the same process, so the figure does not depend on the machine.

    nice -n 10 .venv/bin/python benchmarks/bench_contrasts.py [--genes 20000 --draws 4000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import xarray as xr

import screenformula as sf
from screenformula.results import contrast_core as core
from screenformula.results.fit import ScreenFit

FORMULA = "count ~ 1 + treatment + (1 + treatment | gene) + (1 + treatment | gene:sgrna)"


def best_of(fn, repeat: int = 3) -> float:
    """Fastest of ``repeat`` wall-clock runs, in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def genome_fit(n_genes: int, n_draws: int) -> ScreenFit:
    """A fit of the seed's model with a random posterior, as a genome-scale fit stores it
    (no guide-level draws), so ``ScreenFit.contrast`` can be timed without sampling."""
    data, _ = sf.simulate_screen(n_genes=n_genes, n_pool_samples=0, random_seed=0)
    model = sf.ScreenModel(FORMULA, data)
    gene = next(t for t in model.spec.groups if t.level == "gene")
    rng = np.random.default_rng(1)
    posterior = xr.Dataset(
        {
            "Intercept": (("chain", "draw"), rng.normal(5, 0.1, (1, n_draws))),
            "b": (("chain", "draw", "b_coef"), rng.normal(0, 0.1, (1, n_draws, 1))),
            "r_gene": (
                ("chain", "draw", "gene", "gene_coef"),
                rng.normal(0, 0.3, (1, n_draws, n_genes, 2)),
            ),
        },
        coords={
            "b_coef": list(model.spec.mean.common.names),
            "gene": list(gene.level_names),
            "gene_coef": list(gene.coef_names),
        },
    )
    idata = xr.DataTree.from_dict({"posterior": posterior})
    return ScreenFit(model, idata, "nuts", {"store_sgrna": False})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genes", type=int, default=20_000)
    parser.add_argument("--draws", type=int, default=4_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    draws = rng.normal(0.0, 1.0, (args.draws, args.genes)) + rng.normal(0, 1, args.genes)

    base = best_of(lambda: np.mean(draws, axis=0), args.repeat)
    cases = {
        "summarize (all columns, delta=0.5)": lambda: core.summarize(draws, delta=0.5),
        "hdi only": lambda: core.hdi(draws, 0.94),
        "prob_top + prob_bottom": lambda: (
            core.prob_extreme(draws),
            core.prob_extreme(draws, largest=False),
        ),
    }
    print(f"{args.genes:,} genes x {args.draws:,} draws; numpy mean = {base * 1e3:.0f} ms")
    for name, fn in cases.items():
        seconds = best_of(fn, args.repeat)
        print(f"{name:<38} {seconds / base:7.1f} x numpy mean  ({seconds:.2f} s)")
    fit = genome_fit(args.genes, args.draws)
    seconds = best_of(lambda: fit.contrast(delta=0.5), 1)
    print(
        f"{'ScreenFit.contrast (extract + tables)':<38} {seconds / base:7.1f} x numpy mean  "
        f"({seconds:.2f} s)"
    )


if __name__ == "__main__":
    main()
