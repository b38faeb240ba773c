"""The guide-states prototype's per-gene sums against brute-force enumeration of the states."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from _paths import load_benchmark
from scipy import special

proto = load_benchmark("proto_guide_states")


def brute_force(log_i: np.ndarray, fail: np.ndarray, pi: float, most: int | None) -> np.ndarray:
    """log sum over every state vector with at most ``most`` failing guides (prior normalised)."""
    k, total, norm = len(log_i), np.full(log_i.shape[1], -np.inf), -np.inf
    for states in itertools.product([0, 1], repeat=k):
        n_fail = sum(states)
        if most is not None and n_fail > most:
            continue
        prior = n_fail * np.log(pi) + (k - n_fail) * np.log1p(-pi)
        norm = np.logaddexp(norm, prior)
        terms = sum(fail[j] if s else log_i[j] for j, s in enumerate(states))
        total = np.logaddexp(total, prior + terms)
    return total - norm


@pytest.mark.parametrize("states", ["none", "any", "majority"])
def test_gene_sums_match_enumeration(states: str) -> None:
    rng = np.random.default_rng(3)
    sizes = [2, 3, 4, 5, 4, 1]
    gene = np.repeat(np.arange(len(sizes)), sizes)
    log_lik = rng.normal(-3.0, 2.0, size=(len(gene), len(proto.GRID)))
    grid = proto.GeneGrid(gene, log_lik, states)
    b0, sd_b, pi, sd_d = 0.1, 0.4, 0.3, 0.2
    got = grid.log_post(b0=b0, sd_b=sd_b, pi=pi, sd_d=sd_d)
    log_i = grid.convolved(sd_d)
    k = (b0 - proto.GRID[0]) / proto.STEP
    k0 = int(np.floor(k))
    fail = log_i[:, k0] * (1 - (k - k0)) + log_i[:, k0 + 1] * (k - k0)
    z = (proto.GRID - b0) / sd_b
    prior = special.gammaln(2.0) - special.gammaln(1.5) - 0.5 * np.log(3 * np.pi)
    prior = prior - 2.0 * np.log1p(z**2 / 3) - np.log(sd_b) + np.log(proto.STEP)
    for g, start in enumerate(np.r_[0, np.cumsum(sizes)[:-1]]):
        rows = slice(start, start + sizes[g])
        if states == "none":
            expected = log_i[rows].sum(0)
        else:
            most = None if states == "any" else (sizes[g] - 1) // 2
            expected = brute_force(log_i[rows], fail[rows][:, None], pi, most)
        np.testing.assert_allclose(got[g], expected + prior, rtol=1e-10, atol=1e-8)


def test_majority_keeps_one_outlying_guide_from_carrying_a_gene() -> None:
    """Four guides at 0 and one far up: 'any' can follow the one, 'majority' cannot."""
    grid_pts = proto.GRID
    guides = np.array([0.0, 0.0, 0.0, 0.0, 2.5])
    log_lik = -0.5 * ((grid_pts[None, :] - guides[:, None]) / 0.15) ** 2
    gene = np.zeros(len(guides), dtype=int)
    means = {}
    for states in ("any", "majority"):
        post = proto.GeneGrid(gene, log_lik, states).log_post(b0=0.0, sd_b=1.0, pi=0.6, sd_d=0.05)
        w = np.exp(post[0] - post[0].max())
        means[states] = float((w * grid_pts).sum() / w.sum())
    assert means["any"] > 1.0  # the gene follows its one working guide
    assert abs(means["majority"]) < 0.2
