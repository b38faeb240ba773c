"""The model specification: terms, designs, priors and errors, without PyMC."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _screens import FORMULA

import screenformula as sf
from screenformula.errors import FormulaError
from screenformula.spec.model_spec import build_spec


def test_terms_levels_and_designs(small_screen):
    data, _ = small_screen
    spec = build_spec(FORMULA, data)
    assert spec.pool.mode == "joint"  # default when the sheet has a pool sample
    assert spec.samples == tuple(data.screen_samples)
    assert spec.counts.shape == (data.n_sgrnas, 6)
    assert spec.mean.common.names == ("treatment[treated]",)
    np.testing.assert_array_equal(spec.mean.common.X[:, 0], [0, 0, 0, 1, 1, 1])
    gene, sgrna = spec.groups
    assert (gene.name, gene.level, gene.n_levels) == ("gene", "gene", data.n_genes)
    assert (sgrna.name, sgrna.level, sgrna.n_levels) == ("sgrna", "sgrna", data.n_sgrnas)
    assert gene.coef_names == ("Intercept", "treatment[treated]")
    np.testing.assert_array_equal(gene.index, data.gene_codes)
    assert gene.uses_lkj and sgrna.uses_lkj
    # auto: guide baseline and gene slopes centred, the rest not
    assert gene.centered == (False, True) and sgrna.centered == (True, False)


def test_independent_effects_have_no_lkj(small_screen):
    data, _ = small_screen
    spec = build_spec("count ~ 1 + treatment + (1 + treatment || gene)", data, pool=None)
    (gene,) = spec.groups
    assert not gene.uses_lkj
    assert not any(key.startswith("cor_") for key in spec.priors)


def test_single_effect_block_has_no_lkj(small_screen):
    data, _ = small_screen
    spec = build_spec("count ~ 1 + treatment + (1 | gene)", data, pool=None)
    assert not spec.groups[0].uses_lkj


def test_pool_none_keeps_pool_sample_in_formula(small_screen):
    data, _ = small_screen
    spec = build_spec("count ~ 1 + treatment + (1 | gene)", data, pool=None)
    assert len(spec.samples) == data.n_samples
    assert "treatment[pool]" in spec.mean.common.names


def test_three_level_nesting_and_two_treatments(grouped_screen):
    data, _ = grouped_screen
    spec = build_spec("count ~ 1 + treatment + (1 + treatment | group/gene/sgrna)", data)
    assert [t.level for t in spec.groups] == ["group", "gene", "sgrna"]
    assert spec.mean.common.names == ("treatment[drugA]", "treatment[drugB]")
    group = spec.groups[0]
    assert group.n_levels == len(data.group_names)
    np.testing.assert_array_equal(group.index, np.asarray(data.group_codes)[data.gene_codes])


def test_reference_level_can_be_chosen(grouped_screen):
    data, _ = grouped_screen
    spec = build_spec(
        "count ~ 1 + treatment + (1 | gene)", data, pool="offset", reference={"treatment": "drugA"}
    )
    assert spec.mean.common.names == ("treatment[control]", "treatment[drugB]")
    with pytest.raises(FormulaError, match="reference level 'nope' is not a value"):
        build_spec("count ~ treatment", data, pool="offset", reference={"treatment": "nope"})


def test_sample_level_grouping_factor(small_screen):
    data, _ = small_screen
    spec = build_spec("count ~ 1 + treatment + (1 | replicate)", data, pool="offset")
    (rep,) = spec.groups
    assert rep.level == "sample" and rep.n_levels == 3
    assert len(rep.index) == len(spec.samples)


def test_pool_offset_and_covariate_use_pool_abundance(small_screen):
    data, _ = small_screen
    off = build_spec("count ~ 1 + treatment + (1 | gene)", data, pool="offset")
    cov = build_spec("count ~ 1 + treatment + (1 | gene)", data, pool="covariate")
    pool = data.counts[:, data.pool_mask][:, 0]
    sf_pool = data.size_factors[data.pool_samples].iloc[0]
    expected = np.log(pool + 0.5) - np.log(sf_pool)
    np.testing.assert_allclose(off.pool.log_abundance, np.repeat(expected[:, None], 6, axis=1))
    assert np.all(np.abs(cov.pool.log_abundance.mean(axis=0)) < 1e-12)
    assert "b_pool" in cov.priors and "b_pool" not in off.priors


def test_default_priors_follow_model_md(small_screen):
    data, _ = small_screen
    spec = build_spec(FORMULA, data)
    table = spec.prior_table().set_index("key")
    assert table.loc["b_treatment[treated]", "prior"] == "StudentT(nu=5, mu=0, sigma=1)"
    assert table.loc["sd_gene__Intercept", "prior"] == "Exponential(lam=1)"
    assert table.loc["cor_gene", "prior"] == "LKJ(eta=3)"
    assert table.loc["phi_trend_Intercept", "prior"] == "Normal(mu=3, sigma=2)"
    assert table.loc["phi_trend_slope", "prior"] == "Normal(mu=0, sigma=1)"
    assert "sd_phi" not in table.index  # every guide on its trend unless sd_phi has a prior
    asked = build_spec(FORMULA, data, priors={"sd_phi": sf.Prior("HalfNormal", sigma=1)})
    assert asked.prior_table().set_index("key").loc["sd_phi", "prior"] == "HalfNormal(sigma=1)"
    per_guide = build_spec(FORMULA, data, dispersion="sgrna").prior_table().set_index("key")
    assert per_guide.loc["phi_rate", "prior"] == "Gamma(alpha=1, beta=1)"
    # data-scaled intercept: Student-t(3, log median normalised count, 2.5)
    screen = data.counts[:, ~data.pool_mask]
    sf_screen = data.size_factors.to_numpy()[~data.pool_mask]
    center = np.median(np.log((screen + 0.5) / sf_screen))
    assert spec.prior("Intercept").args == {"nu": 3, "mu": round(center, 3), "sigma": 2.5}
    assert set(table["source"]) == {"default"}


def test_user_priors_by_class_term_and_coef(small_screen):
    data, _ = small_screen
    spec = build_spec(
        FORMULA,
        data,
        dispersion="sgrna",
        priors={
            "b": sf.Prior("Normal", mu=0, sigma=2),
            "sd_sgrna": sf.Prior("HalfNormal", sigma=0.5),
            "sd_gene__Intercept": sf.Prior("HalfStudentT", nu=3, sigma=1),
            "cor_gene": 1.0,
            "phi_rate": ("Gamma", {"alpha": 2, "beta": 2}),
        },
    )
    assert spec.prior("b_treatment[treated]") == sf.Prior("Normal", mu=0, sigma=2)
    assert spec.prior("sd_sgrna__treatment[treated]") == sf.Prior("HalfNormal", sigma=0.5)
    assert spec.prior("sd_gene__Intercept") == sf.Prior("HalfStudentT", nu=3, sigma=1)
    assert spec.prior("sd_gene__treatment[treated]") == sf.Prior("Exponential", lam=1)
    assert spec.prior("cor_gene") == 1.0 and spec.prior("cor_sgrna") == 3.0
    assert spec.priors["cor_gene"].source == "user"


def test_bambi_prior_objects_are_accepted(small_screen):
    import bambi as bmb

    data, _ = small_screen
    spec = build_spec(FORMULA, data, priors={"b": bmb.Prior("Normal", mu=0, sigma=3)})
    assert spec.prior("b_treatment[treated]") == sf.Prior("Normal", mu=0, sigma=3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"priors": {"sd_gene": sf.Prior("Normal", mu=0, sigma=1)}},
            "prior for 'sd_gene'.*positive",
        ),
        ({"priors": {"b": sf.Prior("Nope", mu=0)}}, "prior for 'b': unknown distribution 'Nope'"),
        ({"priors": {"b": sf.Prior("Normal", mu=0, scale=1)}}, "Normal has no parameter 'scale'"),
        ({"priors": {"b": sf.Prior("Normal", mu=0, sigma=-1)}}, "sigma=-1\\) must be positive"),
        ({"priors": {"sd_nothing": sf.Prior("Exponential", lam=1)}}, "prior key 'sd_nothing'"),
        ({"priors": {"b": "Normal"}}, "must be a screenformula.Prior"),
        ({"priors": {"cor_gene": -2}}, "LKJ eta must be a positive number"),
        ({"family": "gaussian"}, "unknown family 'gaussian'"),
        ({"dispersion": "guide"}, "unknown dispersion 'guide'"),
        ({"pool": "iv"}, "unknown pool mode 'iv'"),
    ],
)
def test_bad_options_name_the_problem(small_screen, kwargs, message):
    data, _ = small_screen
    with pytest.raises(FormulaError, match=message) as err:
        build_spec(FORMULA, data, **kwargs)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("formula", "message"),
    [
        ("count ~ 1 + dose + (1 | gene)", "unknown variable 'dose'"),
        ("count ~ 1 + treatment + (1 | plate)", "unknown variable 'plate'"),
        (
            "count ~ 1 + treatment + (1 | group/gene)",
            "uses 'group' but the data has no gene groups",
        ),
        ("count ~ 1 + gene", "population-level term uses guide-level variable 'gene'"),
        ("count ~ 1 + (1 | gene:replicate)", "mixes guide-level \\(gene\\) and sample-level"),
        ("count ~ 1 + (gene | sgrna)", "cannot use guide-level variables"),
        ("count ~ 1 + (offset(replicate) | gene)", "offset\\(\\) is not allowed"),
    ],
)
def test_unknown_variables_and_unsupported_terms(small_screen, formula, message):
    data, _ = small_screen
    with pytest.raises(FormulaError, match=message) as err:
        build_spec(formula, data, pool="offset")
    assert "\n" not in str(err.value)


def test_joint_pool_needs_a_pool_sample_and_a_guide_intercept(small_screen):
    data, _ = small_screen
    no_pool = data.subset(samples=list(data.screen_samples))
    with pytest.raises(FormulaError, match="needs a pool sample"):
        build_spec(FORMULA, no_pool, pool="joint")
    with pytest.raises(FormulaError, match="needs a guide-level intercept"):
        build_spec("count ~ 1 + treatment + (1 + treatment | gene)", data, pool="joint")
    # auto falls back to no pool component without a guide-level term
    assert build_spec("count ~ 1 + treatment + (1 | gene)", data).pool.mode is None


def test_dispersion_formula_is_a_predictor(small_screen):
    data, _ = small_screen
    spec = build_spec(FORMULA, data, dispersion="alpha ~ 1 + (1 | sgrna)")
    assert spec.dispersion.mode == "formula"
    (term,) = spec.dispersion.predictor.groups
    assert term.name == "alpha_sgrna" and term.level == "sgrna"
    assert "alpha_Intercept" in spec.priors and "sd_alpha_sgrna__Intercept" in spec.priors


def test_offset_in_formula(small_screen):
    data, _ = small_screen
    sheet = data.samples.copy()
    sheet["depth_ratio"] = np.linspace(1, 2, len(sheet))
    data2 = sf.ScreenData(data.counts, data.sgrnas, data.genes_of_sgrna, sheet)
    spec = build_spec("count ~ 1 + treatment + offset(log(depth_ratio))", data2, pool="offset")
    expected = np.log(sheet.loc[~sheet["pool"], "depth_ratio"].to_numpy())
    np.testing.assert_allclose(spec.mean.common.offset, expected)


def test_print_model_names_every_prior(small_screen):
    data, _ = small_screen
    model = sf.ScreenModel(FORMULA, data)
    text = repr(model)
    assert "Formula: " + FORMULA in text
    assert "Pool likelihood" in text and "phi_pool" in text
    for row in model.prior_summary().to_dict("records"):
        assert row["prior"] in text
    assert text.count("LKJ(eta=3)") == 2
    assert isinstance(model.prior_summary(), pd.DataFrame)


def test_pool_batches_match_screen_samples_to_their_own_plasmid():
    data, _ = sf.simulate_screen(n_genes=10, n_pool_samples=2, random_seed=3)
    sheet = data.samples.copy()
    sheet["batch"] = ["b1", "b2", "b1", "b1", "b2", "b2", "b1", "b2"]
    counts = data.counts.copy()
    counts[:3, 0] = 0  # three guides lost from the first plasmid
    batched = sf.ScreenData(counts, data.sgrnas, data.genes_of_sgrna, sheet)
    spec = build_spec(FORMULA, batched, pool="offset")
    per_pool = np.log(counts[:, :2] + 0.5) - np.log(batched.size_factors.to_numpy()[:2])
    expected = per_pool[:, [0, 0, 1, 1, 0, 1]]  # screen samples' batches: b1 b1 b2 b2 b1 b2
    np.testing.assert_allclose(spec.pool.log_abundance, expected)
    assert np.all(np.isfinite(spec.pool.log_abundance))


def test_guides_without_pool_reads_are_reported(small_screen):
    data, _ = small_screen
    counts = data.counts.copy()
    counts[:5, data.pool_mask] = 0
    zeroed = sf.ScreenData(counts, data.sgrnas, data.genes_of_sgrna, data.samples)
    model = sf.ScreenModel(FORMULA, zeroed, pool="offset")
    assert model.spec.pool.n_zero == 5
    assert "5 guides have no pool reads" in repr(model)
    assert np.all(np.isfinite(model.spec.pool.log_abundance))
