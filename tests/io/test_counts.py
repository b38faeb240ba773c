from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import screenformula as sf
from screenformula.io import ScreenData, read_counts

WIDE = "sgRNA\tGene\tA\tB\ns1\tg1\t10\t20\ns2\tg1\t30\t40\ns3\tg2\t50\t60\n"
LONG = (
    "sgrna\tgene\tsample\tcount\n"
    "s1\tg1\tA\t10\ns1\tg1\tB\t20\n"
    "s2\tg1\tA\t30\ns2\tg1\tB\t40\n"
    "s3\tg2\tA\t50\ns3\tg2\tB\t60\n"
)
EXPECTED = np.array([[10, 20], [30, 40], [50, 60]], dtype=np.int64)


def test_wide_tab_file(write):
    data = read_counts(write("counts.txt", WIDE))
    assert isinstance(data, ScreenData)
    assert data.counts.dtype == np.int64
    np.testing.assert_array_equal(data.counts, EXPECTED)
    assert list(data.sgrnas) == ["s1", "s2", "s3"]
    assert list(data.genes_of_sgrna) == ["g1", "g1", "g2"]
    assert list(data.gene_names) == ["g1", "g2"]
    assert list(data.samples.index) == ["A", "B"]
    # default sheet: condition = sample name, no pool sample
    assert list(data.samples["condition"]) == ["A", "B"]
    assert not data.pool_mask.any()
    assert data.source is not None and data.source.endswith("counts.txt")
    assert len(data.dropped) == 0


@pytest.mark.parametrize(
    ("name", "text", "sep"),
    [
        ("counts.csv", WIDE.replace("\t", ","), None),
        ("counts.txt", WIDE.replace("\t", "   "), None),
        ("counts.txt", WIDE.replace("\t", ";"), None),
        ("counts.dat", WIDE.replace("\t", "|"), "|"),
    ],
)
def test_separator_sniffed_or_given(write, name, text, sep):
    data = read_counts(write(name, text), sep=sep)
    np.testing.assert_array_equal(data.counts, EXPECTED)
    assert list(data.samples.index) == ["A", "B"]


def test_header_names_of_id_and_gene_columns_do_not_matter(write):
    data = read_counts(write("c.txt", WIDE.replace("sgRNA\tGene", "guide_seq\tSYMBOL")))
    assert list(data.sgrnas) == ["s1", "s2", "s3"]
    assert list(data.gene_names) == ["g1", "g2"]


def test_float_counts_that_are_integral(write):
    text = "SEQUENCE\tGENE\tT0\tT1\nAC\tg1\t239.0\t245.0\nGT\tg2\t1647.0\t0.0\n"
    data = read_counts(write("reads.txt", text))
    assert data.counts.dtype == np.int64
    np.testing.assert_array_equal(data.counts, [[239, 245], [1647, 0]])


def test_gzip_file(tmp_path):
    path = tmp_path / "counts.txt.gz"
    with gzip.open(path, "wt") as handle:
        handle.write(WIDE)
    np.testing.assert_array_equal(read_counts(path).counts, EXPECTED)


def test_windows_line_endings_blank_lines_and_bom(write):
    text = "\ufeff" + WIDE.replace("\n", "\r\n") + "\r\n\r\n"
    data = read_counts(write("c.txt", text))
    np.testing.assert_array_equal(data.counts, EXPECTED)
    assert list(data.samples.index) == ["A", "B"]


def test_trailing_separator_column_is_ignored(write):
    text = "sgRNA\tGene\tA\tB\t\ns1\tg1\t1\t2\t\ns2\tg2\t3\t4\t\n"
    data = read_counts(write("c.txt", text))
    assert list(data.samples.index) == ["A", "B"]
    np.testing.assert_array_equal(data.counts, [[1, 2], [3, 4]])


def test_several_trailing_separators_and_unnamed_id_column(write, expect_error):
    text = "\tGene\tA\t\t\ns1\tg1\t1\t\t\ns2\tg2\t3\t\t\n"
    data = read_counts(write("c.txt", text))
    assert list(data.samples.index) == ["A"]
    assert list(data.sgrnas) == ["s1", "s2"]
    path = write("d.txt", "sgRNA\tGene\tA\t\tB\ns1\tg1\t1\t3\t4\n")
    expect_error(lambda: read_counts(path), "^d\\.txt: column 4 has no sample name$")


