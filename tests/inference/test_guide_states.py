"""Guide states (``guide_states=``): the grid's per-gene sums, the model check, a fit.

The per-gene sums are checked against brute-force enumeration of every state vector;
the fit on a simulated screen with one guide made to deplete alone checks that
``"majority"`` keeps that guide from carrying its gene where every-guide-works does not.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import special

import screenformula as sf
from screenformula.errors import FitError, FormulaError
from screenformula.inference.two_stage import grid as core
from screenformula.spec.formula import SCREEN_FORMULA
from screenformula.spec.settings import ModelSettings


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
    log_lik = rng.normal(-3.0, 2.0, size=(len(gene), len(core.GRID)))
    grid = core.StateGrid(gene, log_lik, states, df=3.0)
    b0, sd_b, pi, sd_d = 0.1, 0.4, 0.3, 0.2
    got = grid.log_post(b0=b0, sd_b=sd_b, sd_d=sd_d, pi=pi)
    log_i = grid.convolved(sd_d)
    k = (b0 - core.GRID[0]) / core.GRID_STEP
    k0 = int(np.floor(k))
    fail = log_i[:, k0] * (1 - (k - k0)) + log_i[:, k0 + 1] * (k - k0)
    z = (core.GRID - b0) / sd_b
    prior = special.gammaln(2.0) - special.gammaln(1.5) - 0.5 * np.log(3 * np.pi)
    prior = prior - 2.0 * np.log1p(z**2 / 3) - np.log(sd_b) + np.log(core.GRID_STEP)
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
    guides = np.array([0.0, 0.0, 0.0, 0.0, 2.5])
    log_lik = -0.5 * ((core.GRID[None, :] - guides[:, None]) / 0.15) ** 2
    gene = np.zeros(len(guides), dtype=int)
    means = {}
    for states in ("any", "majority"):
        post = core.StateGrid(gene, log_lik, states).log_post(b0=0.0, sd_b=1.0, sd_d=0.05, pi=0.6)
        means[states] = float(core.posterior_mean(post)[0])
    assert means["any"] > 1.0  # the gene follows its one working guide
    assert abs(means["majority"]) < 0.2


def test_guide_log_lik_peaks_at_the_guides_effect() -> None:
    """A guide simulated at effect -1.5 (natural log) with 3 + 3 samples peaks there."""
    rng = np.random.default_rng(0)
    weight = np.array([0.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    base = np.zeros((200, 6))
    mu = np.exp(6.0 + weight * -1.5)
    phi = np.full((200, 6), 50.0)
    counts = rng.negative_binomial(50.0, 50.0 / (50.0 + mu), size=(200, 6)).astype(float)
    log_lik, mode = core.guide_log_lik(counts, base, np.tile(weight, (200, 1)), phi, 6.0, 2.0)
    peaks = core.GRID[log_lik.argmax(1)]
    assert abs(np.median(peaks) + 1.5) < 0.05
    at = np.searchsorted(core.GRID, -1.5)
    assert abs(np.median(mode[:, at]) - 6.0) < 0.05  # the intercept's conditional mode


def test_draws_follow_the_grid_posterior() -> None:
    log_post = -0.5 * ((core.GRID[None, :] - np.array([[-1.0], [0.5]])) / 0.2) ** 2
    draws = core.draw_from_grid(log_post, 4000, np.random.default_rng(1))
    np.testing.assert_allclose(draws.mean(0), [-1.0, 0.5], atol=0.02)
    np.testing.assert_allclose(draws.std(0), [0.2, 0.2], atol=0.02)


def test_state_globals_recover_the_failing_share() -> None:
    """Gene effects N(0, 1.5), a quarter of guides failing (at 0): pi, sd_b found near them."""
    rng = np.random.default_rng(2)
    n_genes = 600
    guide = np.repeat(rng.normal(0.0, 1.5, n_genes), 4)
    fails = rng.random(len(guide)) < 0.25
    guide = np.where(fails, 0.0, guide) + rng.normal(0, 0.2, len(guide))
    log_lik = -0.5 * ((core.GRID[None, :] - guide[:, None]) / 0.2) ** 2
    grid = core.StateGrid(np.repeat(np.arange(n_genes), 4), log_lik, "any", df=None)
    found, _ = core.fit_state_globals(grid, core.StateGlobals(0.3, 1.0, 0.1, 0.1))
    assert 0.18 < found.pi < 0.32
    assert 1.3 < found.sd_b < 1.7
    assert abs(found.b0) < 0.2


# ------------------------------------------------------------------ the model
def _screen(n_genes: int = 40, seed: int = 1) -> sf.ScreenData:
    data, _ = sf.simulate_screen(n_genes=n_genes, random_seed=seed)
    return data.subset(samples=[s for s in data.samples.index if s != "pool_1"])


def test_model_check_says_what_guide_states_need() -> None:
    data = _screen(10)
    with pytest.raises(FormulaError, match="guide_states must be one of"):
        sf.ScreenModel(SCREEN_FORMULA, data, pool=None, guide_states="some")
    with pytest.raises(FormulaError, match="dispersion set by global parameters"):
        sf.ScreenModel(SCREEN_FORMULA, data, pool=None, dispersion="sgrna", guide_states="majority")
    with pytest.raises(FormulaError, match="exactly one gene-level and one guide-level"):
        sf.ScreenModel(
            "count ~ 1 + treatment + (1 + treatment | gene)", data, pool=None, guide_states="any"
        )
    model = sf.ScreenModel(SCREEN_FORMULA, data, pool=None, guide_states="majority")
    assert "Guide states: majority" in repr(model)
    assert model.settings.to_dict()["guide_states"] == "majority"
    again = sf.ScreenModel.from_settings(ModelSettings.from_dict(model.settings.to_dict()), data)
    assert again.spec.guide_states == "majority"
    with pytest.raises(FitError, match="two-stage engine's grid"):
        model.fit("nuts", draws=10, tune=10, chains=1, progress=False)


def test_guide_pieces_rebuild_the_models_log_mean() -> None:
    """``base`` read at one point, plus ``a + w * beta`` at another, is the log mean there."""
    import pytensor
    import xarray as xr

    from screenformula.inference.two_stage.grid_stage import guide_pieces
    from screenformula.spec.names import OBSERVED

    data = _screen(12, seed=4)
    model = sf.ScreenModel(SCREEN_FORMULA, data, pool=None, guide_states="majority")
    pm_model = model.pymc_model
    rng = np.random.default_rng(5)

    def jitter() -> dict[str, np.ndarray]:
        start = pm_model.initial_point()
        return {k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in start.items()}

    here, there = jitter(), jitter()
    post = xr.Dataset(
        {
            "Intercept": (("chain", "draw"), [[0.0]]),
            "b": (("chain", "draw", "c"), [[[0.0]]]),
            "sd_gene": (("chain", "draw", "e"), [[[0.5, 0.3]]]),
            "sd_sgrna": (("chain", "draw", "e"), [[[0.4, 0.2]]]),
        }
    )
    pieces = guide_pieces(model, [here], post)
    obs = next(rv for rv in pm_model.observed_RVs if rv.name == OBSERVED)
    outs = [obs.owner.inputs[2], pm_model["r_gene"], pm_model["r_sgrna"], pm_model["b"]]
    outs += [pm_model["Intercept"], pm_model["replicate_scale"]]
    fn = pytensor.function(
        pm_model.value_vars, pm_model.replace_rvs_by_values(outs), on_unused_input="ignore"
    )
    log_mu, r_gene, r_guide, b, intercept, scale = (
        np.asarray(x) for x in fn(*[there[v.name] for v in pm_model.value_vars])
    )
    gene = np.asarray(data.gene_codes)
    a = float(intercept) + r_gene[gene, 0] + r_guide[:, 0]
    beta = float(np.ravel(b)[0]) + r_gene[gene, 1] + r_guide[:, 1]
    weight = pieces.weight.copy()
    treated = np.flatnonzero(weight[0] != 0)  # the weights at ``there``'s replicate scales
    weight[:, treated] = scale[None, :]
    rebuilt = pieces.base + a[:, None] + weight * beta[:, None]
    np.testing.assert_allclose(rebuilt, np.broadcast_to(log_mu, rebuilt.shape), atol=1e-8)
    assert pieces.a_sd == pytest.approx(np.hypot(0.5, 0.4))
    assert pieces.df == 3.0


@pytest.mark.slow
def test_majority_states_follow_the_working_guides_of_a_gene() -> None:
    """Hits with one failing guide of four: majority states keep the working guides' LFC.

    Two two-stage fits of a simulated screen (40 genes). In the true hits G40 (LFC -2.0
    log2) and G12 (+2.0) one guide is made to fail: its treated counts are replaced by its
    control counts. Every guide working pulls those genes toward 0; ``"majority"`` (at
    most one failing guide of four) reads them from their three working guides. No null
    gene is called either way.
    """
    raw, truth = sf.simulate_screen(n_genes=40, random_seed=2)
    raw = raw.subset(samples=[s for s in raw.samples.index if s != "pool_1"])
    counts = raw.counts.copy()
    role = raw.samples["treatment"].to_numpy()
    treated, control = np.flatnonzero(role == "treated"), np.flatnonzero(role == "control")
    genes_of = np.asarray(raw.gene_names)[raw.gene_codes]
    targets = ["G40", "G12"]
    for target in targets:
        row = int(np.flatnonzero(genes_of == target)[0])
        counts[row, treated] = counts[row, control]
    data = sf.ScreenData(counts, raw.sgrnas, raw.genes_of_sgrna, raw.samples)
    truth_lfc = truth.genes.set_index("gene")["lfc_log2"]
    tables = {}
    for states in ("none", "majority"):
        model = sf.ScreenModel(SCREEN_FORMULA, data, pool=None, guide_states=states)
        fit = model.fit(
            "two-stage",
            draws=400,
            random_seed=3,
            progress=False,
            stage1_draws=400,
            stage1_check_every=0,
        )
        tables[states] = fit.contrast("treatment", ref="control").genes.set_index("gene")
    assert fit.options["guide_states"]["states"] == "majority"
    assert 0 < fit.options["guide_states"]["pi"] < 1
    for target in targets:
        off = {k: abs(t.loc[target, "lfc"] - truth_lfc[target]) for k, t in tables.items()}
        assert off["majority"] < off["none"], (target, off)
        assert off["majority"] < 0.5, (target, off)
    nulls = truth.genes.loc[~truth.genes["is_hit"], "gene"]
    assert not tables["majority"].loc[nulls, "hit"].any()


@pytest.mark.slow
def test_screenformula_test_with_guide_states_writes_mageck_files(tmp_path) -> None:
    """``screenformula test --guide-states majority``: the fit, MAGeCK files and the log."""
    import json

    from _cli_run import run_cli
    from _mageck_format import read_gene_summary, read_sgrna_summary

    data, _ = sf.simulate_screen(n_genes=30, random_seed=6)
    data = data.subset(samples=[s for s in data.samples.index if s != "pool_1"])
    table = data.counts_frame()
    table.columns = ["sgRNA", "Gene", "C1", "C2", "C3", "T1", "T2", "T3"]
    table.to_csv(tmp_path / "counts.txt", sep="\t", index=False)
    prefix = tmp_path / "screen"
    result = run_cli(
        "test",
        "-k",
        str(tmp_path / "counts.txt"),
        "-t",
        "T1,T2,T3",
        "-c",
        "C1,C2,C3",
        "-n",
        str(prefix),
        "--guide-states",
        "majority",
        "--stage1-draws",
        "300",
        "--draws",
        "200",
        "--seed",
        "2",
        "--quiet",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    log = json.loads((tmp_path / "screen.log").read_text())
    assert log["guide_states"] == "majority"
    assert log["method"] == "two-stage"
    genes = read_gene_summary(tmp_path / "screen.gene_summary.txt")
    guides = read_sgrna_summary(tmp_path / "screen.sgrna_summary.txt")
    assert len(genes) == 30 and len(guides) == 120
    fit = sf.load_fit(tmp_path / "screen.fit.nc")
    assert fit.model.spec.guide_states == "majority"
    assert 0 <= fit.options["guide_states"]["pi"] < 1  # every simulated guide works
