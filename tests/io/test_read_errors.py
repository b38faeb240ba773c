"""Errors that used to leave a user stuck: each names the file, row, column or sample,
and its advice is a setting of the interface in use (issue 16)."""

from __future__ import annotations

import gzip
import pickle

import numpy as np
import pandas as pd
import pytest

import screenformula as sf
from screenformula.io import ScreenData, read_counts
from screenformula.io.advice import AdvisedDataError

WIDE = "sgRNA\tGene\tA\tB\tC\ns1\tg1\t10\t0\t5\ns2\tg1\t30\t0\t7\ns3\tg2\t50\t0\t9\n"
GOOD = "sgRNA\tGene\tA\tB\ns1\tg1\t10\t20\ns2\tg1\t30\t40\ns3\tg2\t50\t60\n"


# ------------------------------------------------------------ a sample without reads
@pytest.mark.parametrize("method", ["median", "total"])
def test_a_sample_without_reads_is_named_with_its_file(write, expect_error, method):
    path = write("zeros.txt", WIDE)
    message = expect_error(lambda: read_counts(path, size_factors=method), "has no reads")
    assert message.startswith("zeros.txt: sample 'B' has no reads")
    assert f"its {method!r} size factor" in message
    # the advice is Python for Python, and is not "use size_factors='total'"
    assert "size_factors='none'" in message and ".subset(samples=" in message
    assert "size_factors='total'" not in message


def test_without_normalisation_a_sample_without_reads_is_read(write):
    data = read_counts(write("zeros.txt", WIDE), size_factors="none")
    assert data.depth["B"] == 0
    kept = data.subset(samples=["A", "C"]).with_size_factors("median")
    assert list(kept.samples.index) == ["A", "C"]


def test_control_guides_without_reads_in_a_sample(write, expect_error):
    text = "sgRNA\tGene\tA\tB\ns1\tNTC\t10\t0\ns2\tg1\t30\t40\ns3\tg2\t50\t60\n"
    message = expect_error(
        lambda: read_counts(write("c.txt", text), controls="NTC", size_factors="control"),
        "sample 'B' has no reads in its control guides",
    )
    assert message.startswith("c.txt: ")


def test_median_advice_is_a_setting_each_interface_words(write):
    text = "sgRNA\tGene\tA\tB\ns1\tg1\t0\t20\ns2\tg1\t30\t0\n"
    with pytest.raises(AdvisedDataError) as info:
        read_counts(write("z.txt", text))
    err = info.value
    assert str(err) == (
        "z.txt: cannot compute median-of-ratios size factors: every sgRNA has a zero count "
        "in some sample (use size_factors='total')"
    )
    cli = err.worded({"size_factors": lambda v: f"--norm-method {v}"})
    assert cli.endswith("(use --norm-method total)")
    assert isinstance(err, sf.ScreenDataError)
    again = pickle.loads(pickle.dumps(err))  # survives a worker process
    assert str(again) == str(err) and again.fixes == {"size_factors": "total"}


def test_missing_count_advice(write):
    path = write("nan.txt", GOOD.replace("\t40\n", "\tNA\n"))
    with pytest.raises(AdvisedDataError) as info:
        read_counts(path)
    assert str(info.value) == (
        "nan.txt line 3, column 'B': count is missing (use nan='drop' to drop such sgRNAs)"
    )
    assert info.value.worded({"nan": lambda v: f"--nan {v}"}).endswith(
        "(use --nan drop to drop such sgRNAs)"
    )


# --------------------------------------------------------------- counts of 2^31 and more
def test_a_count_of_two_to_the_31_is_rejected_at_read_time(write, expect_error):
    path = write("big.txt", GOOD.replace("\t40\n", f"\t{2**31}\n"))
    message = expect_error(lambda: read_counts(path), "too large")
    assert message == (
        "big.txt line 3, column 'B': count 2147483648 is too large "
        "(counts must be below 2^31 = 2,147,483,648)"
    )
    below = read_counts(write("ok.txt", GOOD.replace("\t40\n", f"\t{2**31 - 1}\n")))
    assert below.counts.max() == 2**31 - 1


def test_a_huge_count_in_an_integer_dataframe_or_by_hand(expect_error):
    frame = pd.DataFrame(
        {"sgRNA": ["s1", "s2"], "Gene": ["g1", "g2"], "A": [5, 7], "B": [2**40, 3]}
    )
    expect_error(lambda: read_counts(frame), r"count table row 1, column 'B': count 1099511627776")
    sheet = pd.DataFrame({"condition": ["a", "b"]}, index=["A", "B"])
    expect_error(
        lambda: ScreenData(np.array([[1, 2**31], [3, 4]]), ["s1", "s2"], ["g", "g"], sheet),
        "must be below 2",
    )


# ---------------------------------------------------------------- damaged compressed files
def _damaged(tmp_path, kind: str):
    good = gzip.compress(GOOD.encode())
    data = {
        "flipped": good[:20] + bytes(b ^ 0xFF for b in good[20:40]) + good[40:],
        "truncated": good[: len(good) // 2],
        "not gzip": GOOD.encode(),
    }[kind]
    path = tmp_path / "counts.txt.gz"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("kind", ["flipped", "truncated", "not gzip"])
def test_a_damaged_gz_file_is_named(tmp_path, expect_error, kind):
    path = _damaged(tmp_path, kind)
    message = expect_error(lambda: read_counts(path), "counts.txt.gz")
    assert message.startswith("counts.txt.gz: the compressed file is damaged or truncated (")


@pytest.mark.parametrize("kind", ["flipped", "not gzip"])
def test_a_damaged_gz_sample_sheet_or_controls_file_is_named(write, tmp_path, kind):
    counts = write("c.txt", GOOD)
    path = _damaged(tmp_path, kind).rename(tmp_path / "sheet.tsv.gz")
    with pytest.raises(sf.ScreenDataError, match=r"^sheet\.tsv\.gz: the compressed file"):
        read_counts(counts, samples=path)
    controls = path.rename(tmp_path / "controls.txt.gz")
    with pytest.raises(sf.ScreenDataError, match=r"^controls\.txt\.gz: the compressed file"):
        read_counts(counts, controls=controls)