def test_dataframe_with_nullable_bool_and_text_columns(expect_error):
    frame = pd.DataFrame(
        {"id": ["a", "b"], "g": ["x", "y"], "S": pd.array([1, None], dtype="Int64")}
    )
    data = read_counts(frame, nan="drop")
    assert list(data.sgrnas) == ["a"]
    assert data.dropped["reason"].tolist() == ["missing count in S"]
    text = pd.DataFrame({"id": ["a", "b"], "g": ["x", "y"], "S": [" 12", "1e3"]})
    np.testing.assert_array_equal(read_counts(text).counts, [[12], [1000]])
    flags = pd.DataFrame({"id": ["a", "b"], "g": ["x", "y"], "S": [1, 2], "T": [True, False]})
    expect_error(
        lambda: read_counts(flags), "count table row 1, column 'T': count 'True' is not a number"
    )


def test_ids_and_labels_read_as_text(write):
    text = "sgRNA\tGene\tA\n001\tNA\t5\n002\t7\t6\n"
    data = read_counts(write("c.txt", text))
    assert list(data.sgrnas) == ["001", "002"]
    assert list(data.genes_of_sgrna) == ["NA", "7"]


# ---------------------------------------------------------------- bad wide tables
H = "sgRNA\tGene\tA\tB\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (H + "s1\tg1\t1\t2\ns2\tg1\t3\t-3\n", "c.txt line 3, column 'B': count -3 is negative"),
        (H + "s1\tg1\t2.5\t2\n", "c.txt line 2, column 'A': count 2.5 is not an integer"),
        (
            H + "s1\tg1\t1\t2\ns2\tg1\tabc\t4\n",
            "c.txt line 3, column 'A': count 'abc' is not a number",
        ),
        (H + "s1\tg1\t1\t\n", "c.txt line 2, column 'B': count is missing"),
        (H + "s1\tg1\tNA\t3\n", "c.txt line 2, column 'A': count is missing"),
        (H + "s1\tg1\t1\n", "c.txt line 2, column 'B': count is missing"),
        (H + "s1\tg1\tinf\t3\n", "c.txt line 2, column 'A': count inf is not a finite number"),
        (
            H + "s1\tg1\t1\t2\ns2\tg2\t1\t2\ns1\tg3\t1\t2\n",
            "c.txt line 4: duplicate sgRNA id 's1' (first on line 2)",
        ),
        (H + "s1\tg1\t1\t2\ns2\t\t1\t2\n", "c.txt line 3: sgRNA 's2' has an empty gene"),
        (H + "s1\tg1\t1\t2\n\tg1\t1\t2\n", "c.txt line 3: empty sgRNA id"),
        (H, "c.txt: the table has no rows"),
        ("sgRNA\tGene\ns1\tg1\n", "c.txt: no sample columns"),
        (
            "sgRNA\tGene\tA\tB\tA\ns1\tg1\t1\t2\t3\n",
            "c.txt line 1: duplicate column 'A' (columns 3 and 5)",
        ),
        (H + "s1\tg1\t1\t2\ns2\tg1\t1\t2\t9\n", "c.txt: Expected 4 fields in line 3, saw 5"),
        (H + "s1\tg1\t1\t2\t9\n", "c.txt line 2: the row has more fields than the header"),
        ("", "c.txt: the file is empty"),
        ("\n\n", "c.txt: the file is empty"),
    ],
)
def test_bad_wide_table(write, expect_error, text, message):
    path = write("c.txt", text)
    expect_error(lambda: read_counts(path), "^" + re.escape(message))


def test_line_numbers_count_blank_lines_and_header(write, expect_error):
    text = H + "s1\tg1\t1\t2\n\n\ns2\tg1\t3\t-1\n"
    expect_error(lambda: read_counts(write("c.txt", text)), r"^c\.txt line 5, column 'B'")


