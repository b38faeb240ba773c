"""dispersion="trend" and Student-t varying effects: specification and PyMC model."""

from __future__ import annotations

import numpy as np
import pytest
from _screens import FORMULA

import screenformula as sf
from screenformula.errors import FormulaError
from screenformula.inference.two_stage.blocks import subset_model
from screenformula.spec.formula import parse_formula
from screenformula.spec.model_spec import build_spec

STUDENT = (
    'count ~ 1 + treatment + (1 + treatment | gr(gene, dist = "student")) '
    "+ (1 + treatment | gene:sgrna)"
)


def test_trend_has_a_class_per_replicated_condition(small_screen):
    data, _ = small_screen
    disp = build_spec(FORMULA, data, dispersion="trend").dispersion
    assert disp.mode == "trend"
    assert disp.class_names == ("reference", "treatment[treated]")
    np.testing.assert_array_equal(disp.sample_class, [0, 0, 0, 1, 1, 1])
    # one replicate per condition: one class for every screen sample
    one_rep = data.subset(samples=[data.pool_samples[0], "control_1", "treated_1"])
    disp1 = build_spec(FORMULA, one_rep, dispersion="trend").dispersion
    assert disp1.class_names == ("cells",)
    np.testing.assert_array_equal(disp1.sample_class, [0, 0])
    # a lone control beside replicated treated samples (HAP1's T0): a class of its own
    lone = data.subset(
        samples=[data.pool_samples[0], "control_1", "treated_1", "treated_2", "treated_3"]
    )
    disp2 = build_spec(FORMULA, lone, dispersion="trend").dispersion
    assert disp2.class_names == ("reference", "treatment[treated]")
    np.testing.assert_array_equal(disp2.sample_class, [0, 1, 1, 1])


def test_every_guide_follows_the_trend_unless_sd_phi_has_a_prior(small_screen):
    data, _ = small_screen
    # replicated conditions too: a guide's own deviation only where asked
    assert not build_spec(FORMULA, data, dispersion="trend").dispersion.guide_scatter
    replicated = sf.ScreenModel(FORMULA, data)
    assert not {"sd_phi", "z_phi"} & {v.name for v in replicated.pymc_model.free_RVs}
    assert "reference, treatment[treated]; followed by every guide" in repr(replicated)
    asked_rep = sf.ScreenModel(FORMULA, data, priors={"sd_phi": sf.Prior("HalfNormal", sigma=1)})
    assert asked_rep.spec.dispersion.guide_scatter
    assert {"sd_phi", "z_phi"} <= {v.name for v in asked_rep.pymc_model.free_RVs}
    assert "guides shrunk toward it" in repr(asked_rep)
    one_rep = data.subset(samples=[data.pool_samples[0], "control_1", "treated_1"])
    model = sf.ScreenModel(FORMULA, one_rep)
    assert not model.spec.dispersion.guide_scatter
    names = {v.name for v in model.pymc_model.free_RVs}
    assert {"phi_trend_Intercept", "phi_trend_slope"} <= names
    assert not names & {"sd_phi", "z_phi"} and "sd_phi" not in model.spec.priors
    assert "followed by every guide" in repr(model)
    # phi is exactly the trend: log phi linear in the covariate
    pm_model = model.pymc_model
    phi = pm_model["phi"].eval(
        {pm_model["phi_trend_Intercept"]: [2.0], pm_model["phi_trend_slope"]: [0.5]}
    )
    expected = 2.0 + 0.5 * model.spec.dispersion.abundance
    np.testing.assert_allclose(np.log(phi[:, 0]), expected, rtol=1e-6)
    # a prior on sd_phi asks for the guides' own scatter
    asked = sf.ScreenModel(FORMULA, one_rep, priors={"sd_phi": sf.Prior("HalfNormal", sigma=0.5)})
    assert "z_phi" in {v.name for v in asked.pymc_model.free_RVs}


def test_trend_covariate_is_the_pool_abundance_centred_and_clipped(small_screen):
    data, _ = small_screen
    x = build_spec(FORMULA, data, dispersion="trend").dispersion.abundance
    assert x.shape == (data.n_sgrnas,) and np.median(x) == pytest.approx(0.0)
    pool = data.counts[:, data.pool_mask][:, 0] / data.size_factors[data.pool_samples[0]]
    raw = np.log(pool + 0.5)
    inside = (raw > np.quantile(raw, 0.01)) & (raw < np.quantile(raw, 0.99))
    # a monotone function of the pool abundance, shifted by the median
    np.testing.assert_allclose(x[inside], raw[inside] - np.median(raw), atol=1e-12)
    assert x.max() == pytest.approx(np.quantile(raw, 0.99) - np.median(raw))


def test_trend_covariate_without_pool_uses_the_reference_condition(small_screen):
    data, _ = small_screen
    screen_only = data.subset(samples=list(data.screen_samples))
    spec = build_spec(FORMULA, screen_only, dispersion="trend", pool=None)
    ctrl = screen_only.counts[:, :3] / screen_only.size_factors.to_numpy()[None, :3]
    raw = np.log(ctrl.mean(axis=1) + 0.5)
    assert np.corrcoef(spec.dispersion.abundance, raw)[0, 1] > 0.99


