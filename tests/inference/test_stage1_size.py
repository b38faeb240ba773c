"""Stage 1's subsample grows with the gene-level effects; correlations judge convergence."""

from __future__ import annotations

import numpy as np
import xarray as xr

from screenformula.inference.two_stage.config import TwoStageConfig
from screenformula.inference.two_stage.runner import ENV_OPTIONS, env_options
from screenformula.inference.two_stage.stage1 import convergence, lkj_correlations


def test_stage_one_sees_150_genes_per_gene_level_effect_and_at_least_300():
    config = TwoStageConfig()
    assert config.stage1_gene_count(2) == 300  # baseline and one slope: as before
    assert config.stage1_gene_count(1) == 300
    assert config.stage1_gene_count(3) == 450  # two treated groups
    assert config.stage1_gene_count(6) == 900  # JACKS's five lines in one model
    assert TwoStageConfig(stage1_genes=40).stage1_gene_count(6) == 40  # asked: kept


def test_the_environment_sets_an_integer_stage_one_size(monkeypatch):
    monkeypatch.setenv(ENV_OPTIONS, "stage1_genes=800")
    assert env_options() == {"stage1_genes": 800}
    assert isinstance(env_options()["stage1_genes"], int)


def _cholesky_draws(coupled: bool, rng: np.random.Generator, n: int = 2000) -> np.ndarray:
    """3 x 3 LKJ factors with L10 = a and L20 = b, a ~ Uniform(0.5, 0.7) and b = a
    (``coupled``) or b = 1.2 - a: every entry has the same marginal either way, but
    cor(1, 2) = L10 * L20 spreads over 0.25-0.49 when coupled and sits at 0.35-0.36 when
    not."""
    a = rng.uniform(0.5, 0.7, n)
    b = a if coupled else 1.2 - a
    L = np.zeros((n, 3, 3))
    L[:, 0, 0] = 1.0
    L[:, 1, 0] = a
    L[:, 1, 1] = np.sqrt(1 - a**2)
    L[:, 2, 0] = b
    L[:, 2, 2] = np.sqrt(1 - b**2)
    return L


def test_a_correlated_terms_convergence_is_judged_on_its_correlations():
    rng = np.random.default_rng(0)
    L = np.stack([_cholesky_draws(True, rng), _cholesky_draws(False, rng)])  # 2 chains
    post = xr.Dataset({"L_gene": (("chain", "draw", "a", "b"), L)})
    corr = lkj_correlations("L_gene", L)
    assert corr.shape == (2, 2000, 3)
    np.testing.assert_allclose(corr[..., 0], L[..., 1, 0])  # cor(0, 1) = L10
    np.testing.assert_allclose(corr[..., 2], L[..., 1, 0] * L[..., 2, 0])  # cor(1, 2)
    entries_only = convergence(post.rename({"L_gene": "x"}), ["x"])["x"]["rhat_max"]
    judged = convergence(post, ["L_gene"])["L_gene"]["rhat_max"]
    assert entries_only < 1.01  # the factor's own entries pass
    assert judged > 1.1  # its correlations do not
    assert lkj_correlations("sd_gene", L) is None  # not a Cholesky factor by name
