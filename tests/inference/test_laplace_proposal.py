"""Stage 2's importance proposals: the numba pass draws what the Laplace factor defines."""

from __future__ import annotations

import numpy as np
import pytest
from _screens import FORMULA
from scipy.special import gammaln

import screenformula as sf
from screenformula.inference.two_stage.density import BlockDensity
from screenformula.inference.two_stage.laplace import newton, proposal_points, sample_proposal

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def laplace_fit():
    data, _ = sf.simulate_screen(n_genes=30, n_controls=4, random_seed=3)
    density = BlockDensity(sf.ScreenModel(FORMULA, data))
    point = density.pymc_model.initial_point()
    glob = density.global_list({n: point[n] for n in density.layout.global_names})
    G0, U0 = density.initial_GU
    return newton(density, glob, G0, U0, max_iter=50)


@pytest.mark.parametrize("df", [7.0, np.inf])
def test_proposals_are_the_factors_transform_of_the_same_normals(laplace_fit, df):
    fit, n, scale = laplace_fit, 9, 1.3
    G, U, logq = sample_proposal(fit, n, np.random.default_rng(5), df=df, scale=scale)
    # the same numbers drawn in the same order, through the NumPy form of the transform
    rng = np.random.default_rng(5)
    n_genes, a = fit.G.shape
    n_sgrna, c = fit.U.shape
    zG = rng.standard_normal((n, n_genes, a))
    zU = rng.standard_normal((n, n_sgrna, c))
    w = rng.gamma(df / 2, 2 / df, size=(n, n_genes)) if np.isfinite(df) else np.ones((n, n_genes))
    root = scale / np.sqrt(w)
    dG, dU = fit.factor.transform(zG, zU)
    gog = fit.factor.gene_of_guide
    np.testing.assert_allclose(G, fit.G + dG * root[..., None], rtol=0, atol=1e-12)
    np.testing.assert_allclose(U, fit.U + dU * root[:, gog, None], rtol=0, atol=1e-12)
    # the log density: each gene's squared norm of z (its own and its guides'), scaled
    q = (zG**2).sum(-1)
    for i in range(n):
        q[i] += np.bincount(gog, weights=(zU[i] ** 2).sum(-1), minlength=n_genes)
    q = q / w
    dim = a + c * np.bincount(gog, minlength=n_genes)
    base = -0.5 * (dim * np.log(scale**2) - fit.factor.logdet)
    if np.isfinite(df):
        want = (
            gammaln((df + dim) / 2)
            - gammaln(df / 2)
            - dim / 2 * np.log(df * np.pi)
            + base
            - (df + dim) / 2 * np.log1p(q / df)
        )
    else:
        want = -dim / 2 * np.log(2 * np.pi) + base - q / 2
    np.testing.assert_allclose(logq, want, rtol=1e-12, atol=1e-10)


def test_gaussian_proposals_have_the_laplace_covariance(laplace_fit):
    """Each gene's draws scatter with covariance scale^2 S^-1, its block of P^-1."""
    fit, scale = laplace_fit, 1.1
    G, _, _ = sample_proposal(fit, 20000, np.random.default_rng(1), df=np.inf, scale=scale)
    dev = G - fit.G
    cov = np.einsum("nga,ngb->gab", dev, dev) / len(G)
    want = scale**2 * fit.factor.Sinv
    sd = np.sqrt(want.diagonal(0, 1, 2))  # (genes, a)
    # Monte Carlo errors: a mean's is sd / sqrt(n), a covariance's about sd_a sd_b / sqrt(n)
    assert np.all(np.abs(dev.mean(0)) < 5 * sd / np.sqrt(len(G)))
    assert np.all(np.abs(cov - want) < 5 * sd[:, :, None] * sd[:, None, :] / np.sqrt(len(G)))


def test_quasi_random_points_give_every_guide_coordinate_its_own_dimension(laplace_fit):
    fit = laplace_fit
    points = proposal_points(fit, 100, np.random.default_rng(2))
    assert points is not None
    n_genes, a = fit.G.shape
    n_sgrna, c = fit.U.shape
    gog = fit.factor.gene_of_guide
    assert points.points.shape[0] == 100 and points.dims_U.shape == (n_sgrna, c)
    for g in range(n_genes):  # a gene's guides: consecutive dimensions after its own a
        dims = np.sort(points.dims_U[gog == g].ravel())
        np.testing.assert_array_equal(dims, a + np.arange(len(dims)))
    uG, uU = points.uniforms(10, 30)
    assert uG.shape == (20, n_genes, a) and uU.shape == (20, n_sgrna, c)
    assert (0 <= uG).all() and (uG < 1).all() and (0 <= uU).all() and (uU < 1).all()
    # the shift is per coordinate: two genes see the same Sobol point differently
    assert not np.allclose(uG[:, 0], uG[:, 1])


def test_quasi_random_proposals_are_the_transform_of_their_points_normals(laplace_fit):
    from scipy.special import ndtri

    fit, n, scale, df = laplace_fit, 16, 1.1, 7.0
    points = proposal_points(fit, n, np.random.default_rng(4))
    uG, uU = points.uniforms(0, n)
    G, U, logq = sample_proposal(
        fit, n, np.random.default_rng(5), df=df, scale=scale, uniforms=points.uniforms(0, n)
    )
    w = np.random.default_rng(5).gamma(df / 2, 2 / df, size=(n, fit.G.shape[0]))
    dG, dU = fit.factor.transform(ndtri(uG), ndtri(uU))
    root = scale / np.sqrt(w)
    np.testing.assert_allclose(G, fit.G + dG * root[..., None], rtol=0, atol=1e-12)
    gog = fit.factor.gene_of_guide
    np.testing.assert_allclose(U, fit.U + dU * root[:, gog, None], rtol=0, atol=1e-12)
    assert np.isfinite(logq).all()


def test_quasi_random_gaussian_proposals_have_the_laplace_covariance(laplace_fit):
    fit, scale, n = laplace_fit, 1.1, 4096
    points = proposal_points(fit, n, np.random.default_rng(1))
    G, _, _ = sample_proposal(
        fit, n, np.random.default_rng(1), df=np.inf, scale=scale, uniforms=points.uniforms(0, n)
    )
    dev = G - fit.G
    cov = np.einsum("nga,ngb->gab", dev, dev) / n
    want = scale**2 * fit.factor.Sinv
    sd = np.sqrt(want.diagonal(0, 1, 2))
    assert np.all(np.abs(dev.mean(0)) < 5 * sd / np.sqrt(n))
    assert np.all(np.abs(cov - want) < 5 * sd[:, :, None] * sd[:, None, :] / np.sqrt(n))
