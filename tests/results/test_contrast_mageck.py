"""MAGeCK-compatible output, checked with a reader written from MAGeCK's documented format.

The reader (``tests/_mageck_format.py``) follows the MAGeCK wiki, not our writer, and is
first checked on MAGeCK's own output.
"""

from __future__ import annotations

import numpy as np
import pytest
from _contrast_fakes import fake_fit, small_screen
from _mageck_format import read_gene_summary, read_sgrna_summary

from screenformula import datasets
from screenformula.errors import FitError

SEED_FORMULA = "count ~ 1 + treatment + (1 + treatment | gene) + (1 + treatment | gene:sgrna)"


def test_reader_accepts_mageck_own_output():
    genes = read_gene_summary(datasets.path("mageck_demo1.gene_summary.txt.gz"))
    guides = read_sgrna_summary(datasets.path("mageck_demo1.sgrna_summary.txt.gz"))
    assert len(genes) == 99 and genes[0]["neg|rank"] == 1
    assert len(guides) > 900 and len(guides[0]["control_count"]) == 2


@pytest.fixture(scope="module")
def result():
    data = small_screen()
    n = 400
    rng = np.random.default_rng(4)
    r_gene = rng.normal(0.0, 0.1, (n, 6, 3))
    r_gene[:, 0, 1] += -2.0  # G1 depleted by drugA
    r_gene[:, 3, 1] += 1.5  # G4 enriched by drugA
    fit, _ = fake_fit(data, SEED_FORMULA, {"r_gene": r_gene, "b": np.zeros(2)}, n_draws=n)
    return fit.contrast(a="drugA", delta=0.5)


def test_gene_summary_meanings(result, tmp_path):
    paths = result.to_mageck(tmp_path / "out" / "screen")
    assert [p.name for p in paths] == ["screen.gene_summary.txt", "screen.sgrna_summary.txt"]
    genes = {r["id"]: r for r in read_gene_summary(paths[0])}
    table = result.genes.set_index("gene")
    floor = 1.0 / (result.settings["n_draws"] + 1)
    for gene, rec in genes.items():
        row = table.loc[gene]
        assert rec["num"] == row["n_sgrna"] == 3
        assert rec["neg|lfc"] == pytest.approx(row["lfc"], rel=1e-5)
        assert rec["pos|lfc"] == rec["neg|lfc"]
        assert rec["neg|p-value"] == pytest.approx(max(1 - row["prob_down"], floor), rel=1e-5)
        assert rec["pos|p-value"] == pytest.approx(max(1 - row["prob_up"], floor), rel=1e-5)
        assert rec["neg|fdr"] == pytest.approx(max(row["qvalue_down"], floor), rel=1e-5)
        assert rec["pos|fdr"] == pytest.approx(max(row["qvalue_up"], floor), rel=1e-5)
        assert rec["neg|score"] == pytest.approx(max(row["error_down"], floor), rel=1e-5)
        assert rec["hit"] == str(bool(row["hit"]))
    assert min(genes.values(), key=lambda r: r["neg|rank"])["id"] == "G1"
    assert min(genes.values(), key=lambda r: r["pos|rank"])["id"] == "G4"
    assert genes["G1"]["neg|goodsgrna"] == 3 and genes["G1"]["pos|goodsgrna"] == 0
    assert genes["G4"]["pos|goodsgrna"] == 3
    # sorted as MAGeCK sorts: by the negative-selection rank
    with open(paths[0]) as fh:
        ids = [line.split("\t")[0] for line in fh][1:]
    assert ids[0] == "G1"


def test_sgrna_summary_meanings(result, tmp_path):
    paths = result.to_mageck(tmp_path / "screen")
    guides = {r["sgrna"]: r for r in read_sgrna_summary(paths[1])}
    assert len(guides) == 18
    table = result.sgrnas.set_index("sgrna")
    norm = result.normalized_counts
    for sgrna, rec in guides.items():
        row = table.loc[sgrna]
        assert rec["Gene"] == row["gene"]
        assert rec["control_count"] == pytest.approx(
            list(norm.loc[sgrna, ["control_1", "control_2"]]), rel=1e-4
        )
        assert rec["treatment_count"] == pytest.approx(
            list(norm.loc[sgrna, ["drugA_1", "drugA_2"]]), rel=1e-4
        )
        assert rec["control_mean"] == pytest.approx(np.mean(rec["control_count"]), rel=1e-4)
        assert rec["LFC"] == pytest.approx(row["lfc"], rel=1e-5)
        assert rec["high_in_treatment"] == (row["lfc"] > 0)
        assert rec["p.twosided"] == pytest.approx(
            min(1.0, 2 * min(rec["p.low"], rec["p.high"])), rel=1e-4
        )
    assert guides["G1_1"]["LFC"] < -2


def test_files_are_not_overwritten_unless_asked(result, tmp_path):
    prefix = tmp_path / "screen"
    first = result.to_mageck(prefix)
    before = first[0].read_text()
    with pytest.raises(FitError, match="exists"):
        result.to_mageck(prefix)
    assert first[0].read_text() == before
    result.to_mageck(prefix, overwrite=True)
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary files left behind


def test_several_contrasts_give_one_pair_each(tmp_path):
    fit, _ = fake_fit(small_screen(), SEED_FORMULA)
    res = fit.contrast()
    paths = res.to_mageck(tmp_path / "all")
    names = sorted(p.name for p in paths)
    assert names == [
        "all.drugA_vs_control.gene_summary.txt",
        "all.drugA_vs_control.sgrna_summary.txt",
        "all.drugB_vs_control.gene_summary.txt",
        "all.drugB_vs_control.sgrna_summary.txt",
    ]
    for p in paths:
        (read_gene_summary if "gene" in p.name else read_sgrna_summary)(p)
    one = res.to_mageck(tmp_path / "b", contrast="drugB vs control")
    assert [p.name for p in one] == ["b.gene_summary.txt", "b.sgrna_summary.txt"]


def test_without_guide_draws_only_the_gene_file_is_written(tmp_path):
    fit, _ = fake_fit(small_screen(), SEED_FORMULA, store_sgrna=False)
    res = fit.contrast(a="drugA")
    with pytest.warns(UserWarning, match="no sgrna_summary"):
        paths = res.to_mageck(tmp_path / "g")
    assert [p.name for p in paths] == ["g.gene_summary.txt"]
    genes = read_gene_summary(paths[0])
    assert all(r["neg|goodsgrna"] is None for r in genes)
