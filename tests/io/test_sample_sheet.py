from __future__ import annotations

import gzip
import re

import pandas as pd
import pytest

from screenformula.io import check_conditions, read_gene_groups, read_sample_sheet

SHEET = (
    "Sample\tCondition\tReplicate\tbatch\ttime\n"
    "T0\tplasmid\t1\tb1\t0\n"
    "A1\tdrug\t1\tb1\t14\n"
    "A2\tdrug\t2\tb2\t14\n"
)


def test_tsv_sheet(write):
    sheet = read_sample_sheet(write("sheet.tsv", SHEET))
    assert list(sheet.index) == ["T0", "A1", "A2"]
    assert sheet.index.name == "sample"
    assert list(sheet.columns) == ["condition", "replicate", "batch", "time", "pool"]
    assert list(sheet["condition"]) == ["plasmid", "drug", "drug"]
    # replicate and batch are labels, time is a number
    assert list(sheet["replicate"]) == ["1", "1", "2"]
    assert list(sheet["batch"]) == ["b1", "b1", "b2"]
    assert sheet["time"].tolist() == [0, 14, 14]
    assert pd.api.types.is_numeric_dtype(sheet["time"])
    # no pool column: 'plasmid' is a pool label
    assert sheet["pool"].dtype == bool
    assert list(sheet["pool"]) == [True, False, False]
    assert sheet.attrs["source"] == "sheet.tsv"


def test_csv_and_gz_sheet(write, tmp_path):
    text = SHEET.replace("\t", ",")
    assert read_sample_sheet(write("s.csv", text))["condition"].tolist() == [
        "plasmid",
        "drug",
        "drug",
    ]
    path = tmp_path / "s.tsv.gz"
    with gzip.open(path, "wt") as handle:
        handle.write(SHEET)
    assert list(read_sample_sheet(path).index) == ["T0", "A1", "A2"]


@pytest.mark.parametrize(
    ("conditions", "pool"),
    [
        (["T0", "Plasmid", "initial", "screen"], [True, True, True, False]),
        (["pDNA", "day0", "D0", "final"], [True, True, True, False]),
        (["pool", "DNA", "day-0", "t18"], [True, True, True, False]),
    ],
)
def test_pool_from_condition_labels(conditions, pool):
    sheet = read_sample_sheet({"sample": ["a", "b", "c", "d"], "condition": conditions})
    assert list(sheet["pool"]) == pool


def test_pool_column_boolean_ish(write):
    text = (
        "sample,condition,POOL\na,x,true\nb,x,False\nc,x,yes\nd,x,no\ne,x,1\nf,x,0\ng,x,Y\nh,x,n\n"
    )
    sheet = read_sample_sheet(write("s.csv", text))
    assert sheet["pool"].dtype == bool
    assert list(sheet["pool"]) == [True, False, True, False, True, False, True, False]
    # an explicit pool column wins over the condition label
    sheet = read_sample_sheet({"sample": ["a", "b"], "condition": ["T0", "x"], "pool": [0, 1]})
    assert list(sheet["pool"]) == [False, True]
    sheet = read_sample_sheet(
        {"sample": ["a", "b"], "condition": ["c", "d"], "pool": [True, False]}
    )
    assert list(sheet["pool"]) == [True, False]


def test_dict_and_dataframe_sources():
    by_condition = read_sample_sheet({"T0": "t0", "A": "drug"})
    assert by_condition["condition"].to_dict() == {"T0": "t0", "A": "drug"}
    assert list(by_condition["pool"]) == [True, False]
    frame = pd.DataFrame({"SAMPLE": ["x", "y"], "condition": ["c1", "c2"], "dose": [0.0, 1.5]})
    sheet = read_sample_sheet(frame)
    assert list(sheet.index) == ["x", "y"]
    assert sheet["dose"].tolist() == [0.0, 1.5]
    # a sheet returned by read_sample_sheet (index named "sample") reads back the same
    pd.testing.assert_frame_equal(read_sample_sheet(sheet), sheet)