def test_trend_model_prints_and_a_gene_subset_keeps_the_whole_screen_covariate(small_screen):
    data, _ = small_screen
    scatter = {"sd_phi": sf.Prior("HalfNormal", sigma=1)}  # the guides' own deviations too
    model = sf.ScreenModel(FORMULA, data, dispersion="trend", priors=scatter)
    text = repr(model)
    assert "phi_trend_Intercept" in text and "sd_phi" in text
    assert "reference, treatment[treated]" in text
    names = [v.name for v in model.pymc_model.free_RVs]
    assert {"phi_trend_Intercept", "phi_trend_slope", "sd_phi", "z_phi"} <= set(names)
    assert np.isfinite(model.pymc_model.point_logps()["count"])
    sub, rows = subset_model(model, np.array([0, 3, 7]))
    np.testing.assert_array_equal(
        sub.spec.dispersion.abundance, model.spec.dispersion.abundance[rows]
    )
    # rebuilt alone, the subset would centre its covariate on its own median
    alone = build_spec(FORMULA, sub.data, dispersion="trend").dispersion.abundance
    assert not np.allclose(alone, sub.spec.dispersion.abundance)


def test_student_group_effects_parse_and_build(small_screen):
    (gene, sgrna) = parse_formula(STUDENT).groups
    assert gene.dist == "student" and gene.factor == ("gene",) and sgrna.dist == "gaussian"
    data, _ = small_screen
    model = sf.ScreenModel(STUDENT, data)
    assert "Student-t (df: df_gene)" in repr(model)
    assert model.spec.priors["df_gene"].prior == sf.Prior("Gamma", alpha=2, beta=0.1)
    logps = model.pymc_model.point_logps()
    assert {"df_gene", "w_gene"} <= set(logps) and np.isfinite(sum(logps.values()))
    # the varying effects are a scale mixture: per gene, r is scaled by 1 / sqrt(w)
    pm_model = sf.ScreenModel(STUDENT, data, parameterization=False).pymc_model
    (r_gene,) = pm_model.replace_rvs_by_values([pm_model["r_gene"]])
    effects = pm_model.compile_fn(r_gene, inputs=pm_model.value_vars, on_unused_input="ignore")
    point = pm_model.initial_point()
    point["z_gene"] = np.ones_like(point["z_gene"])
    point["w_gene_log__"] = np.full(data.n_genes, np.log(4.0))
    r = effects(point)
    point["w_gene_log__"] = np.zeros(data.n_genes)
    r1 = effects(point)
    assert np.abs(r1).min() > 0
    np.testing.assert_allclose(r, 0.5 * r1)  # w = 4 against w = 1


@pytest.mark.parametrize(
    ("formula", "message"),
    [
        ("count ~ 1 + (1 | gr(gene, dist = 'cauchy'))", "dist must be one of gaussian, student"),
        ("count ~ 1 + (1 | gr(gene, by = treatment))", "unsupported option 'by'"),
    ],
)
def test_bad_gr_options_name_the_problem(formula, message):
    with pytest.raises(FormulaError, match=message):
        parse_formula(formula)


def test_guide_variance_reads_the_reference_class_of_a_trend_dispersion():
    import xarray as xr

    from screenformula.results.draws import reference_class

    values = np.arange(12.0).reshape(1, 2, 3, 2)  # chain, draw, sgrna, class
    dims = ("chain", "draw", "sgrna", "phi_class")
    phi = xr.DataArray(values, dims=dims, coords={"phi_class": ["treatment[x]", "reference"]})
    np.testing.assert_array_equal(reference_class(phi).values, values[..., 1])
    one = phi.isel(phi_class=[0]).assign_coords(phi_class=["cells"])
    np.testing.assert_array_equal(reference_class(one).values, values[..., 0])
    plain = phi.isel(phi_class=0, drop=True)
    assert reference_class(plain) is plain


def test_trend_sample_has_a_class_per_sequenced_sample(small_screen):
    """``dispersion="trend-sample"``: one trend per screen sample, named by its condition."""
    data, _ = small_screen
    disp = build_spec(FORMULA, data, dispersion="trend-sample").dispersion
    assert disp.mode == "trend" and disp.classes_by == "sample"
    screen = [s for s in data.samples.index if s not in set(data.pool_samples)]
    assert disp.class_names == tuple(
        f"{'reference' if s.startswith('control') else 'treatment[treated]'}:{s}" for s in screen
    )
    np.testing.assert_array_equal(disp.sample_class, np.arange(6))
    # the covariate follows the conditions, as with "trend"; no guide scatter unless asked
    by_condition = build_spec(FORMULA, data, dispersion="trend").dispersion
    np.testing.assert_array_equal(disp.abundance, by_condition.abundance)
    assert not disp.guide_scatter
    model = sf.ScreenModel(FORMULA, data, dispersion="trend-sample")
    assert "reference:control_1" in repr(model)
    pm_model = model.pymc_model
    assert pm_model["phi_trend_Intercept"].eval().shape == (6,)  # one per class
    assert np.isfinite(pm_model.point_logps()["count"])
    # saved settings rebuild the same model
    rebuilt = sf.ScreenModel.from_settings(model.settings, data)
    assert rebuilt.spec.dispersion.class_names == disp.class_names


def test_the_guide_variance_of_a_per_sample_trend_reads_the_first_reference_sample():
    import xarray as xr

    from screenformula.results.draws import reference_class

    values = np.arange(12.0).reshape(1, 1, 3, 4)
    classes = ["treatment[x]:t1", "reference:c1", "reference:c2", "treatment[x]:t2"]
    phi = xr.DataArray(
        values, dims=("chain", "draw", "sgrna", "phi_class"), coords={"phi_class": classes}
    )
    np.testing.assert_array_equal(reference_class(phi).values, values[..., 1])


def test_an_unknown_dispersion_names_the_choices(small_screen):
    data, _ = small_screen
    with pytest.raises(FormulaError, match="'trend', 'trend-sample', 'shared', 'sgrna'"):
        build_spec(FORMULA, data, dispersion="trend-replicate")
