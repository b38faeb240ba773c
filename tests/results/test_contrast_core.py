"""The NumPy core of contrasts: each summary's meaning on small hand-built posteriors."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from screenformula.results import contrast_core as core


def test_all_draws_positive_gives_certain_sign():
    x = np.abs(np.random.default_rng(0).normal(1.0, 0.5, (1000, 3))) + 1e-3
    s = core.summarize(x)
    assert np.all(s["prob_up"] == 1.0)
    assert np.all(s["prob_down"] == 0.0)
    assert np.all(s["lfsr"] == 0.0)
    assert np.all(s["error"] == 0.0)
    assert np.all(s["qvalue"] == 0.0)
    assert np.all(s["hit"])
    assert np.all(s["error_down"] == 1.0)  # calling it "down" is surely wrong


def test_symmetric_draws_give_lfsr_one_half():
    half = np.random.default_rng(1).normal(0.0, 1.0, (500, 4))
    x = np.concatenate([half, -half])  # exactly symmetric
    assert np.allclose(core.prob_up(x), 0.5)
    assert np.allclose(core.prob_down(x), 0.5)
    assert np.allclose(core.lfsr(x), 0.5)
    assert not core.summarize(x)["hit"].any()


def test_draws_at_exactly_zero_count_against_both_signs():
    x = np.zeros((100, 1))
    assert core.prob_up(x)[0] == 0.0 and core.prob_down(x)[0] == 0.0
    assert core.lfsr(x)[0] == 1.0  # sign unknown, not "certain"
    assert core.pep(x, 0.0)[0] == 1.0
    # 30 % of the draws at 0, the rest positive: P(x >= 0) = 1, P(x <= 0) = 0.3
    y = np.concatenate([np.zeros(30), np.ones(70)])[:, None]
    assert core.lfsr(y)[0] == pytest.approx(0.3)
    assert core.prob_up(y)[0] == pytest.approx(0.7)


def test_pep_and_local_errors_with_a_minimum_effect():
    # draws -2, -0.5, 0.2, 1, 3 repeated: |x| <= 0.5 for 2 of 5
    x = np.tile([-2.0, -0.5, 0.2, 1.0, 3.0], 20)[:, None]
    assert core.pep(x, 0.5)[0] == pytest.approx(0.4)
    down, up, err = core.local_errors(x, 0.5)
    assert down[0] == pytest.approx(0.8)  # 1 - P(x < -0.5)
    assert up[0] == pytest.approx(0.6)  # 1 - P(x > 0.5)
    assert err[0] == pytest.approx(0.6)
    # the local error is the PEP plus the chance of a large effect on the other side
    assert err[0] == pytest.approx(core.pep(x, 0.5)[0] + 0.2)
    # with delta = 0 the local error is the lfsr
    assert core.local_errors(x, 0.0)[2][0] == pytest.approx(core.lfsr(x)[0])


def test_qvalues_are_running_means_of_sorted_errors():
    err = np.array([0.01, 0.2, 0.05, 0.5])
    expected = np.array([0.01, (0.01 + 0.05 + 0.2) / 3, 0.03, (0.01 + 0.05 + 0.2 + 0.5) / 4])
    assert np.allclose(core.qvalues(err), expected)
    # ties share one q-value: the mean over every error <= theirs
    assert np.allclose(core.qvalues(np.array([0.0, 0.1, 0.0, 0.1])), [0.0, 0.05, 0.0, 0.05])
    # NaN stays NaN and is left out of the others
    q = core.qvalues(np.array([0.2, np.nan, 0.0]))
    assert np.isnan(q[1]) and np.allclose(q[[0, 2]], [0.1, 0.0])


def test_qvalues_hit_calls_on_a_hand_example():
    # five items with known sign probabilities; delta = 0 so error = lfsr
    p_up = np.array([1.0, 0.98, 0.9, 0.6, 0.02])
    n = 100
    x = np.where(np.arange(n)[:, None] < np.round(p_up * n), 1.0, -1.0)
    s = core.summarize(x, fdr_target=0.05, call_rule="qvalue")
    assert np.allclose(s["lfsr"], [0.0, 0.02, 0.1, 0.4, 0.02])
    # sorted errors 0, .02, .02, .1, .4 -> running means 0, .04/3 (tie), .14/4, .54/5
    assert np.allclose(s["qvalue"], [0.0, 0.04 / 3, 0.14 / 4, 0.54 / 5, 0.04 / 3])
    # the q-value rule lets the third item (a 10 % chance of the wrong sign) in behind
    # the certain ones; the local rule (the default) calls only items whose own error is
    # at most the target, and every one of them is a q-value hit too
    assert s["hit"].tolist() == [True, True, True, False, True]
    local = core.summarize(x, fdr_target=0.05)
    assert local["hit"].tolist() == [True, True, False, False, True]
    assert np.all(s["hit"][local["hit"]])
    with pytest.raises(ValueError, match="call_rule must be one of local, qvalue"):
        core.summarize(x, call_rule="lfdr")
    # one-directional q-values: errors of "up" calls are 0, .02, .1, .4, .98
    assert s["qvalue_up"][4] == pytest.approx((0.02 + 0.1 + 0.4 + 0.98) / 5)
    # ... and of "down" calls 1, .98, .9, .6, .02: only the last item is a down hit
    assert np.allclose(s["qvalue_down"], [3.5 / 5, 2.5 / 4, 1.52 / 3, 0.62 / 2, 0.02])


def test_hdi_of_known_distributions():
    rng = np.random.default_rng(2)
    normal = rng.normal(0.0, 1.0, 200_000)
    low, high = core.hdi(normal, 0.94)
    z = stats.norm.ppf(0.97)
    assert low[0] == pytest.approx(-z, abs=0.03) and high[0] == pytest.approx(z, abs=0.03)
    expo = rng.exponential(1.0, 200_000)
    low, high = core.hdi(expo, 0.9)
    assert low[0] == pytest.approx(0.0, abs=0.01)  # the mode sits at the edge
    assert high[0] == pytest.approx(-np.log(0.1), abs=0.03)
    # hand example: 10 sorted draws, 70 % -> window of 7 steps; the narrowest is 0..7
    x = np.array([0, 1, 2, 3, 4, 5, 6, 7, 20, 40], dtype=float)
    assert [v[0] for v in core.hdi(x, 0.7)] == [0.0, 7.0]


def test_blocks_do_not_change_results():
    x = np.random.default_rng(3).standard_normal((300, 50))
    a = core.summarize(x, delta=0.3, chunk_size=7)
    b = core.summarize(x, delta=0.3, chunk_size=1000)
    for key in a:
        assert np.allclose(a[key], b[key], equal_nan=True), key
    assert np.allclose(a["mean"], x.mean(axis=0))
    assert np.allclose(a["sd"], x.std(axis=0, ddof=1))
    low, high = core.hdi(x, 0.94, chunk_size=5)
    assert np.allclose(low, a["hdi_low"]) and np.allclose(high, a["hdi_high"])


def test_prob_top_and_bottom_on_a_constructed_case():
    n = 1000
    x = np.zeros((n, 4))
    x[:, 2] = 5.0  # item 2 is always the largest
    x[: n // 4, 1] = 10.0  # ... except in a quarter of the draws, where item 1 is
    x[:, 3] = -1.0  # item 3 always the smallest
    assert np.allclose(core.prob_extreme(x), [0.0, 0.25, 0.75, 0.0])
    assert np.allclose(core.prob_extreme(x, largest=False), [0.0, 0.0, 0.0, 1.0])
    assert core.prob_extreme(x).sum() == pytest.approx(1.0)


def test_ranks_per_draw():
    x = np.array([[3.0, 1.0, 2.0], [1.0, 3.0, 2.0]])
    assert core.rank_draws(x).tolist() == [[1, 3, 2], [3, 1, 2]]
    assert core.rank_draws(x, descending=False).tolist() == [[3, 1, 2], [1, 3, 2]]
    assert np.allclose(core.mean_rank(x), [2.0, 2.0, 2.0])


def test_evidence_order_breaks_ties_by_standardised_effect():
    ranks = core.evidence_order(
        np.array([0.0, 0.0, 0.3, 0.01]), np.array([1.0, -5.0, 2.0, 1.0]), np.ones(4)
    )
    assert ranks.tolist() == [2, 1, 4, 3]


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="NaN or infinite"):
        core.summarize(np.array([[0.0, np.nan], [1.0, 2.0]]))
    with pytest.raises(ValueError, match="hdi_prob"):
        core.hdi(np.zeros((4, 1)), 1.5)
    with pytest.raises(ValueError, match="delta"):
        core.pep(np.zeros((4, 1)), -1)
    with pytest.raises(ValueError, match="2-D"):
        core.as_draws(np.zeros((2, 2, 2)))
