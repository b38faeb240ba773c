"""Scoring a result against references (`screenformula.evaluation`): MAGeCK, gene sets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from screenformula import datasets, demo, evaluation


def test_compare_with_mageck():
    ref = datasets.mageck_reference_output()
    same = evaluation.compare_with_mageck(ref, ref)
    assert same["n_genes"] == 99
    assert same["overlap_top10"] == 10 and same["overlap_top20"] == 20
    assert same["spearman_lfc"] == pytest.approx(1.0)
    assert same["mageck_top20"][0] == "ACTR8"
    # reversed depletion ranks: no overlap at the top, rank correlation -1
    flipped = ref.assign(**{"neg|rank": len(ref) + 1 - ref["neg|rank"]})
    out = evaluation.compare_with_mageck(flipped, ref)
    assert out["overlap_top10"] == 0 and out["spearman_neg_rank"] == pytest.approx(-1.0)
    # genes only one side has are left out (our table carries the AHNAK control gene)
    extra = pd.concat([ref, ref.head(1).assign(id="AHNAK", **{"neg|rank": 0})])
    assert evaluation.compare_with_mageck(extra, ref)["n_genes"] == 99


def test_roc_auc():
    positive = np.array([True, True, False, False])
    assert evaluation.roc_auc(np.array([4.0, 3.0, 2.0, 1.0]), positive) == 1.0
    assert evaluation.roc_auc(np.array([1.0, 2.0, 3.0, 4.0]), positive) == 0.0
    assert evaluation.roc_auc(np.array([1.0, 1.0, 1.0, 1.0]), positive) == 0.5  # ties count half
    assert evaluation.roc_auc(np.array([4.0, 2.0, 3.0, 1.0]), positive) == 0.75
    with pytest.raises(ValueError):
        evaluation.roc_auc(np.array([1.0, 2.0]), np.array([True, True]))


def test_naive_gene_lfc():
    data = demo.leukemia_data()
    lfc = evaluation.naive_gene_lfc(data, "treatment", "final", "initial")
    assert len(lfc) == 100 and np.isfinite(lfc).all()
    guides = data.genes_of_sgrna == "ACTR8"
    norm = data.counts[guides] / data.size_factors.to_numpy()
    by_guide = np.log2(norm[:, 2:].mean(axis=1) + 0.5) - np.log2(norm[:, :2].mean(axis=1) + 0.5)
    assert lfc["ACTR8"] == pytest.approx(by_guide.mean())
    # the strongest MAGeCK genes are depleted by this measure too
    assert (lfc[["ACTR8", "ACIN1", "ACLY"]] < lfc.median()).all()


def test_depletion_scores():
    genes = pd.DataFrame({"gene": ["a", "b", "c", "d"], "lfc": [-2.0, 0.5, -0.1, 1.0]})
    scored, scores, positive = evaluation.depletion_scores(genes, {"a", "c"}, ["b"])
    assert list(scored["gene"]) == ["a", "b", "c"]
    np.testing.assert_array_equal(scores, [2.0, -0.5, 0.1])
    np.testing.assert_array_equal(positive, [True, False, True])
    assert evaluation.roc_auc(scores, positive) == 1.0


def test_roc_curve():
    fpr, tpr = evaluation.roc_curve(np.array([3.0, 2.0, 1.0]), np.array([True, False, True]))
    np.testing.assert_allclose(fpr, [0.0, 0.0, 1.0, 1.0])
    np.testing.assert_allclose(tpr, [0.0, 0.5, 0.5, 1.0])
