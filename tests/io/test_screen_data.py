from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from screenformula.io import ScreenData

COUNTS = np.array([[10, 20, 30], [40, 50, 60], [70, 80, 90], [1, 2, 3]])


def make(**kwargs) -> ScreenData:
    sheet = pd.DataFrame(
        {
            "condition": ["T0", "drug", "drug"],
            "pool": [True, False, False],
            "replicate": ["0", "1", "2"],
        },
        index=["T0", "D1", "D2"],
    )
    return ScreenData(COUNTS, ["s1", "s2", "s3", "s4"], ["A", "A", "B", "C"], sheet, **kwargs)


def test_basic_shape_and_attributes():
    data = make()
    assert (data.n_sgrnas, data.n_samples, data.n_genes) == (4, 3, 3)
    assert list(data.gene_names) == ["A", "B", "C"]
    np.testing.assert_array_equal(data.gene_codes, [0, 0, 1, 2])
    assert list(data.pool_samples) == ["T0"]
    assert list(data.screen_samples) == ["D1", "D2"]
    assert data.depth.to_dict() == {"T0": 121, "D1": 152, "D2": 183}


def test_to_long_shape_columns_and_values():
    data = make(gene_groups=pd.Series({"A": "ess", "B": "non"}))
    long = data.to_long()
    assert long.shape == (4 * 3, 9)
    assert list(long.columns) == [
        "sgrna",
        "gene",
        "sample",
        "count",
        "size_factor",
        "group",
        "condition",
        "pool",
        "replicate",
    ]
    # sgRNA-major order: row 3 * i + j is guide i in sample j
    row = long.iloc[3 * 1 + 2]
    assert (row["sgrna"], row["gene"], row["sample"], row["count"]) == ("s2", "A", "D2", 60)
    assert row["condition"] == "drug" and not row["pool"] and row["replicate"] == "2"
    assert row["size_factor"] == pytest.approx(data.size_factors["D2"])
    assert list(long.loc[long["sgrna"] == "s4", "group"]) == ["ungrouped"] * 3
    assert long["count"].sum() == COUNTS.sum()


def test_to_long_sample_subset():
    long = make().to_long(["D2", "T0"])
    assert long.shape[0] == 4 * 2
    assert list(long["sample"][:2]) == ["D2", "T0"]
    assert list(long["count"][:2]) == [30, 10]


def test_to_long_unknown_sample(expect_error):
    expect_error(lambda: make().to_long(["D9"]), "unknown sample\\(s\\): D9")


def test_counts_frame_is_mageck_layout():
    frame = make().counts_frame()
    assert list(frame.columns) == ["sgRNA", "Gene", "T0", "D1", "D2"]
    assert frame.iloc[1].tolist() == ["s2", "A", 40, 50, 60]


def test_repr_names_guides_genes_samples_and_depth():
    text = repr(make(controls=np.array([False, False, False, True])))
    first = text.splitlines()[0]
    assert first == "ScreenData: 4 sgRNAs, 3 genes, 3 samples (1 pool), 1 control sgRNAs"
    assert "size factors: median" in text
    lines = text.splitlines()
    t0_line = next(line for line in lines if line.strip().startswith("T0"))
    assert "condition=T0" in t0_line and "depth=" in t0_line and "121" in t0_line
    assert t0_line.endswith("[pool]")
    assert any("D2" in line and "183" in line for line in lines)


def test_repr_thousands_separators():
    counts = np.full((1500, 2), 1000)
    sheet = pd.DataFrame({"condition": ["a", "b"]}, index=["x", "y"])
    data = ScreenData(counts, [f"s{i}" for i in range(1500)], ["g"] * 1500, sheet)
    assert "1,500 sgRNAs" in repr(data)
    assert "1,500,000" in repr(data)


def test_dropped_default_and_carried_over():
    data = make()
    assert list(data.dropped.columns) == ["sgrna", "gene", "reason"]
    assert len(data.dropped) == 0
    dropped = pd.DataFrame({"sgrna": ["s9"], "gene": ["Z"], "reason": ["missing count in T0"]})
    data = make(dropped=dropped)
    assert data.subset(np.array([True, True, False, True])).dropped.equals(data.dropped)
    assert data.with_size_factors("total").dropped.equals(data.dropped)
    assert "dropped: 1 sgRNAs" in repr(data)


def test_constructor_errors(expect_error):
    sheet = pd.DataFrame({"condition": ["a", "b"]}, index=["x", "y"])
    expect_error(lambda: ScreenData(np.zeros((0, 2), int), [], [], sheet), "the table is empty")
    expect_error(
        lambda: ScreenData(np.array([[1, -1]]), ["s"], ["g"], sheet), "must be non-negative"
    )
    expect_error(lambda: ScreenData(np.array([[1.5, 1.0]]), ["s"], ["g"], sheet), "integers")
    expect_error(
        lambda: ScreenData(np.ones((2, 2), int), ["s", "s"], ["g", "g"], sheet),
        "duplicate sgRNA id 's'",
    )
    expect_error(
        lambda: ScreenData(np.ones((1, 2), int), ["s"], ["g"], sheet, dropped=pd.DataFrame()),
        "dropped needs columns sgrna, gene, reason",
    )


def test_subset_recomputes_size_factors():
    data = make()
    sub = data.subset(np.array([True, True, True, False]), ["D1", "D2"])
    assert list(sub.samples.index) == ["D1", "D2"]
    np.testing.assert_array_equal(sub.counts, [[20, 30], [50, 60], [80, 90]])
    assert sub.size_factor_method == "median"
    assert not np.allclose(sub.size_factors.to_numpy(), data.size_factors[["D1", "D2"]])
