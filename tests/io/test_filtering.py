from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from screenformula.io import ScreenData, filter_sgrnas, read_counts
from screenformula.io.normalize import compute_size_factors

#            T0   A    B
COUNTS = [
    [0, 5, 5],  # a1  gene A: pool count 0
    [10, 10, 10],  # a2  gene A
    [2, 2, 3],  # b1  gene B: mean 7/3 = 2.33, total 7
    [0, 0, 0],  # c1  gene C: no reads at all (and pool count 0)
    [0, 0, 0],  # c2  gene C
    [100, 90, 80],  # d1  gene D
    [50, 60, 70],  # d2  gene D
]
SGRNAS = ["a1", "a2", "b1", "c1", "c2", "d1", "d2"]
GENES = ["A", "A", "B", "C", "C", "D", "D"]


def make(pool=(True, False, False), **kwargs) -> ScreenData:
    sheet = pd.DataFrame(
        {"condition": ["T0", "x", "x"], "pool": list(pool)}, index=["T0", "A", "B"]
    )
    return ScreenData(np.array(COUNTS), SGRNAS, GENES, sheet, size_factors="total", **kwargs)


def reasons(dropped: pd.DataFrame) -> dict[str, str]:
    return dict(zip(dropped["sgrna"], dropped["reason"], strict=True))


def test_default_drops_only_empty_genes():
    data = make()
    filtered, dropped = filter_sgrnas(data)
    assert list(dropped.columns) == ["sgrna", "gene", "reason"]
    assert reasons(dropped) == {
        "c1": "gene C has no reads in any sample",
        "c2": "gene C has no reads in any sample",
    }
    assert list(dropped["gene"]) == ["C", "C"]
    assert list(filtered.sgrnas) == ["a1", "a2", "b1", "d1", "d2"]
    assert list(filtered.gene_names) == ["A", "B", "D"]


def test_drop_empty_genes_off_drops_nothing():
    data = make()
    filtered, dropped = filter_sgrnas(data, drop_empty_genes=False)
    assert len(dropped) == 0
    assert filtered.n_sgrnas == data.n_sgrnas
    np.testing.assert_array_equal(filtered.counts, data.counts)


def test_min_pool_count():
    filtered, dropped = filter_sgrnas(make(), min_pool_count=1, drop_empty_genes=False)
    assert reasons(dropped) == {
        "a1": "pool count 0 < 1 in T0",
        "c1": "pool count 0 < 1 in T0",
        "c2": "pool count 0 < 1 in T0",
    }
    assert list(filtered.sgrnas) == ["a2", "b1", "d1", "d2"]


def test_min_pool_count_names_every_failing_pool_sample():
    data = make(pool=(True, True, False))
    _, dropped = filter_sgrnas(data, min_pool_count=6, drop_empty_genes=False)
    assert reasons(dropped)["a1"] == "pool count 0 < 6 in T0; pool count 5 < 6 in A"
    assert reasons(dropped)["b1"] == "pool count 2 < 6 in T0; pool count 2 < 6 in A"
    assert "d1" not in reasons(dropped)


def test_min_count_and_min_mean_count_reasons_are_combined():
    # a1 (total 10, mean 3.33) passes both; b1 (total 7, mean 2.33) fails both
    _, dropped = filter_sgrnas(make(), min_count=8, min_mean_count=3)
    assert reasons(dropped) == {
        "b1": "total count 7 < 8; mean count 2.33 < 3",
        "c1": "total count 0 < 8; mean count 0 < 3",
        "c2": "total count 0 < 8; mean count 0 < 3",
    }


def test_min_mean_count_boundary_is_kept():
    # a1 has mean 10/3 = 3.33; a threshold equal to a mean keeps the guide
    _, dropped = filter_sgrnas(make(), min_mean_count=10, drop_empty_genes=False)
    assert set(dropped["sgrna"]) == {"a1", "b1", "c1", "c2"}  # a2 (mean exactly 10) kept
    assert reasons(dropped)["a1"] == "mean count 3.33 < 10"


def test_empty_gene_after_other_filters():
    # gene A loses a1 to the pool filter; a2 still has reads, so gene A stays
    filtered, dropped = filter_sgrnas(make(), min_pool_count=1)
    assert reasons(dropped)["c1"] == "pool count 0 < 1 in T0"
    assert "A" in set(filtered.gene_names)


