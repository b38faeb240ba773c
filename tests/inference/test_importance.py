"""Stage 2's importance step: Pareto-smoothed weights, resampling, the guides' gather."""

import numpy as np
import pytest
from scipy import stats

from screenformula.inference.two_stage.importance import (
    ess,
    gather_guide_draws,
    pooled_khat,
    psis,
    systematic_resample,
)


def _log_ratios(target_sd: float, rows: int, n: int, seed: int) -> np.ndarray:
    """log p - log q of N(0, 1) proposals for a N(0, target_sd^2) target."""
    x = np.random.default_rng(seed).normal(size=(rows, n))
    return stats.norm.logpdf(x, scale=target_sd) - stats.norm.logpdf(x)


def test_psis_khat_tells_bounded_from_heavy_tailed_weights():
    # narrower target: bounded weights (true k < 0); wider by 3: k = 1 - 1/9 = 0.89
    light, k_light = psis(_log_ratios(0.8, 200, 1000, 1))
    _, k_heavy = psis(_log_ratios(3.0, 200, 1000, 2))
    assert np.median(k_light) < 0.5 and np.median(k_heavy) > 0.7
    np.testing.assert_allclose(np.exp(light).sum(axis=1), 1.0)  # normalised per row
    assert np.all(ess(light) <= 1000) and np.median(ess(light)) > 500


def test_psis_in_row_blocks_and_pooled_khat_equal_all_rows_at_once(monkeypatch):
    """Rows are smoothed a block at a time (bounded memory) with the same results."""
    from screenformula.inference.two_stage import importance

    parts = [_log_ratios(sd, 50, 120, seed) for seed, sd in enumerate((0.8, 1.5, 3.0))]
    whole = np.concatenate(parts, axis=1)
    lw_one, k_one = psis(whole)  # 50 rows: one block
    monkeypatch.setattr(importance, "_ROW_BLOCK", 7)  # 8 blocks, the last of 1 row
    lw_blocks, k_blocks = psis(whole)
    np.testing.assert_array_equal(lw_blocks, lw_one)
    np.testing.assert_array_equal(k_blocks, k_one)
    np.testing.assert_array_equal(pooled_khat(parts), k_one)
    assert np.isfinite(k_one).all() and k_one.std() > 0  # real fits, not a constant


def test_systematic_resample_keeps_each_weight_to_within_one_draw():
    rng = np.random.default_rng(3)
    w = rng.dirichlet(np.ones(40), size=25)
    idx = systematic_resample(np.log(w), 200, rng)
    assert idx.shape == (25, 200) and idx.min() >= 0 and idx.max() < 40
    counts = np.stack([np.bincount(row, minlength=40) for row in idx])
    assert np.all(np.abs(counts - 200 * w) < 1 + 1e-9)  # systematic: floor or ceil of n w


def test_gather_guide_draws_is_each_guides_resampled_proposals_draw_major():
    rng = np.random.default_rng(4)
    n_genes, n_sgrna, S, c, m = 7, 30, 11, 2, 9
    gene_of_guide = np.sort(rng.integers(0, n_genes, n_sgrna))
    proposals = rng.normal(size=(n_sgrna, S, c))
    idx = rng.integers(0, S, (n_genes, m))
    out = gather_guide_draws(proposals, idx, gene_of_guide)
    assert out.shape == (m, n_sgrna, c) and out.flags.c_contiguous
    for j in range(m):
        for g in range(n_sgrna):
            np.testing.assert_array_equal(out[j, g], proposals[g, idx[gene_of_guide[g], j]])


def test_gather_guide_draws_fills_a_given_buffer_or_refuses_a_wrong_one():
    rng = np.random.default_rng(5)
    proposals = rng.normal(size=(6, 4, 2))
    idx = rng.integers(0, 4, (3, 5))
    gene_of_guide = np.array([0, 0, 1, 1, 2, 2])
    out = np.full((5, 6, 2), np.nan)
    assert gather_guide_draws(proposals, idx, gene_of_guide, out=out) is out
    np.testing.assert_array_equal(out, gather_guide_draws(proposals, idx, gene_of_guide))
    with pytest.raises(ValueError, match="shape"):
        gather_guide_draws(proposals, idx, gene_of_guide, out=np.empty((5, 2, 6)))
