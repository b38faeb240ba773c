from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from screenformula.io import read_counts
from screenformula.io.normalize import compute_size_factors, median_of_ratios, total_count

# Toy 4 x 3 matrix, size factors worked out by hand:
#
#   guide  gene   S1  S2  S3   geometric mean   ratios count / geomean
#   g1     NTC     1   2   4   (1*2*4)^(1/3)  = 2    0.5  1    2
#   g2     NTC     3   3  24   (3*3*24)^(1/3) = 6    0.5  0.5  4
#   g3     X       4   2   1   (4*2*1)^(1/3)  = 2    2    1    0.5
#   g4     X       0   1  35   has a zero: left out of median-of-ratios
#
# median  : per sample, median of the ratios over g1..g3
#           S1 median(0.5, 0.5, 2) = 0.5;  S2 median(1, 0.5, 1) = 1;  S3 median(2, 4, 0.5) = 2
# total   : totals 8, 8, 64; their geometric mean (8*8*64)^(1/3) = 4096^(1/3) = 16
#           -> 8/16, 8/16, 64/16 = 0.5, 0.5, 4
# control : median of ratios over the control guides g1, g2 only; the median of two values
#           is taken on the log scale, so it is their geometric mean:
#           S1 sqrt(0.5*0.5) = 0.5;  S2 sqrt(1*0.5) = 0.70710678;  S3 sqrt(2*4) = 2.82842712
TOY = np.array([[1, 2, 4], [3, 3, 24], [4, 2, 1], [0, 1, 35]])
CONTROLS = np.array([True, True, False, False])
MEDIAN = [0.5, 1.0, 2.0]
TOTAL = [0.5, 0.5, 4.0]
CONTROL = [0.5, 0.70710678, 2.82842712]


def test_median_of_ratios_by_hand():
    np.testing.assert_allclose(median_of_ratios(TOY), MEDIAN, rtol=1e-12)
    np.testing.assert_allclose(compute_size_factors(TOY, "median"), MEDIAN, rtol=1e-12)


def test_total_by_hand():
    np.testing.assert_allclose(total_count(TOY), TOTAL, rtol=1e-12)
    np.testing.assert_allclose(compute_size_factors(TOY, "total"), TOTAL, rtol=1e-12)


def test_control_by_hand():
    np.testing.assert_allclose(compute_size_factors(TOY, "control", CONTROLS), CONTROL, rtol=1e-8)


def test_none_is_ones():
    np.testing.assert_array_equal(compute_size_factors(TOY, "none"), [1.0, 1.0, 1.0])


def test_three_by_two_median_of_ratios_by_hand():
    # rows [10, 20], [20, 40], [30, 30]; geometric means sqrt(200), sqrt(800), 30
    # ratios: (0.70710678, 1.41421356), (0.70710678, 1.41421356), (1, 1)
    # medians: S1 0.70710678 (= 1/sqrt 2), S2 1.41421356 (= sqrt 2)
    counts = np.array([[10, 20], [20, 40], [30, 30]])
    np.testing.assert_allclose(median_of_ratios(counts), [0.70710678, 1.41421356], rtol=1e-8)


def _toy_frame() -> pd.DataFrame:
    frame = pd.DataFrame(TOY, columns=["S1", "S2", "S3"])
    frame.insert(0, "Gene", ["NTC", "NTC", "X", "X"])
    frame.insert(0, "sgRNA", ["g1", "g2", "g3", "g4"])
    return frame


@pytest.mark.parametrize(
    ("method", "expected"), [("median", MEDIAN), ("total", TOTAL), ("control", CONTROL)]
)
def test_read_counts_size_factor_methods(method, expected):
    data = read_counts(_toy_frame(), controls="NTC", size_factors=method)
    assert data.size_factor_method == method
    np.testing.assert_allclose(data.size_factors.to_numpy(), expected, rtol=1e-8)
    assert list(data.size_factors.index) == ["S1", "S2", "S3"]


def test_given_size_factors_and_with_size_factors():
    data = read_counts(_toy_frame(), size_factors=[1.0, 2.0, 3.0])
    assert data.size_factor_method == "given"
    np.testing.assert_array_equal(data.size_factors.to_numpy(), [1.0, 2.0, 3.0])
    np.testing.assert_allclose(data.with_size_factors("total").size_factors.to_numpy(), TOTAL)


def test_size_factor_errors(expect_error):
    expect_error(lambda: compute_size_factors(TOY, "upper"), "unknown size-factor method 'upper'")
    expect_error(
        lambda: compute_size_factors(np.array([[0, 1], [1, 0]]), "median"),
        "every sgRNA has a zero count in some sample",
    )
    expect_error(
        lambda: compute_size_factors(np.array([[0, 1], [0, 2]]), "total"),
        "sample 'column 1' has no reads",
    )
    expect_error(
        lambda: read_counts(_toy_frame(), size_factors="control"),
        "size_factors='control' needs control guides",
    )
    expect_error(
        lambda: read_counts(_toy_frame(), size_factors=[1.0, -1.0, 1.0]),
        "size factors must be one positive number per sample",
    )