def test_sample_names_are_text(write):
    sheet = read_sample_sheet(write("s.tsv", "sample\tcondition\n1\tA\n02\tB\n"))
    assert list(sheet.index) == ["1", "02"]
    sheet = read_sample_sheet({"sample": [1, 2], "condition": ["A", "B"]})
    assert list(sheet.index) == ["1", "2"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "sample\tcondition\nS1\tA\nS2\tB\nS1\tC\n",
            "sheet.tsv line 4: duplicate sample 'S1' (first on line 2)",
        ),
        ("sample\tcondition\nS1\tA\nS2\t\n", "sheet.tsv line 3: missing condition for sample 'S2'"),
        ("sample\tcondition\nS1\tA\n\tB\n", "sheet.tsv line 3: missing sample name"),
        (
            "sample\tcondition\tbatch\nS1\tA\tb1\nS2\tB\t\n",
            "sheet.tsv line 3: missing value in column 'batch' for sample 'S2'",
        ),
        (
            "sample\tcondition\tpool\nS1\tA\tyes\nS2\tB\tmaybe\n",
            "sheet.tsv line 3, column 'pool': pool value 'maybe' for sample 'S2' is not "
            "true/false, yes/no or 1/0",
        ),
        ("name\tcondition\nS1\tA\n", "sheet.tsv: the sample sheet needs a 'sample' column"),
        ("sample\tgroup_label\nS1\tA\n", "sheet.tsv: the sample sheet needs a 'condition' column"),
        (
            "sample\tcondition\tcell line\nS1\tA\tx\n",
            "sheet.tsv: sample sheet column 'cell line' is not a valid formula variable name",
        ),
        (
            "sample\tcondition\t2nd\nS1\tA\tx\n",
            "sheet.tsv: sample sheet column '2nd' is not a valid formula variable name",
        ),
        (
            "sample\tcondition\tcount\nS1\tA\t3\n",
            "sheet.tsv: sample sheet column 'count' clashes with a built-in variable",
        ),
        (
            "sample\tcondition\tCondition\nS1\tA\tB\n",
            "sheet.tsv: the sample sheet has two 'condition' columns",
        ),
        ("sample\tcondition\n", "sheet.tsv: the sample sheet has no rows"),
        ("sample\tcondition\tcondition\nS1\tA\tB\n", "sheet.tsv line 1: duplicate column"),
    ],
)
def test_bad_sheet(write, expect_error, text, message):
    path = write("sheet.tsv", text)
    expect_error(lambda: read_sample_sheet(path), "^" + re.escape(message))


def test_bad_sheet_in_memory(expect_error):
    expect_error(
        lambda: read_sample_sheet(pd.DataFrame({"sample": ["a", "a"], "condition": ["x", "y"]})),
        re.escape("sample sheet row 2: duplicate sample 'a' (first on row 1)"),
    )
    expect_error(
        lambda: read_sample_sheet({"sample": ["a", "b"], "condition": ["x", None]}),
        re.escape("sample sheet row 2: missing condition for sample 'b'"),
    )
    expect_error(
        lambda: read_sample_sheet({"sample": ["a", "b"], "condition": ["x"]}),
        "different lengths",
    )
    expect_error(lambda: read_sample_sheet({}), "the dict is empty")
    expect_error(lambda: read_sample_sheet(42), "must be a file path, a DataFrame or a dict")  # type: ignore[arg-type]


def test_check_conditions():
    sheet = read_sample_sheet({"T0": "T0", "a": "drug", "b": "dmso"})
    check_conditions(sheet, ["T0", "drug", "dmso"])  # no error
    with pytest.raises(Exception, match=r"unknown condition 'dmso' in sample sheet row 3"):
        check_conditions(sheet, ["T0", "drug"])


def test_check_conditions_message_is_one_line(expect_error):
    sheet = read_sample_sheet({"T0": "T0", "a": "drug"})
    message = expect_error(
        lambda: check_conditions(sheet, ["T0"]),
        r"^unknown condition 'drug' in sample sheet row 2",
    )
    assert "allowed: 'T0'" in message


