"""Calibration on simulated screens: the reduced CI version of benchmarks/bench_calibration.py.

Three ``normal`` screens (every effect drawn from the model's own hierarchical prior;
60 genes x 4 guides in 6 groups, pool + 3 + 3 samples), each fitted with NUTS (2 chains x
300 draws) with the benchmark's nested formula, scored by the benchmark's own code against
the truth on the scale the counts identify. Tolerances, pooled over the 180 genes (binomial
sd of a 90 % coverage over 180 genes is about 2 points, of a 50 % one about 4):

- central 90 % intervals of the gene LFCs hold the truth for 80-97 % of genes;
- central 50 % intervals for 36-64 %;
- genes with lfsr <= 0.05 have no more wrong signs than their summed lfsr predicts plus
  three Poisson sds plus 2;
- the 50 % and 90 % intervals of the 9 hyper-parameters (sds, correlations, slope) hold
  the truth for at least 25 % and 65 % of the 27 cases.
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import pytest
from _paths import load_benchmark

pytestmark = pytest.mark.slow

SEEDS = (11, 12, 13)


def _bench():
    return load_benchmark("bench_calibration")


@pytest.fixture(scope="module")
def scored():
    bench = _bench()
    args = argparse.Namespace(genes=60, groups=6, draws=300, tune=300, chains=2, fits=None)
    return [bench.one_screen("normal", seed, "median", args) for seed in SEEDS]


def _pooled(rows, key):
    return float(np.mean([r[key] for r in rows]))


def test_gene_interval_coverage(scored):
    assert 0.80 <= _pooled(scored, "norm_coverage90") <= 0.97
    assert 0.36 <= _pooled(scored, "norm_coverage50") <= 0.64


def test_lfsr_bounds_wrong_signs(scored):
    confident = [b for r in scored for b in r["lfsr_bins"] if b["high"] <= 0.05]
    expected = sum(b["expected"] for b in confident)
    wrong = sum(b["wrong"] for b in confident)
    assert sum(b["n"] for b in confident) > 0, "no gene reached lfsr <= 0.05"
    assert wrong <= expected + 3 * math.sqrt(expected) + 2, (wrong, expected)


def test_hyper_parameter_coverage(scored):
    cases = [v for r in scored for v in r["hyper"].values()]
    assert len(cases) == 27
    assert np.mean([c[0] for c in cases]) >= 0.25
    assert np.mean([c[1] for c in cases]) >= 0.65
