"""A few-second tour of screenformula's data side (``make demo``).

Loads the two bundled real screens, checks them, compares size-factor methods, and
simulates a screen from the model, checking its counts against the negative-binomial
parameters they were drawn from. Run with ``python -m screenformula.demo``.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pandas as pd

from screenformula import datasets
from screenformula.io.screen_data import ScreenData
from screenformula.simulate import simulate_screen

_RULE = "=" * 78


def _section(title: str) -> None:
    print(f"\n{_RULE}\n{title}\n{_RULE}")


def validate(data: ScreenData) -> list[str]:
    """Check a ScreenData for the problems a fit would trip over.

    Parameters
    ----------
    data : ScreenData
        The screen to check.

    Returns
    -------
    list of str
        One line per problem found (empty when the screen looks fit to model).
    """
    problems: list[str] = []
    if data.counts.dtype != np.int64 or np.any(data.counts < 0):
        problems.append("counts are not non-negative int64")
    if data.sgrnas.has_duplicates:
        problems.append("duplicate sgRNA ids")
    if len(data.screen_samples) == 0:
        problems.append("no screen (non-pool) samples")
    all_zero = int(np.sum(data.counts.sum(axis=1) == 0))
    if all_zero:
        problems.append(f"{all_zero} sgRNAs have no reads in any sample")
    if not np.all(np.isfinite(data.size_factors.to_numpy())):
        problems.append("non-finite size factors")
    return problems


def _size_factor_table(data: ScreenData) -> pd.DataFrame:
    methods = ["median", "total"] + (["control"] if data.controls.any() else [])
    table = pd.DataFrame(
        {m: data.with_size_factors(m).size_factors for m in methods}, index=data.samples.index
    )
    table.insert(0, "pool", data.samples["pool"].to_numpy())
    return table


def _show_screen(title: str, data: ScreenData) -> None:
    _section(title)
    print(data)
    zeros = float(np.mean(data.counts == 0))
    per_gene = pd.Series(data.gene_codes).value_counts()
    print(
        f"  guides per gene: median {per_gene.median():.0f} (range {per_gene.min()}-"
        f"{per_gene.max()}); zero counts: {zeros:.2%}"
    )
    problems = validate(data)
    print("  validation: " + ("OK" if not problems else "; ".join(problems)))
    print("  size factors by method:")
    print(_size_factor_table(data).round(3).to_string().replace("\n", "\n    ").join(["    ", ""]))


def _show_simulation() -> None:
    _section("Simulated screen (simulate_screen): 2,000 genes x 4 guides, 3 + 3 samples + pool")
    data, truth = simulate_screen(n_genes=2000, n_controls=100, n_groups=200, random_seed=2024)
    print(data)
    screen = ~data.pool_mask
    y = data.counts[:, screen].astype(float)
    mu = truth.expected_counts.to_numpy()[:, screen]
    phi = truth.sgrnas["phi"].to_numpy()[:, None]
    var_nb = mu + mu**2 / phi
    z = (y - mu) / np.sqrt(var_nb)
    print("  counts vs the NB(mu, phi) they were drawn from (screen samples, by expected count):")
    bins = pd.qcut(mu.ravel(), 4, labels=["low", "mid-low", "mid-high", "high"])
    frame = pd.DataFrame({"bin": bins, "y": y.ravel(), "mu": mu.ravel(), "z": z.ravel()})
    table = frame.groupby("bin", observed=True).agg(
        observed_mean=("y", "mean"), expected_mean=("mu", "mean"), pearson_var=("z", "var")
    )
    print(table.round(3).to_string().replace("\n", "\n    ").join(["    ", ""]))
    print(
        f"    all: mean {y.mean():.1f} (expected {mu.mean():.1f}); Pearson residuals mean "
        f"{z.mean():+.3f}, variance {z.var():.3f} (NB: 0 and 1)"
    )
    print(
        f"    overdispersion: mean (y - mu)^2 / mu = {np.mean((y - mu) ** 2 / mu):.2f} "
        f"(NB expects {np.mean(var_nb / mu):.2f}; Poisson would be 1)"
    )
    phi_info = truth.params["phi"]
    print(
        f"    dispersion: per-sgRNA, median phi {phi_info['median']:.1f} "
        f"(range {phi_info['min']:.1f}-{phi_info['max']:.1f})"
    )
    genes = truth.genes[~truth.genes["is_control"]]
    hits = genes[genes["is_hit"]]
    print(
        f"  true hits: {len(hits)} of {len(genes)} genes "
        f"({int((hits['lfc'] < 0).sum())} depleted, {int((hits['lfc'] > 0).sum())} enriched; "
        f"{int(truth.groups['is_hit'].sum())} of {len(truth.groups)} gene groups are hit groups)"
    )
    pool = data.counts[:, data.pool_mask][:, 0]
    r_pool = np.corrcoef(np.log(pool + 0.5), truth.sgrnas["baseline"])[0, 1]
    print(f"  pool: corr(log pool count, true guide baseline a_s) = {r_pool:.3f}")
    norm = data.counts / data.size_factors.to_numpy()
    ctrl = np.log(norm[:, (data.samples["treatment"] == "control").to_numpy()].mean(axis=1) + 1)
    trt = np.log(norm[:, (data.samples["treatment"] == "treated").to_numpy()].mean(axis=1) + 1)
    naive = pd.Series(trt - ctrl).groupby(data.genes_of_sgrna).mean()
    true_lfc = truth.lfc_table()["treated"]
    r_lfc = np.corrcoef(naive.loc[true_lfc.index], true_lfc)[0, 1]
    print(f"  naive mean-of-guides log ratio vs true gene LFC: correlation {r_lfc:.3f}")


def main() -> int:
    """Run the demo and print its summary.

    Returns
    -------
    int
        Exit status (0).
    """
    start = time.perf_counter()
    print("screenformula demo: bundled screens and simulation (the model demo comes later)")
    _show_screen(
        "MAGeCK leukemia demo (sample.txt; BSD-3): HL60 / KBM7, initial = pool",
        datasets.load_mageck_leukemia("sample"),
    )
    _show_screen(
        "HAP1 TKOv3 dropout screen (BAGEL2 tutorial; MIT): T0 pool + 3 x day 18",
        datasets.load_hap1_tkov3(),
    )
    ref = datasets.load_reference_genes()
    print(
        f"  reference genes: {len(ref['essential'])} core-essential (CEGv2), "
        f"{len(ref['nonessential'])} non-essential (NEGv1)"
    )
    _show_simulation()
    print(f"\nDemo finished in {time.perf_counter() - start:.1f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