def test_size_factors_recomputed_and_input_unchanged():
    data = make()
    before = data.counts.copy()
    filtered, _ = filter_sgrnas(data, min_mean_count=5)
    np.testing.assert_array_equal(data.counts, before)
    assert data.n_sgrnas == 7
    np.testing.assert_allclose(
        filtered.size_factors.to_numpy(), compute_size_factors(filtered.counts, "total")
    )
    assert filtered.size_factor_method == "total"


def test_gene_groups_and_controls_follow_the_kept_guides():
    data = make(
        gene_groups=pd.Series({"A": "g1", "B": "g1", "C": "g2", "D": "g2"}),
        controls=np.array([False, False, False, False, False, True, True]),
    )
    filtered, _ = filter_sgrnas(data, min_mean_count=3)
    assert filtered.gene_groups is not None
    assert filtered.gene_groups.to_dict() == {"A": "g1", "D": "g2"}
    np.testing.assert_array_equal(filtered.controls, [False, False, True, True])


def test_dropped_accumulates(write):
    text = (
        "sgRNA\tGene\tT0\tA\n"
        "s1\tg1\t10\t10\n"
        "s2\tg1\t\t5\n"  # dropped by nan="drop"
        "s3\tg2\t0\t4\n"  # dropped by the pool filter
        "s4\tg3\t8\t9\n"
    )
    data = read_counts(write("c.txt", text), {"T0": "T0", "A": "x"}, nan="drop")
    assert list(data.dropped["sgrna"]) == ["s2"]
    filtered, dropped = filter_sgrnas(data, min_pool_count=1)
    assert list(dropped["sgrna"]) == ["s3"]
    assert filtered.dropped.to_dict("records") == [
        {"sgrna": "s2", "gene": "g1", "reason": "missing count in T0"},
        {"sgrna": "s3", "gene": "g2", "reason": "pool count 0 < 1 in T0"},
    ]
    # a second round keeps accumulating; nothing new dropped keeps the history
    again, none = filter_sgrnas(filtered, min_pool_count=1)
    assert len(none) == 0
    assert list(again.dropped["sgrna"]) == ["s2", "s3"]
    assert "dropped: 2 sgRNAs" in repr(again)


def test_errors(expect_error):
    data = make(pool=(False, False, False))
    expect_error(lambda: filter_sgrnas(data, min_pool_count=1), "min_pool_count needs pool samples")
    expect_error(
        lambda: filter_sgrnas(make(), min_count=-1),
        "min_count must be a non-negative number, got -1",
    )
    expect_error(
        lambda: filter_sgrnas(make(), min_mean_count="5"),  # type: ignore[arg-type]
        "min_mean_count must be a non-negative number",
    )
    expect_error(lambda: filter_sgrnas(make(), min_count=10_000), "would drop all 7 sgRNAs")


@pytest.mark.parametrize("threshold", [0, 0.0])
def test_zero_thresholds_drop_nothing(threshold):
    _, dropped = filter_sgrnas(
        make(),
        min_pool_count=threshold,
        min_count=threshold,
        min_mean_count=threshold,
        drop_empty_genes=False,
    )
    assert len(dropped) == 0


def test_real_hap1_pool_filter(data_dir):
    sheet = {"HAP1_T0": "T0", "HAP1_T18A": "T18", "HAP1_T18B": "T18", "HAP1_T18C": "T18"}
    data = read_counts(data_dir / "bagel-hap1-tkov3" / "reads_hap1.txt", sheet)
    filtered, dropped = filter_sgrnas(data, min_pool_count=1)
    zero_t0 = data.counts[:, 0] == 0
    assert zero_t0.sum() > 0
    # every guide with no T0 reads is dropped and named; nothing else is dropped for the pool
    pool_dropped = dropped[dropped["reason"].str.startswith("pool count 0 < 1 in HAP1_T0")]
    assert set(pool_dropped["sgrna"]) == set(data.sgrnas[zero_t0])
    assert filtered.n_sgrnas + len(dropped) == data.n_sgrnas
    assert (filtered.counts[:, 0] >= 1).all()