def test_first_bad_cell_in_file_order_is_reported(write, expect_error):
    text = H + "s1\tg1\t1\t2\ns2\tg1\t3\t-4\ns3\tg1\t2.5\t1\n"
    expect_error(lambda: read_counts(write("c.txt", text)), r"line 3, column 'B': count -4")


def test_real_file_error_names_file_line_and_sample(data_dir, tmp_path, expect_error):
    lines = (data_dir / "mageck-leukemia" / "sample.txt").read_text().splitlines()
    fields = lines[16].split("\t")  # line 17 of the file
    fields[4] = "-3"  # HL60.final
    lines[16] = "\t".join(fields)
    path = tmp_path / "sample.txt"
    path.write_text("\n".join(lines) + "\n")
    expect_error(
        lambda: read_counts(path),
        "^" + re.escape("sample.txt line 17, column 'HL60.final': count -3 is negative") + "$",
    )


def test_missing_file(expect_error, tmp_path):
    expect_error(lambda: read_counts(tmp_path / "nope.txt"), "count table file not found")


def test_bad_arguments(write, expect_error):
    path = write("c.txt", WIDE)
    expect_error(lambda: read_counts(path, layout="tall"), "unknown layout 'tall'")
    expect_error(lambda: read_counts(path, nan="zero"), "unknown nan policy 'zero'")
    expect_error(lambda: read_counts(123), "count table must be a file path or a DataFrame")  # type: ignore[arg-type]
    expect_error(
        lambda: read_counts(path, layout="long"),
        "a long count table needs columns sgrna, gene, sample, count; missing sample, count",
    )


# ---------------------------------------------------------------- NaN policy
def test_nan_drop_records_dropped_guides(write):
    text = H + "s1\tg1\t1\t2\ns2\tg1\t\tNA\ns3\tg2\t5\t\ns4\tg2\t7\t8\n"
    data = read_counts(write("c.txt", text), nan="drop", size_factors="total")
    assert list(data.sgrnas) == ["s1", "s4"]
    np.testing.assert_array_equal(data.counts, [[1, 2], [7, 8]])
    expected = pd.DataFrame(
        {
            "sgrna": ["s2", "s3"],
            "gene": ["g1", "g2"],
            "reason": ["missing count in A, B", "missing count in B"],
        }
    )
    pd.testing.assert_frame_equal(data.dropped, expected, check_dtype=False)


def test_nan_drop_still_rejects_negative_counts(write, expect_error):
    text = H + "s1\tg1\t\t2\ns2\tg1\t3\t-1\n"
    expect_error(lambda: read_counts(write("c.txt", text), nan="drop"), "count -1 is negative")


def test_nan_drop_of_every_guide_is_an_error(write, expect_error):
    text = H + "s1\tg1\t\t2\ns2\tg1\t3\t\n"
    expect_error(lambda: read_counts(write("c.txt", text), nan="drop"), "every sgRNA has a missing")


def test_nan_drop_keeps_controls_aligned(write):
    text = H + "s1\tNTC\t1\t2\ns2\tg1\t\t4\ns3\tNTC\t5\t6\ns4\tg2\t7\t8\n"
    data = read_counts(write("c.txt", text), nan="drop", controls=["s2", "s3"])
    assert list(data.sgrnas) == ["s1", "s3", "s4"]
    np.testing.assert_array_equal(data.controls, [False, True, False])


# ---------------------------------------------------------------- long layout
def test_long_layout_auto_detected(write):
    data = read_counts(write("long.tsv", LONG))
    np.testing.assert_array_equal(data.counts, EXPECTED)
    assert list(data.sgrnas) == ["s1", "s2", "s3"]
    assert list(data.samples.index) == ["A", "B"]
    assert list(data.genes_of_sgrna) == ["g1", "g1", "g2"]


