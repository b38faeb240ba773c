"""Guide states with several effects per gene: the mixture of Laplace approximations.

Checked against the exact grid (one effect per gene, where both apply), against
numerical integration of one small block, and end to end on a simulated two-treatment
screen in JACKS's joint design.
"""

from __future__ import annotations

import numpy as np
import pytest

import screenformula as sf
from screenformula.inference.two_stage import grid as core
from screenformula.inference.two_stage import state_mixture as sm


def test_state_vectors_follow_the_rule_and_the_cap() -> None:
    assert len(sm.state_vectors(5, "majority")) == 1 + 5 + 10
    assert len(sm.state_vectors(4, "majority")) == 1 + 4
    assert len(sm.state_vectors(7, "majority")) == 1 + 7 + 21  # capped at MOST_FAILING = 2
    assert len(sm.state_vectors(3, "any")) == 1 + 3 + 3
    assert len(sm.state_vectors(6, "none")) == 1
    works = sm.state_vectors(5, "majority")
    assert works[0].all() and ((~works).sum(1) <= 2).all()
    prior = sm.log_state_prior(works, 0.3)
    assert np.isclose(np.exp(prior).sum(), 1.0)


def _screen(rng: np.random.Generator, n_genes: int, k: int, w: np.ndarray) -> dict:
    effect = np.where(rng.random(n_genes) < 0.3, rng.normal(-1.5, 0.5, n_genes), 0.0)
    fails = rng.random((n_genes, k)) < 0.2
    guide = np.where(fails, 0.0, effect[:, None]) + rng.normal(0, 0.1, (n_genes, k))
    mu = np.exp(rng.normal(6, 0.5, (n_genes, k))[..., None] + guide[..., None] * w)
    y = rng.negative_binomial(30.0, 30.0 / (30.0 + mu)).astype(float)
    J = len(w)
    return {
        "y": y,
        "base": np.zeros((n_genes, k, J)),
        "W": np.broadcast_to(w[None, None, :, None], (n_genes, k, J, 1)).copy(),
        "wd": np.broadcast_to(w, (n_genes, k, J)).copy(),
        "phi": np.full((n_genes, k, J), 30.0),
        "fails": fails,
    }


def test_one_effect_agrees_with_the_exact_grid() -> None:
    """Gene means and sds of the mixture against the grid's, same model and globals."""
    rng = np.random.default_rng(0)
    n_genes, k = 200, 5
    w = np.array([0, 0, 0, 1, 1, 1.0])
    s = _screen(rng, n_genes, k, w)
    b0, sd_b, sd_d, pi = 0.0, 1.0, 0.1, 0.25
    works = sm.state_vectors(k, "majority")
    fit = sm.laplace_states(
        s["y"], s["base"], s["W"], s["wd"], s["phi"], works,
        np.array([b0]), np.array([[sd_b**2]]), 6.0, 1.0, sd_d,
    )  # fmt: skip
    log_w = fit.log_z + sm.log_state_prior(works, pi)[None]
    beta, _, _, _ = sm.mixture_draws(fit, log_w, 3000, np.random.default_rng(1))
    flat = lambda x: x.reshape(n_genes * k, -1)  # noqa: E731
    log_lik, _ = core.guide_log_lik(
        flat(s["y"]), flat(s["base"]), flat(s["wd"]), flat(s["phi"]), 6.0, 1.0
    )
    grid = core.StateGrid(np.repeat(np.arange(n_genes), k), log_lik, "majority", df=None)
    log_post = grid.log_post(b0, sd_b, sd_d, pi)
    mean = core.posterior_mean(log_post)
    post = np.exp(log_post - log_post.max(1, keepdims=True))
    post /= post.sum(1, keepdims=True)
    sd = np.sqrt((post * core.GRID**2).sum(1) - mean**2)
    ok = s["fails"].sum(1) <= (k - 1) // 2  # genes the majority rule can explain
    np.testing.assert_allclose(beta[:, ok, 0].mean(0), mean[ok], atol=0.05)
    ratio = beta[:, ok, 0].std(0) / sd[ok]
    assert 0.9 < np.median(ratio) < 1.1


