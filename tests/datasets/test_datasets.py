from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _paths import SHARED_DATA

from screenformula import datasets
from screenformula.errors import ScreenDataError

SHARED = SHARED_DATA
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def hap1():
    return datasets.load_hap1_tkov3()


def test_bundled_files_exist():
    for name, filename in datasets.DATASETS.items():
        p = datasets.path(name)
        assert p.is_file(), name
        assert p.name == filename
        assert datasets.path(filename) == p
    data_dir = datasets.path("sources").parent
    for extra in (
        "SOURCES.md",
        "LICENSE-MAGeCK.txt",
        "LICENSE-BAGEL.txt",
        "README-mageck-leukemia.txt",
        "README-bagel-hap1-tkov3.txt",
        "README-reference-genesets.txt",
    ):
        assert (data_dir / extra).is_file(), extra
    sources = (data_dir / "SOURCES.md").read_text()
    assert "BSD 3-Clause" in sources and "MIT" in sources
    assert "6f68e9fe35106e84431df465d7385f2f1b6f299a" in sources
    assert "53388adbb4fb0931e5c9dda135502be19e4555f0" in sources


def test_unknown_name():
    with pytest.raises(ScreenDataError, match="no bundled dataset"):
        datasets.path("nope")


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared source data not available")
@pytest.mark.parametrize(
    ("name", "original"),
    [
        ("mageck_leukemia_sample", "mageck-leukemia/sample.txt"),
        ("mageck_leukemia_full", "mageck-leukemia/leukemia.new.csv"),
        ("mageck_control_sgrna", "mageck-leukemia/control_sgrna.txt"),
        (
            "mageck_demo1_gene_summary",
            "mageck-leukemia/reference_output_mageck_demo1/demo.gene_summary.txt",
        ),
        ("hap1_tkov3", "bagel-hap1-tkov3/reads_hap1.txt"),
        ("cegv2", "reference-genesets/hart-bagel/CEGv2.txt"),
        ("negv1", "reference-genesets/hart-bagel/NEGv1.txt"),
    ],
)
def test_bundled_files_are_byte_identical(name, original):
    with gzip.open(datasets.path(name), "rb") as fh:
        assert fh.read() == (SHARED / original).read_bytes()


def test_package_data_declared():
    text = (ROOT / "pyproject.toml").read_text()
    assert '"datasets/data/*"' in text


@pytest.mark.parametrize(
    ("which", "n_sgrnas", "n_genes"), [("sample", 999, 100), ("full", 9999, 1000)]
)
def test_mageck_leukemia(which, n_sgrnas, n_genes):
    data = datasets.load_mageck_leukemia(which)
    assert data.counts.shape == (n_sgrnas, 4)
    assert data.counts.dtype == np.int64
    assert data.n_genes == n_genes
    assert list(data.samples.index) == ["HL60.initial", "KBM7.initial", "HL60.final", "KBM7.final"]
    assert list(data.samples["condition"].astype(str)) == ["initial", "initial", "final", "final"]
    assert list(data.samples["condition"].cat.categories) == ["initial", "final"]
    assert list(data.samples["cell_line"]) == ["HL60", "KBM7", "HL60", "KBM7"]
    assert list(data.pool_samples) == ["HL60.initial", "KBM7.initial"]
    assert data.controls.sum() == 10
    assert set(data.genes_of_sgrna[data.controls]) == {"AHNAK"}
    assert data.counts[0].tolist() == [213, 274, 883, 175]


def test_mageck_initial_not_pool():
    data = datasets.load_mageck_leukemia(initial_as_pool=False)
    assert not data.pool_mask.any()
    with pytest.raises(ScreenDataError):
        datasets.load_mageck_leukemia("other")


def test_mageck_control_size_factors_match_mageck():
    # MAGeCK's demo log: median factors with --norm-method control (AHNAK guides).
    data = datasets.load_mageck_leukemia(size_factors="control")
    mageck = np.array(
        [1.582701653316349, 1.7345173601833033, 0.5375843168437389, 0.5105538115034376]
    )
    ours = data.size_factors.to_numpy()
    # MAGeCK multiplies counts by its factor, ours scale the mean: reciprocal up to a common
    # scale, and only roughly (MAGeCK's median-ratio details differ from DESeq2's).
    ratio = ours * mageck
    np.testing.assert_allclose(ratio / ratio.mean(), 1.0, rtol=0.05)


def test_hap1(hap1):
    assert hap1.counts.shape == (71_090, 4)
    assert hap1.counts.dtype == np.int64
    assert hap1.n_genes == 18_056
    assert list(hap1.samples.index) == ["HAP1_T0", "HAP1_T18A", "HAP1_T18B", "HAP1_T18C"]
    assert list(hap1.samples["condition"].astype(str)) == ["T0", "T18", "T18", "T18"]
    assert list(hap1.samples["replicate"]) == ["T0", "A", "B", "C"]
    assert list(hap1.pool_samples) == ["HAP1_T0"]
    assert hap1.controls.sum() == 96 + 24 + 22
    assert hap1.counts[0].tolist() == [239, 245, 230, 62]
    assert not hap1.sgrnas.has_duplicates


def test_hap1_t0_not_pool():
    assert not datasets.load_hap1_tkov3(t0_as_pool=False).pool_mask.any()


def test_integrality_check():
    frame = pd.DataFrame({"a": [1.0, 2.5]})
    with pytest.raises(ScreenDataError, match="whole numbers"):
        datasets._integer_counts(frame, "x")
    frame = pd.DataFrame({"a": [1.0, np.nan]})
    with pytest.raises(ScreenDataError, match="non-finite"):
        datasets._integer_counts(frame, "x")


def test_reference_genes(hap1):
    ref = datasets.load_reference_genes()
    assert set(ref) == {"essential", "nonessential"}
    assert len(ref["essential"]) == 684
    assert len(ref["nonessential"]) == 927
    assert not set(ref["essential"]) & set(ref["nonessential"])
    genes = set(hap1.gene_names)
    assert len(set(ref["essential"]) & genes) == 646
    assert len(set(ref["nonessential"]) & genes) == 797


def test_mageck_reference_output():
    genes = datasets.mageck_reference_output()
    assert genes.shape == (99, 14)
    assert genes.columns[0] == "id" and "neg|lfc" in genes.columns
    assert genes.iloc[0]["id"] == "ACTR8"
    sgrnas = datasets.mageck_reference_output("sgrna")
    assert len(sgrnas) == 999 and "LFC" in sgrnas.columns