def test_long_layout_case_insensitive_extra_columns_and_any_row_order(write):
    rows = LONG.splitlines()[1:]
    shuffled = [rows[i] + "\tx" for i in (5, 0, 3, 2, 4, 1)]
    text = "\n".join(["SGRNA\tGene\tSample\tCOUNT\tnote", *shuffled]) + "\n"
    data = read_counts(write("long.csv", text.replace("\t", ",")), layout="long")
    order = pd.Index(data.sgrnas).get_indexer(["s1", "s2", "s3"])
    cols = data.samples.index.get_indexer(["A", "B"])
    np.testing.assert_array_equal(data.counts[np.ix_(order, cols)], EXPECTED)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            LONG + "s1\tg1\tA\t11\n",
            "long.tsv line 8: sgRNA 's1' has a second count for sample 'A' (first on line 2)",
        ),
        (
            LONG.replace("s2\tg1\tB", "s2\tg9\tB"),
            "long.tsv line 5: sgRNA 's2' has gene 'g9' here but 'g1' on line 4",
        ),
        (
            "\n".join(line for line in LONG.splitlines() if line != "s2\tg1\tB\t40") + "\n",
            "long.tsv: sgRNA 's2' has no row for sample 'B'",
        ),
        (
            LONG.replace("B\t40", "B\t-40"),
            "long.tsv line 5, column 'count' (sample 'B'): count -40 is negative",
        ),
        (
            LONG.replace("B\t40", "B\t"),
            "long.tsv line 5, column 'count' (sample 'B'): count is missing",
        ),
        (LONG.replace("s2\tg1\tB", "s2\t\tB"), "long.tsv line 5: sgRNA 's2' has an empty gene"),
        (LONG.replace("s2\tg1\tB", "s2\tg1\t"), "long.tsv line 5: empty sample name"),
        ("sgrna\tgene\tsample\tcount\n", "long.tsv: the table has no rows"),
    ],
)
def test_bad_long_table(write, expect_error, text, message):
    path = write("long.tsv", text)
    expect_error(lambda: read_counts(path), "^" + re.escape(message))


def test_long_nan_drop(write):
    data = read_counts(write("long.tsv", LONG.replace("B\t40", "B\tNA")), nan="drop")
    assert list(data.sgrnas) == ["s1", "s3"]
    assert data.dropped.to_dict("records") == [
        {"sgrna": "s2", "gene": "g1", "reason": "missing count in B"}
    ]


# ---------------------------------------------------------------- round trips
def _example() -> ScreenData:
    rng = np.random.default_rng(1)
    counts = rng.poisson(50, size=(12, 3)).astype(np.int64) + 1
    sheet = pd.DataFrame(
        {"condition": ["T0", "drug", "drug"], "pool": [True, False, False]},
        index=["T0", "D1", "D2"],
    )
    genes = [f"G{i // 3}" for i in range(12)]
    return ScreenData(counts, [f"sg{i:02d}" for i in range(12)], genes, sheet)


def _assert_same(a: ScreenData, b: ScreenData) -> None:
    np.testing.assert_array_equal(a.counts, b.counts)
    assert list(a.sgrnas) == list(b.sgrnas)
    assert list(a.genes_of_sgrna) == list(b.genes_of_sgrna)
    assert list(a.samples.index) == list(b.samples.index)
    np.testing.assert_allclose(a.size_factors.to_numpy(), b.size_factors.to_numpy())


@pytest.mark.parametrize(("name", "sep"), [("w.txt", "\t"), ("w.csv", ","), ("w.txt.gz", "\t")])
def test_round_trip_wide(tmp_path, name, sep):
    data = _example()
    path = tmp_path / name
    data.counts_frame().to_csv(path, sep=sep, index=False)
    back = read_counts(path, data.samples)
    _assert_same(data, back)
    pd.testing.assert_frame_equal(back.samples, data.samples, check_dtype=False)


@pytest.mark.parametrize(("name", "sep"), [("l.tsv", "\t"), ("l.csv.gz", ",")])
def test_round_trip_long(tmp_path, name, sep):
    data = _example()
    path = tmp_path / name
    data.to_long().to_csv(path, sep=sep, index=False)
    back = read_counts(path, data.samples)
    _assert_same(data, back)
    assert list(back.pool_samples) == ["T0"]