def test_laplace_marginal_matches_numerical_integration() -> None:
    """One gene of one guide, every guide working: log_z against a 3-D quadrature."""
    y = np.array([[[400.0, 380.0, 150.0, 170.0]]])
    w = np.array([0.0, 0.0, 1.0, 1.0])
    phi = np.full((1, 1, 4), 20.0)
    args = (np.zeros((1, 1, 4)), w[None, None, :, None], w[None, None, :], phi)
    fit = sm.laplace_states(
        y, *args[:3], phi, np.ones((1, 1), bool), np.array([0.0]), np.array([[0.25]]), 6.0, 0.5, 0.2
    )
    beta = np.linspace(-2.5, 1.5, 121)[:, None, None]
    a = np.linspace(4.0, 8.0, 121)[None, :, None]
    d = np.linspace(-1.0, 1.0, 81)[None, None, :]
    eta = a[..., None] + (beta + d)[..., None] * w
    mu = np.exp(eta)
    ph = 20.0
    log_lik = (ph * (np.log(ph) - np.log(ph + mu)) + y[0, 0] * (eta - np.log(ph + mu))).sum(-1)
    log_prior = (
        -0.5 * (beta / 0.5) ** 2 - np.log(0.5)
        - 0.5 * ((a - 6.0) / 0.5) ** 2 - np.log(0.5)
        - 0.5 * (d / 0.2) ** 2 - np.log(0.2)
        - 1.5 * np.log(2 * np.pi)
    )  # fmt: skip
    cell = (4.0 / 120) * (4.0 / 120) * (2.0 / 80)
    exact = np.log(np.exp(log_lik + log_prior - (log_lik + log_prior).max()).sum() * cell)
    exact += (log_lik + log_prior).max()
    assert fit.log_z[0, 0] == pytest.approx(exact, abs=0.02)


@pytest.mark.slow
def test_joint_design_with_states_follows_the_working_guides() -> None:
    """Two treatments, JACKS's design: a hit with one failing guide keeps its LFC."""
    raw, truth = sf.simulate_screen(n_genes=50, treatments=("drugA", "drugB"), random_seed=5)
    raw = raw.subset(samples=[s for s in raw.samples.index if not raw.samples.loc[s, "pool"]])
    sheet = raw.samples.copy()
    sheet["treated"] = ["no" if t == "control" else "yes" for t in sheet["treatment"]]
    counts = raw.counts.copy()
    role = sheet["treatment"].to_numpy()
    genes_of = np.asarray(raw.gene_names)[raw.gene_codes]
    lfc = truth.genes.pivot(index="gene", columns="treatment", values="lfc_log2")
    target = str(lfc["drugA"].abs().add(lfc["drugB"].abs()).idxmax())
    row = int(np.flatnonzero(genes_of == target)[0])
    control = np.flatnonzero(role == "control")
    for drug in ("drugA", "drugB"):
        counts[row, np.flatnonzero(role == drug)] = counts[row, control]
    data = sf.ScreenData(counts, raw.sgrnas, raw.genes_of_sgrna, sheet)
    formula = "count ~ 1 + treatment + (1 + treatment | gene) + (1 + treated | gene:sgrna)"
    off = {}
    for states in ("none", "majority"):
        model = sf.ScreenModel(
            formula,
            data,
            pool=None,
            reference={"treatment": "control", "treated": "no"},
            guide_states=states,
        )
        fit = model.fit(
            "two-stage", draws=400, random_seed=2, progress=False, stage1_draws=400,
            stage1_check_every=0,
        )  # fmt: skip
        genes = fit.contrast("treatment", ref="control").genes
        got = genes[genes["gene"] == target].set_index("contrast")["lfc"]
        off[states] = sum(
            abs(got[f"{drug} vs control"] - lfc.loc[target, drug]) for drug in ("drugA", "drugB")
        )
    assert fit.options["guide_states"]["stage2"] == "mixture"
    assert off["majority"] < off["none"], off