# ---------------------------------------------------------------- gene groups
def test_gene_groups_file_with_and_without_header(write):
    expected = {"BRCA1": "essential", "TP53": "essential", "LacZ": "control"}
    no_header = write("g.txt", "BRCA1\tessential\nTP53\tessential\nLacZ\tcontrol\n")
    header = write("g.csv", "Gene,Group\nBRCA1,essential\nTP53,essential\nLacZ,control\n")
    for path in (no_header, header):
        groups = read_gene_groups(path)
        assert groups.to_dict() == expected
        assert groups.index.name == "gene"
        assert groups.name == "group"


def test_gene_groups_in_memory():
    expected = {"A": "g1", "B": "g2", "C": "g1"}
    assert read_gene_groups({"A": "g1", "B": "g2", "C": "g1"}).to_dict() == expected
    assert read_gene_groups({"g1": ["A", "C"], "g2": ["B"]}).to_dict() == {
        "A": "g1",
        "C": "g1",
        "B": "g2",
    }
    assert read_gene_groups(pd.Series(expected)).to_dict() == expected
    frame = pd.DataFrame({"group": ["g1", "g2"], "GENE": ["A", "B"], "other": [1, 2]})
    assert read_gene_groups(frame).to_dict() == {"A": "g1", "B": "g2"}
    # the same gene listed twice in the same group is kept once
    assert read_gene_groups(pd.DataFrame({"g": ["A", "A"], "grp": ["x", "x"]})).to_dict() == {
        "A": "x"
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "gene\tgroup\nA\tx\nB\ty\nA\tz\n",
            "g.txt: gene 'A' is listed in two groups ('x' on line 2, 'z' on line 4)",
        ),
        ("A\tx\nB\t\n", "g.txt line 2: empty group for gene 'B'"),
        ("A\tx\n\ty\n", "g.txt line 2: empty gene"),
        ("A\nB\n", "g.txt: expected two columns (gene, group), found 1"),
        ("A\tx\tq\n", "g.txt: expected two columns (gene, group), found 3"),
        ("gene\tgroup\n", "g.txt: no genes listed"),
    ],
)
def test_bad_gene_groups(write, expect_error, text, message):
    path = write("g.txt", text)
    expect_error(lambda: read_gene_groups(path), "^" + re.escape(message))


def test_gene_in_two_groups_in_dict(expect_error):
    expect_error(
        lambda: read_gene_groups({"ess": ["A", "B"], "non": ["C", "B"]}),
        "gene 'B' is listed in two groups \\('ess' on row 2, 'non' on row 4\\)",
    )
    expect_error(lambda: read_gene_groups(3.0), "gene groups must be")  # type: ignore[arg-type]


def test_real_reference_gene_sets_as_groups(data_dir):
    from screenformula.io import read_counts

    hart = data_dir / "reference-genesets" / "hart-bagel"

    def first_column(name: str) -> list[str]:
        lines = (hart / name).read_text().splitlines()[1:]  # header: GENE HGNC_ID ...
        return [line.split("\t")[0] for line in lines if line.strip()]

    ceg, neg = first_column("CEGv2.txt"), first_column("NEGv1.txt")
    assert (len(ceg), len(neg)) == (684, 927)
    groups = read_gene_groups({"essential": ceg, "nonessential": neg})
    # NEGv1 lists SLC34A1 twice (same group): kept once
    assert len(groups) == 684 + 926
    data = read_counts(data_dir / "bagel-hap1-tkov3" / "reads_hap1.txt", gene_groups=groups)
    # the data README: 646 of 684 CEGv2 and 797 of 927 NEGv1 genes match by symbol
    per_group = data.gene_groups.value_counts()
    assert per_group["essential"] == 646
    assert per_group["nonessential"] == 797
    assert per_group["ungrouped"] == 18056 - 646 - 797
