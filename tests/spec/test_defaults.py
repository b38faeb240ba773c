"""The defaults chosen on the panel of real screens, and the seed's model kept expressible."""

from __future__ import annotations

import numpy as np
import pytest
from _screens import FORMULA
from scipy import stats

import screenformula as sf
from screenformula import demo
from screenformula.cli import mageck_test
from screenformula.cli.config import AnalysisConfig
from screenformula.spec.formula import SCREEN_FORMULA
from screenformula.spec.settings import SETTINGS_VERSION, ModelSettings


def test_default_dispersion_is_the_trend_everywhere(small_screen):
    data, _ = small_screen
    model = sf.ScreenModel(FORMULA, data)
    assert model.spec.dispersion.mode == "trend"
    assert model.settings["dispersion"] == "trend"
    assert ModelSettings(FORMULA).dispersion == "trend"
    assert AnalysisConfig(counts="c.tsv", formula=FORMULA).dispersion == "trend"
    assert "phi_trend_slope" in repr(model)


def test_default_replicate_scales_are_on_where_a_condition_is_replicated(small_screen):
    data, _ = small_screen
    model = sf.ScreenModel(FORMULA, data)
    assert model.settings["replicate_scale"] == "condition"
    assert ModelSettings(FORMULA).replicate_scale == "condition"
    assert AnalysisConfig(counts="c.tsv", formula=FORMULA).replicate_scale == "condition"
    assert model.spec.replicate_scale.active and "Replicate scales:" in repr(model)
    assert "log_scale__treatment[treated]" in {v.name for v in model.pymc_model.free_RVs}
    # a fit saved before the setting existed rebuilds as it was fitted: without scales
    saved = ModelSettings(FORMULA).to_dict()
    del saved["replicate_scale"], saved["version"]
    assert ModelSettings.from_dict(saved).replicate_scale == "none"


def test_the_command_line_and_demo_fit_student_t3_gene_slopes(small_screen):
    """The panel's default: Student-t gene slopes with df fixed at 3, normal intercepts."""
    assert mageck_test.FORMULA == demo.FORMULA == SCREEN_FORMULA
    data, _ = small_screen
    model = sf.ScreenModel(SCREEN_FORMULA, data)
    gene = next(t for t in model.spec.groups if t.name == "gene")
    assert gene.dist == "student_slopes" and gene.t_coefs.tolist() == [False, True]
    assert model.spec.priors["df_gene"].prior == sf.Prior("Constant", value=3)
    names = {v.name for v in model.pymc_model.free_RVs}
    assert "df_gene" not in names and not any(n.startswith("w_") for n in names)
    # a fit saved before df was fixed rebuilds with the df prior it was fitted with
    saved = ModelSettings(SCREEN_FORMULA).to_dict()
    del saved["replicate_scale"], saved["version"]
    old = ModelSettings.from_dict(saved)
    assert old.priors["df"] == sf.Prior("Gamma", alpha=2, beta=0.1)
    assert ModelSettings.from_dict(ModelSettings(SCREEN_FORMULA).to_dict()).priors == {}


def test_saved_settings_carry_their_version():
    """Version 1 (no replicate scales), 2 (scales, no key) and today's keep their meaning;
    a newer version is refused, not read with today's defaults."""
    today = ModelSettings(SCREEN_FORMULA, replicate_scale="none").to_dict()
    assert today["version"] == SETTINGS_VERSION
    # version 2 has replicate_scale and no version key: read with today's defaults
    two = {k: v for k, v in today.items() if k != "version"}
    assert ModelSettings.from_dict(two) == ModelSettings.from_dict(today)
    # a version-1 fit that happened to store replicate_scale is still version 1
    one = today | {"version": 1}
    assert ModelSettings.from_dict(one).priors["df"] == sf.Prior("Gamma", alpha=2, beta=0.1)
    newer = SETTINGS_VERSION + 1
    with pytest.raises(ValueError, match=rf"newer screenformula \(settings version {newer};"):
        ModelSettings.from_dict(today | {"version": SETTINGS_VERSION + 1})


def test_the_seeds_model_stays_expressible(small_screen):
    """dispersion="sgrna", normal gene effects and no replicate scales: the seed's model,
    term for term."""
    data, _ = small_screen
    model = sf.ScreenModel(FORMULA, data, dispersion="sgrna", replicate_scale="none")
    assert "phi[sgrna] ~ Gamma(1, phi_rate)" in repr(model)
    assert "Replicate scales" not in repr(model)
    pm_model = model.pymc_model
    names = {v.name for v in pm_model.free_RVs}
    assert not any(n.startswith("log_scale") for n in names)
    assert {"phi", "phi_rate"} <= names
    assert not names & {"phi_trend_Intercept", "phi_trend_slope", "sd_phi", "z_phi"}
    assert not any(n.startswith(("df_", "w_")) for n in names)  # gene effects stay normal
    phi = pm_model["phi"]
    assert phi.owner.op.name == "gamma" and pm_model.named_vars_to_dims["phi"] == ("sgrna",)
    # its density is Gamma(shape 1, rate phi_rate), per guide
    point = pm_model.initial_point()
    logp = pm_model.compile_logp(vars=[phi], jacobian=False, sum=True)
    rate = float(np.exp(point["phi_rate_log__"]))
    value = np.exp(point["phi_log__"])
    expected = stats.gamma(a=1.0, scale=1.0 / rate).logpdf(value).sum()
    assert logp(point) == pytest.approx(expected, rel=1e-6)