def test_dataframe_sources(expect_error):
    data = _example()
    _assert_same(data, read_counts(data.counts_frame(), data.samples))
    _assert_same(data, read_counts(data.to_long(), data.samples))
    _assert_same(data, read_counts(data.counts_frame().set_index("sgRNA"), data.samples))
    bad = data.counts_frame()
    bad.loc[3, "D1"] = -5
    expect_error(
        lambda: read_counts(bad),
        "^" + re.escape("count table row 4, column 'D1': count -5 is negative"),
    )
    dup = data.counts_frame()
    dup.columns = ["sgRNA", "Gene", "T0", "D1", "D1"]
    expect_error(lambda: read_counts(dup), "count table: duplicate column 'D1'")


# ---------------------------------------------------------------- sample sheet
def test_sample_sheet_reordered_to_table_columns(write):
    sheet = write("sheet.tsv", "sample\tcondition\tpool\nB\tlate\tno\nA\tplasmid\tyes\n")
    data = read_counts(write("c.txt", WIDE), sheet)
    assert list(data.samples.index) == ["A", "B"]
    assert list(data.samples["condition"]) == ["plasmid", "late"]
    assert list(data.pool_samples) == ["A"]
    np.testing.assert_array_equal(data.counts, EXPECTED)


def test_sample_sheet_dict(write):
    data = read_counts(write("c.txt", WIDE), {"B": "late", "A": "t0"})
    assert list(data.samples["condition"]) == ["t0", "late"]
    assert list(data.pool_samples) == ["A"]


def test_sample_sheet_mismatch(write, expect_error):
    path = write("c.txt", WIDE)
    expect_error(
        lambda: read_counts(path, {"A": "x"}),
        "sample sheet: sample\\(s\\) of the count table missing from the sample sheet: 'B'",
    )
    expect_error(
        lambda: read_counts(path, {"A": "x", "B": "y", "C": "z", "D": "w"}),
        "sample\\(s\\) of the sample sheet missing from the count table c.txt: 'C', 'D'",
    )
    sheet = write("sheet.csv", "sample,condition\nA,x\nB,y\nZ,z\n")
    expect_error(lambda: read_counts(path, sheet), r"^sheet\.csv: sample\(s\) of the sample sheet")


# ---------------------------------------------------------------- controls and groups
CTRL = "sgRNA\tGene\tA\tB\ns1\tNTC\t10\t20\ns2\tNTC\t30\t40\ns3\tg2\t50\t60\ns4\tg3\t5\t6\n"


@pytest.mark.parametrize(
    ("controls", "expected"),
    [
        ("NTC", [True, True, False, False]),
        ("s3", [False, False, True, False]),
        (["s1", "g3"], [True, False, False, True]),
        ({"NTC", "s4"}, [True, True, False, True]),
        (np.array([False, True, False, False]), [False, True, False, False]),
    ],
)
def test_controls_in_memory(write, controls, expected):
    data = read_counts(write("c.txt", CTRL), controls=controls)
    np.testing.assert_array_equal(data.controls, expected)


def test_controls_from_files(write, tmp_path):
    counts = write("c.txt", CTRL)
    ids = write("control_sgrna.txt", "# my controls\ns1\n\ns4\n")
    genes = write("control_gene.txt", "gene\nNTC\n")
    np.testing.assert_array_equal(
        read_counts(counts, controls=ids).controls, [True, False, False, True]
    )
    np.testing.assert_array_equal(
        read_counts(counts, controls=Path(genes)).controls, [True, True, False, False]
    )


def test_unknown_controls(write, expect_error):
    counts = write("c.txt", CTRL)
    expect_error(
        lambda: read_counts(counts, controls=["s1", "x1", "x2"]),
        re.escape("controls: 2 control id(s) are neither an sgRNA id nor a gene label")
        + ".*'x1', 'x2'$",
    )
    many = [f"bad{i}" for i in range(8)]
    msg = expect_error(lambda: read_counts(counts, controls=many), "8 control id")
    assert "'bad4' and 3 more" in msg
    bad_file = write("ctrl.txt", "s1\nnope\n")
    expect_error(
        lambda: read_counts(counts, controls=bad_file), r"^ctrl\.txt: 1 control id.*'nope'"
    )
    expect_error(
        lambda: read_counts(counts, controls="BRCA1"),
        "'BRCA1' is not an sgRNA id, a gene label or an existing file",
    )
    expect_error(lambda: read_counts(counts, controls=[True, False]), "one value per sgRNA")


