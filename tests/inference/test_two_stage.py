"""The two-stage engine: per-gene density, Laplace algebra, and agreement with full NUTS."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _screens import FORMULA

import screenformula as sf
from screenformula.inference.nuts import sample_nuts, stored_variables
from screenformula.inference.two_stage.density import BlockDensity
from screenformula.inference.two_stage.engine import fit_two_stage
from screenformula.inference.two_stage.laplace import factor, newton, segment_matrix

COEF = "treatment[treated]"


@pytest.fixture(scope="module")
def tiny_density():
    data, _ = sf.simulate_screen(n_genes=5, n_controls=5, random_seed=11)
    density = BlockDensity(sf.ScreenModel(FORMULA, data))
    point = density.pymc_model.initial_point()
    rng = np.random.default_rng(0)
    glob = density.global_list(
        {k: v + 0.1 * rng.normal(size=np.shape(v)) for k, v in point.items()}
    )
    G, U = density.layout.join(point)
    return density, glob, G + 0.3 * rng.normal(size=G.shape), U + 0.3 * rng.normal(size=U.shape)


def _flat(density, glob, G, U):
    def grad(x):
        _, gG, gU = density.logp_grad(
            glob, x[: G.size].reshape(G.shape), x[G.size :].reshape(U.shape)
        )
        return np.concatenate([gG.ravel(), gU.ravel()])

    return np.concatenate([G.ravel(), U.ravel()]), grad


def test_arrowhead_hessian_matches_finite_differences(tiny_density):
    density, glob, G, U = tiny_density
    lay = density.layout
    x0, grad = _flat(density, glob, G, U)
    eps = 1e-5
    numeric = np.array(
        [(grad(x0 + eps * e) - grad(x0 - eps * e)) / (2 * eps) for e in np.eye(x0.size)]
    )
    A, B, D = density.hessian_blocks(glob, G, U)
    a, c = lay.a, lay.c
    H = np.zeros_like(numeric)
    for g in range(lay.n_genes):
        H[g * a : (g + 1) * a, g * a : (g + 1) * a] = A[g]
    for s, g in enumerate(lay.gene_of_guide):
        u = G.size + s * c
        H[u : u + c, u : u + c] = D[s]
        H[u : u + c, g * a : (g + 1) * a] = B[s]
        H[g * a : (g + 1) * a, u : u + c] = B[s].T
    np.testing.assert_allclose(H, numeric, atol=1e-5 * np.abs(numeric).max())
    # genes are separable: moving one gene leaves the others' log-density alone
    lp = density.logp(glob, G, U)
    G2 = G.copy()
    G2[1] += 1.0
    moved = density.logp(glob, G2, U) - lp
    assert abs(moved[1]) > 1e-6 and np.allclose(np.delete(moved, 1), 0, atol=1e-9)

    # the arrowhead factor solves P x = g and its log-determinant is the dense one's
    M = segment_matrix(lay.gene_of_guide, lay.n_genes)
    f = factor(A, B, D, lay.gene_of_guide, M, lam=np.full(lay.n_genes, 1e3))
    P = -H + 1e3 * np.eye(len(H))
    g = np.random.default_rng(1).normal(size=len(H))
    dG, dU = f.solve(g[: G.size].reshape(G.shape), g[G.size :].reshape(U.shape))
    np.testing.assert_allclose(np.concatenate([dG.ravel(), dU.ravel()]), np.linalg.solve(P, g))
    assert np.isclose(f.logdet.sum(), np.linalg.slogdet(P)[1])


def test_newton_reaches_each_genes_mode(tiny_density):
    density, glob, G, U = tiny_density
    fit = newton(density, glob, G, U)
    assert fit.ok.all()
    _, gG, gU = density.logp_grad(glob, fit.G, fit.U)
    assert np.abs(gG).max() < 1e-3 and np.abs(gU).max() < 1e-3


@pytest.fixture(scope="module")
def compared():
    """NUTS (2 x 500) and two-stage fits of one 60-gene screen."""
    data, _ = sf.simulate_screen(n_genes=60, random_seed=21)
    model = sf.ScreenModel(FORMULA, data)
    nuts = sample_nuts(
        model.pymc_model,
        draws=500,
        tune=500,
        chains=2,
        cores=2,
        random_seed=3,
        engine="nutpie",
        var_names=stored_variables(model.pymc_model, False),
        progress=False,
        target_accept=0.8,
    )
    return model, nuts["posterior"].to_dataset()


def _lfc(post):
    lfc = post["b"].sel(b_coef=COEF) + post["r_gene"].sel(gene_coef=COEF)
    return lfc.stack(s=("chain", "draw")).transpose("s", "gene").values


@pytest.mark.slow
def test_two_stage_matches_nuts(compared):
    model, ref = compared
    idata, options = fit_two_stage(
        model,
        draws=1000,
        random_seed=5,
        progress=False,
        stage1_genes=40,
        stage1_draws=300,
        stage1_tune=300,
        n_global_draws=10,
    )
    post = idata["posterior"].to_dataset()
    # the very variables and dims a NUTS fit stores
    names = stored_variables(model.pymc_model, False)
    assert set(post.data_vars) == set(names)
    for name in names:
        assert post[name].dims[2:] == ref[name].dims[2:], name
    assert post.sizes["chain"] == 1 and post.sizes["draw"] == 1000
    a, b = _lfc(post), _lfc(ref)
    assert np.corrcoef(a.mean(0), b.mean(0))[0, 1] >= 0.99
    ratio = a.std(0) / b.std(0)
    assert 0.9 < np.median(ratio) < 1.1 and np.all((ratio > 0.7) & (ratio < 1.4))
    diag = idata["gene_diagnostics"]
    assert diag.sizes["gene"] == model.data.n_genes
    # stage 1 reports its convergence (40 genes x 2 x 300 draws gives R-hat 1.00-1.07 by
    # seed: the agreement above is what this test is about)
    assert 0.99 < options["stage1"]["rhat_max"] < 1.2 and options["n_global_draws"] == 10
    assert options["khat"]["above_0.7"] == options["n_hmc_genes"]


@pytest.mark.slow
def test_poor_laplace_proposal_sends_genes_to_hmc(compared):
    """A proposal far too narrow (0.3 x the Laplace scale) gives k-hat > 0.7: HMC refits."""
    model, ref = compared
    idata, options = fit_two_stage(
        model,
        draws=400,
        random_seed=6,
        progress=False,
        stage1_genes=40,
        stage1_draws=200,
        stage1_tune=300,
        n_global_draws=4,
        proposal_scale=0.3,
        proposal_df=np.inf,
    )
    diag = idata["gene_diagnostics"]
    refit = diag["refit_hmc"].values
    assert refit.mean() > 0.9 and options["n_hmc_genes"] == int(refit.sum())
    assert np.all(diag["khat"].values[refit] > 0.7)
    assert np.nanmedian(diag["hmc_accept"].values) > 0.6
    a, b = _lfc(idata["posterior"].to_dataset()), _lfc(ref)
    assert np.corrcoef(a.mean(0), b.mean(0))[0, 1] >= 0.99
    ratio = a.std(0) / b.std(0)
    assert 0.85 < np.median(ratio) < 1.15


def test_auto_chooses_nuts_for_small_screens_and_two_stage_for_large():
    from screenformula.inference.registry import AUTO_NUTS_MAX_GENES, choose_method

    small, why_small = choose_method(500)
    large, why_large = choose_method(AUTO_NUTS_MAX_GENES + 1)
    assert small.name == "nuts" and "500 genes" in why_small
    assert large.name == "two-stage" and "full NUTS would take hours" in why_large
    # the budget counts gene-level effects: 1,579 genes with one slope per line of five
    # (6 effects each, the JACKS joint fit) go to the two-stage engine, with 2 to NUTS
    assert choose_method(1_579)[0].name == "nuts"
    joint, why_joint = choose_method(1_579, 6)
    assert joint.name == "two-stage" and "1,579 genes x 6 effects each" in why_joint


def test_effects_per_gene_counts_every_gene_level_coefficient():
    data, _ = sf.simulate_screen(
        n_genes=6, treatments=("A", "B", "C"), n_replicates=1, n_pool_samples=0, random_seed=1
    )
    # (1 + treatment | gene) with three treatments and a control: a baseline and 3 slopes
    assert sf.ScreenModel(FORMULA, data).spec.effects_per_gene == 4
    baseline = "count ~ 1 + treatment + (1 | gene) + (1 + treatment | gene:sgrna)"
    assert sf.ScreenModel(baseline, data).spec.effects_per_gene == 1


@pytest.mark.slow
def test_two_stage_through_fit_keeps_guide_summaries(tmp_path):
    """method="two-stage" gives the same ScreenFit as the others: contrasts, guides, save/load."""
    data, truth = sf.simulate_screen(n_genes=40, random_seed=3)
    model = sf.ScreenModel(FORMULA, data)
    fit = model.fit(
        "two-stage",
        draws=100,
        random_seed=1,
        progress=False,
        store_sgrna=False,
        stage1_genes=30,
        stage1_draws=100,
        stage1_tune=100,
    )
    assert fit.method == "two-stage" and not fit.approximate
    assert {"gene_diagnostics", "stage1_posterior", "sgrna_summary"} <= set(fit.idata.children)
    assert fit.options["stage1"]["genes"] == 30 and "khat" in fit.options
    table = fit.diagnostics(warn=False)
    assert "Intercept" in table.index  # stage 1's convergence
    # checked as its early stop asks: 50 per chain, its 2 chains, and the R-hat converged
    # chains show at that ESS, sqrt(1 + 2 / 50)
    assert fit.ess_target() == 100.0 and fit.options["config"]["stage1_ess_per_chain"] == 50
    assert fit.rhat_target() == pytest.approx(1.0198, abs=1e-4)
    ess = table[["ess_bulk_min", "ess_tail_min"]].min(axis=1)
    ok = (table["rhat_max"].fillna(1.0) <= fit.rhat_target()) & (ess >= 100)
    np.testing.assert_array_equal(table["ok"], ok)
    # ... of the globals stage 2 used, not of stage 1's own draws of its 30 genes' effects
    stage1 = fit.idata["stage1_posterior"].to_dataset()
    local = [
        v for v in stage1.data_vars if any(stage1.sizes[d] in (30, 120) for d in stage1[v].dims)
    ]
    assert {"sd_gene", "L_sgrna"} <= set(stage1.data_vars) and not local
    assert set(table.index) <= set(stage1.data_vars)
    result = fit.contrast(delta=0.5)
    assert len(result.sgrnas) == data.n_sgrnas
    assert result.sgrnas.attrs["source"].startswith("guide summaries")
    true = truth.lfc_table(log2=True)["treated"].reindex(result.genes["gene"]).to_numpy()
    assert np.corrcoef(result.genes["lfc"], true)[0, 1] > 0.9
    again = sf.load_fit(fit.save(tmp_path / "two_stage.nc"))
    assert again.method == "two-stage" and again.ess_target() == 100.0
    assert again.rhat_target() == fit.rhat_target()
    # a fit saved before the setting existed is checked as it was then: at 1.01
    del again.options["config"]["stage1_rhat_max"]
    assert again.rhat_target() == 1.01
    np.testing.assert_allclose(again.contrast(delta=0.5).genes["lfc"], result.genes["lfc"])


@pytest.mark.slow
def test_stage2_in_worker_processes_writing_to_disk_equals_in_process(tmp_path, monkeypatch):
    """Two forked workers writing guide draws into on-disk arrays give the in-process fit."""
    import tempfile

    from screenformula.inference import scratch
    from screenformula.inference.scratch import draw_array

    # the screen, seed and stage-1 genes of the test above: the same compiled models
    data, _ = sf.simulate_screen(n_genes=40, random_seed=3)
    model = sf.ScreenModel(FORMULA, data)
    settings = dict(
        draws=60,
        random_seed=1,
        progress=False,
        store_sgrna=True,
        stage1_genes=30,
        stage1_draws=60,
        stage1_tune=100,
        parallel_min_genes=20,  # two chunks
    )
    serial, opt1 = fit_two_stage(model, workers=1, **settings)
    # gene-level draws too go through files (of the fit's own, in $TMPDIR), gone at the end
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    made = []
    real_create = scratch.create_draws_file
    monkeypatch.setattr(
        scratch, "create_draws_file", lambda p, shape: made.append(p) or real_create(p, shape)
    )
    files, opt2 = fit_two_stage(
        model,
        workers=2,
        allocate=lambda name, shape: draw_array(name, shape, str(tmp_path)),
        **settings,
    )
    assert opt1["n_chunks"] == opt2["n_chunks"] == 2 and opt2["workers"] == 2
    assert len(made) == 3  # r_gene, z_gene, t_gene__treatment[treated]
    assert Path(made[0]).parent.parent == temp and not list(temp.glob("screenformula-genes-*"))
    post = serial["posterior"]
    guide_level = [n for n in post.data_vars if "sgrna" in post[n].dims]
    assert "phi" in guide_level and list(tmp_path.glob("*.npy"))
    for name, values in serial["posterior"].data_vars.items():
        np.testing.assert_array_equal(np.asarray(files["posterior"][name]), values.values)

    # with a checkpoint the workers write guide draws into the chunk's files there (never
    # sent back in memory), copied into the fit's; a rerun reuses them
    checkpoint = tmp_path / "ck"
    for run in ("first", "resumed"):
        scratch = tmp_path / run
        scratch.mkdir()
        again, opt = fit_two_stage(
            model,
            workers=2,
            allocate=lambda name, shape, d=scratch: draw_array(name, shape, str(d)),
            checkpoint=checkpoint,
            **settings,
        )
        assert opt["checkpoint"]["chunks_reused"] == (0 if run == "first" else 2)
        for name in guide_level:
            assert len(list(checkpoint.glob(f"chunk-*-guides-{name}.npy"))) == 2
        for name, values in serial["posterior"].data_vars.items():
            np.testing.assert_array_equal(np.asarray(again["posterior"][name]), values.values)


def test_a_chunk_keeps_the_whole_screens_dispersion_trend():
    """A chunk's per-gene log-density equals the whole screen's on the same genes.

    dispersion="trend" centres its abundance covariate over every guide: a chunk rebuilt
    from its own guides alone would centre it elsewhere and change every gene's density.
    """
    from screenformula.inference.two_stage.blocks import model_on, model_settings, subset_data

    data, _ = sf.simulate_screen(n_genes=8, random_seed=12)
    model = sf.ScreenModel(FORMULA, data, dispersion="trend")
    full = BlockDensity(model)
    point = full.pymc_model.initial_point()
    point["phi_trend_slope"] = np.array([1.0, -0.5])  # the covariate matters
    glob = full.global_list(point)
    G, U = full.layout.join(point)
    genes = np.array([1, 4, 6])
    sub, rows = subset_data(data, genes)
    settings = model_settings(model)
    chunk = BlockDensity(
        model_on(FORMULA, sub, settings, model.spec.dispersion.take(rows)), like=full
    )
    lp_full = full.logp(glob, G, U)[genes]
    np.testing.assert_allclose(chunk.logp(glob, G[genes], U[rows]), lp_full, rtol=1e-10)
    alone = BlockDensity(model_on(FORMULA, sub, settings), like=full)
    assert not np.allclose(alone.logp(glob, G[genes], U[rows]), lp_full)


def test_a_gene_subset_of_another_size_reuses_the_compiled_functions():
    """A density on a few genes (sizes typed int8 by PyTensor) shares a large one's functions.

    Sizes are inputs of one int64 type, not casts back to their magnitude's dtype, so an
    HMC subset of a chunk does not recompile the chunk's graph; its values are the chunk's.
    """
    from screenformula.inference.two_stage.blocks import model_on, model_settings, subset_data

    data, _ = sf.simulate_screen(n_genes=40, random_seed=13)  # 160 guides: int16 sizes
    model = sf.ScreenModel(FORMULA, data)
    full = BlockDensity(model)
    point = full.pymc_model.initial_point()
    glob = full.global_list(point)
    G, U = full.layout.join(point)
    genes = np.array([2, 5, 30])
    sub, rows = subset_data(data, genes)
    part = BlockDensity(
        model_on(FORMULA, sub, model_settings(model), model.spec.dispersion.take(rows)),
        like=full,
    )
    assert part.layout.n_sgrna < 127 < full.layout.n_sgrna
    assert part._logp_grad is full._logp_grad and part._hvp is full._hvp
    lp, gG, gU = part.logp_grad(glob, G[genes], U[rows])
    lp_full, gG_full, gU_full = full.logp_grad(glob, G, U)
    np.testing.assert_allclose(lp, lp_full[genes], rtol=1e-10)
    np.testing.assert_allclose(gG, gG_full[genes], rtol=1e-10)
    np.testing.assert_allclose(gU, gU_full[rows], rtol=1e-10)


def test_hmc_subsets_are_padded_to_a_size_that_reuses_the_chunks_graph():
    """A few genes needing HMC are padded, by next-highest k-hat, to `HMC_MIN_GENES`.

    Fewer genes (one or two) would compile a graph of their own (their numbers of genes
    and guides stay constants); none needing HMC runs none; a chunk smaller than the
    minimum samples all its genes.
    """
    from screenformula.inference.two_stage.chunk import HMC_MIN_GENES, hmc_genes

    khat = np.linspace(0.0, 0.69, 40)
    khat[[3, 17]] = [0.9, np.nan]  # gene 17: a failed fit, k-hat undefined
    needs = np.zeros(40, bool)
    needs[[3, 17]] = True
    sampled = hmc_genes(needs, khat)
    assert sampled.sum() == HMC_MIN_GENES and np.all(sampled[[3, 17]])
    padded = np.flatnonzero(sampled & ~needs)
    assert set(padded) == set(np.argsort(-np.where(needs, -1, khat))[: HMC_MIN_GENES - 2])
    assert not needs[padded].any()  # the caller's mask is left alone
    assert not hmc_genes(np.zeros(40, bool), khat).any()
    assert hmc_genes(needs[:5], khat[:5]).all()
    many = khat > 0.3
    assert np.array_equal(hmc_genes(many, khat), many)
