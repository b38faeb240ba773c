"""``gr(gene, dist = "student_slopes")``: Student-t gene slopes beside normal intercepts."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import screenformula as sf
from screenformula.errors import FormulaError
from screenformula.inference.two_stage.density import BlockDensity
from screenformula.spec.formula import parse_formula

SLOPES_T = (
    'count ~ 1 + treatment + (1 + treatment | gr(gene, dist = "student_slopes")) '
    "+ (1 + treatment | gene:sgrna)"
)
COEF = "treatment[treated]"


@pytest.fixture(scope="module")
def screen():
    data, _ = sf.simulate_screen(n_genes=6, n_controls=4, random_seed=5)
    return data


def _logp_of(pm_model, name, point):
    rv = pm_model[name]
    fn = pm_model.compile_logp(vars=[rv], jacobian=False, sum=False)
    return np.asarray(fn(point)[0])


def test_centred_slopes_are_student_t_around_the_population_slope(screen):
    (gene, sgrna) = parse_formula(SLOPES_T).groups
    assert gene.dist == "student_slopes" and sgrna.dist == "gaussian"
    model = sf.ScreenModel(SLOPES_T, screen)
    assert "Student-t slopes (df: df_gene), normal intercepts" in repr(model)
    # df is fixed at 3 unless a prior is given (estimated genome-wide, it degenerates)
    assert model.spec.priors["df_gene"].prior == sf.Prior("Constant", value=3)
    model = sf.ScreenModel(SLOPES_T, screen, priors={"df": sf.Prior("Gamma", alpha=2, beta=0.1)})
    assert model.spec.priors["df_gene"].prior == sf.Prior("Gamma", alpha=2, beta=0.1)
    pm_model = model.pymc_model
    names = {v.name for v in pm_model.free_RVs}
    assert "df_gene" in names and "w_gene" not in names  # no per-gene weight to sample
    point = pm_model.initial_point()
    slope = f"t_gene__{COEF}"
    rng = np.random.default_rng(1)
    point[slope] = rng.normal(0.3, 2.0, size=point[slope].shape)
    point["df_gene_log__"] = np.log(2.5)
    point["b"] = np.array([0.3])
    point["sd_gene_log__"] = np.log([0.4, 0.7])
    logp = _logp_of(pm_model, slope, point)
    expected = stats.t.logpdf(point[slope], df=2.5, loc=0.3, scale=0.7)
    np.testing.assert_allclose(logp, expected, rtol=1e-6)
    # the guide-level term keeps normal effects
    assert np.isfinite(sum(pm_model.point_logps(point).values()))


def test_non_centred_slopes_keep_the_intercepts_normal_and_in_their_column(screen):
    estimated = {"df": sf.Prior("Gamma", alpha=2, beta=0.1)}
    model = sf.ScreenModel(SLOPES_T, screen, parameterization=False, priors=estimated)
    pm_model = model.pymc_model
    assert {"z_gene", "z_gene_t"} <= {v.name for v in pm_model.free_RVs}
    point = pm_model.initial_point()
    point["z_gene"] = np.zeros_like(point["z_gene"])  # the intercepts' innovations
    point["z_gene_t"] = np.full_like(point["z_gene_t"], 2.0)
    point["df_gene_log__"] = np.log(3.0)
    (r_gene,) = pm_model.replace_rvs_by_values([pm_model["r_gene"]])
    effects = pm_model.compile_fn(r_gene, inputs=pm_model.value_vars, on_unused_input="ignore")
    r = effects(point)
    assert np.allclose(r[:, 0], 0.0) and np.all(np.abs(r[:, 1]) > 0)
    logp_t = _logp_of(pm_model, "z_gene_t", point)
    np.testing.assert_allclose(logp_t, stats.t.logpdf(2.0, df=3.0), rtol=1e-6)
    logp_n = _logp_of(pm_model, "z_gene", point)
    np.testing.assert_allclose(logp_n, stats.norm.logpdf(0.0), rtol=1e-6)


@pytest.mark.slow  # compiles the stage-2 functions of a new graph (about 90 s)
def test_two_stage_density_holds_the_t_slopes_per_gene(screen):
    model = sf.ScreenModel(SLOPES_T, screen, parameterization=False)
    density = BlockDensity(model)
    gene_vars = {v.name for v in density.layout.gene_vars}
    assert {"z_gene", "z_gene_t"} <= gene_vars
    pm_model = density.pymc_model
    point = pm_model.initial_point()
    rng = np.random.default_rng(2)
    point = {k: v + 0.2 * rng.normal(size=np.shape(v)) for k, v in point.items()}
    G, U = density.layout.join(point)
    lp, _, _ = density.logp_grad(density.global_list(point), G, U)
    local = [
        rv
        for rv in pm_model.free_RVs
        if pm_model.rvs_to_values[rv].name
        in {v.name for v in (*density.layout.gene_vars, *density.layout.guide_vars)}
    ]
    fn = pm_model.compile_logp(vars=local + list(pm_model.observed_RVs), jacobian=True)
    np.testing.assert_allclose(np.sum(lp), fn(point), rtol=1e-8)


@pytest.mark.parametrize(
    ("formula", "options", "message"),
    [
        ('count ~ 1 + (1 | gr(gene, dist = "student_slopes"))', {}, "has no slopes"),
        (SLOPES_T, {"parameterization": True}, "centre the intercept or the slopes"),
    ],
)
def test_student_slopes_refuses_what_it_cannot_build(screen, formula, options, message):
    with pytest.raises(FormulaError, match=message):
        sf.ScreenModel(formula, screen, **options)


def test_a_constant_df_fixes_the_tails_without_a_variable(screen):
    """brms's ``constant()`` on df: the slopes are t(3), and df is not sampled.

    Genome-wide, an estimated df runs to below 1 with the gene slopes' sd near 0 (a spike
    at zero beside a few huge slopes) where stage 1's NUTS takes 1,023 steps per draw.
    """
    model = sf.ScreenModel(SLOPES_T, screen, priors={"df": sf.Prior("Constant", value=3)})
    assert model.spec.priors["df_gene"].prior == sf.Prior("Constant", value=3)
    pm_model = model.pymc_model
    assert "df_gene" not in {v.name for v in pm_model.free_RVs}
    point = pm_model.initial_point()
    slope = f"t_gene__{COEF}"
    point[slope] = np.random.default_rng(2).normal(0.0, 2.0, size=point[slope].shape)
    point["b"] = np.array([0.0])
    point["sd_gene_log__"] = np.log([0.4, 0.5])
    logp = _logp_of(pm_model, slope, point)
    np.testing.assert_allclose(logp, stats.t.logpdf(point[slope], df=3, scale=0.5), rtol=1e-6)


@pytest.mark.parametrize(
    ("priors", "message"),
    [
        ({"sd": sf.Prior("Constant", value=1)}, "Constant is allowed for df only"),
        ({"df": sf.Prior("Constant", value=0)}, "must be positive"),
        ({"df": sf.Prior("Constant")}, "Constant needs value="),
    ],
)
def test_constant_priors_refuse_what_they_cannot_be(screen, priors, message):
    with pytest.raises(FormulaError, match=message):
        sf.ScreenModel(SLOPES_T, screen, priors=priors)