def test_gene_groups_passed_through(write):
    data = read_counts(write("c.txt", CTRL), gene_groups={"NTC": "control", "g2": "essential"})
    assert data.gene_groups is not None
    assert data.gene_groups.to_dict() == {"NTC": "control", "g2": "essential", "g3": "ungrouped"}


# ---------------------------------------------------------------- real files
def test_real_mageck_sample_txt(data_dir):
    path = data_dir / "mageck-leukemia" / "sample.txt"
    data = read_counts(path, controls=data_dir / "mageck-leukemia" / "control_sgrna.txt")
    assert (data.n_sgrnas, data.n_genes, data.n_samples) == (999, 100, 4)
    assert list(data.samples.index) == ["HL60.initial", "KBM7.initial", "HL60.final", "KBM7.final"]
    assert data.sgrnas[0] == "A1CF_m52595977"
    np.testing.assert_array_equal(data.counts[0], [213, 274, 883, 175])
    assert data.controls.sum() == 10
    assert set(data.genes_of_sgrna[data.controls]) == {"AHNAK"}
    # independent cross-check of the depth with a plain pandas read
    raw = pd.read_csv(path, sep="\t")
    np.testing.assert_array_equal(data.depth.to_numpy(), raw.iloc[:, 2:].sum().to_numpy())


def test_real_leukemia_csv_with_pool_sheet(data_dir):
    sheet = {
        "sample": ["HL60.initial", "KBM7.initial", "HL60.final", "KBM7.final"],
        "condition": ["initial", "initial", "final", "final"],
        "cell_line": ["HL60", "KBM7", "HL60", "KBM7"],
    }
    data = read_counts(
        data_dir / "mageck-leukemia" / "leukemia.new.csv",
        sheet,
        controls=data_dir / "mageck-leukemia" / "control_gene.txt",
        size_factors="control",
    )
    assert (data.n_sgrnas, data.n_genes) == (9999, 1000)
    assert list(data.pool_samples) == ["HL60.initial", "KBM7.initial"]
    assert data.size_factor_method == "control"
    assert data.controls.sum() == 10
    # leukemia.new.csv is a superset of sample.txt: the shared guides have equal counts
    small = read_counts(data_dir / "mageck-leukemia" / "sample.txt")
    rows = pd.Index(data.sgrnas).get_indexer(small.sgrnas)
    assert (rows >= 0).all()
    np.testing.assert_array_equal(data.counts[rows], small.counts)


def test_real_bagel_hap1_float_counts(data_dir):
    path = data_dir / "bagel-hap1-tkov3" / "reads_hap1.txt"
    sheet = pd.DataFrame(
        {
            "sample": ["HAP1_T0", "HAP1_T18A", "HAP1_T18B", "HAP1_T18C"],
            "condition": ["T0", "T18", "T18", "T18"],
            "replicate": ["0", "A", "B", "C"],
        }
    )
    data = read_counts(path, sheet)
    assert (data.n_sgrnas, data.n_genes, data.n_samples) == (71090, 18056, 4)
    assert data.counts.dtype == np.int64
    assert list(data.pool_samples) == ["HAP1_T0"]
    assert data.sgrnas[0] == "ACTGGCGCCATCGAGAGCCA"
    np.testing.assert_array_equal(data.counts[0], [239, 245, 230, 62])
    np.testing.assert_array_equal(data.counts[1], [1647, 415, 313, 394])
    raw = pd.read_csv(path, sep="\t")
    np.testing.assert_array_equal(data.counts, raw.iloc[:, 2:].to_numpy().astype(np.int64))


def test_top_level_lazy_exports():
    assert sf.read_counts is read_counts
    assert sf.read_sample_sheet is sf.io.read_sample_sheet
    assert sf.read_gene_groups is sf.io.read_gene_groups
    assert sf.filter_sgrnas is sf.io.filter_sgrnas
