"""The panel's scoring of simulated screens: realised FDR, power and coverage by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _paths import load_benchmark


@pytest.fixture(scope="module")
def ps():
    return load_benchmark("panel_simulated")


def case(offset: float = 0.0) -> dict:
    # true LFCs (natural log): two nulls, a strong depletion and enrichment, a small effect
    truth = pd.Series([0.0, 0.0, -1.0, 1.0, 0.2], index=["n1", "n2", "down", "up", "small"])
    return {"truth_ln": truth, "offset": offset}


def test_ours_local_and_qvalue_rules_count_false_calls_by_delta_and_by_null(ps, tmp_path):
    table = pd.DataFrame(
        {
            "gene": ["n1", "n2", "down", "up", "small"],
            "lfc": [0.8, -0.1, -1.4, -1.0, 0.3],  # 'up' called with the wrong sign
            "error_down": [0.9, 0.6, 0.01, 0.02, 0.9],
            "error_up": [0.04, 0.9, 0.9, 0.9, 0.03],
            "qvalue": [0.04, 0.5, 0.01, 0.02, 0.03],
            "hdi_low": [-0.2, -0.5, -1.8, -1.6, 0.0],
            "hdi_high": [1.2, 0.4, -1.0, -0.4, 0.6],
        }
    )
    path = tmp_path / "genes.tsv"
    table.to_csv(path, sep="\t", index=False)
    got = ps.score_simulated(path, case(), "ours")
    # local rule (error <= 0.05): n1 (null), down (true), up (wrong sign), small (|LFC| <= 0.5)
    assert got["local_calls"] == 4
    assert got["local_false"] == 3 and got["local_null_false"] == 2
    assert got["local_real"] == 2 and got["local_true_calls"] == 1
    assert got["local_power"] == 0.5
    assert got["calls"] == 4  # the q-value rule calls the same four here
    # 90 % HDIs (log2) holding the truth: n1, n2, down (-1.44 log2); not up, not small (0.29)
    assert got["cover90"] == pytest.approx(4 / 5)


def test_mageck_calls_either_direction_and_the_offset_moves_the_truth(ps, tmp_path):
    table = pd.DataFrame(
        {
            "id": ["n1", "n2", "down", "up", "small"],
            "neg|fdr": [0.5, 0.01, 0.001, 0.9, 0.9],
            "pos|fdr": [0.9, 0.9, 0.9, 0.001, 0.9],
        }
    )
    path = tmp_path / "mageck.gene_summary.txt"
    table.to_csv(path, sep="\t", index=False)
    got = ps.score_simulated(path, case(), "mageck")
    assert (got["calls"], got["false"], got["null_false"], got["true_calls"]) == (3, 1, 1, 2)
    # every LFC shifted by -0.5 (normalisation): on that scale the nulls are depleted by
    # 0.72 log2, beyond delta, so calling n2 down is no longer false by delta; it stays
    # false by the null measure (no effect of its own); four genes are then real
    shifted = ps.score_simulated(path, case(offset=-0.5), "mageck")
    assert shifted["false"] == 0 and shifted["null_false"] == 1
    assert shifted["real"] == 4 and np.isclose(shifted["power"], 3 / 4)


def test_pooled_sums_screens_before_dividing(ps):
    a = {"calls": 10, "false": 1, "null_false": 0, "real": 10, "true_calls": 9}
    b = {"calls": 30, "false": 0, "null_false": 0, "real": 40, "true_calls": 30}
    pooled = ps.pooled([a, b, None])
    assert pooled["calls"] == 40 and pooled["false"] == 1 and pooled["screens"] == 2
    assert "FDR 2.5% / 0.0%" in ps.simulated_cell(pooled, seconds=False)
