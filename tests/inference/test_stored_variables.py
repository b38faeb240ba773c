"""Which variables a fit keeps: per-guide ones are dropped by shape, not by name."""

from __future__ import annotations

import pymc as pm
from _screens import FORMULA

import screenformula as sf
from screenformula.inference.nuts import sgrna_store_default, stored_variables


def test_guide_level_variables_dropped_whatever_their_dims(small_screen):
    data, _ = small_screen
    scatter = {"sd_phi": sf.Prior("HalfNormal", sigma=1)}  # z_phi: one per guide
    model = sf.ScreenModel(FORMULA, data, priors=scatter).pymc_model
    kept = stored_variables(model, store_sgrna=False)
    # the centred guide intercepts have one row per guide but no declared sgrna dim
    assert "t_sgrna__Intercept" in model.named_vars
    assert not model.named_vars_to_dims.get("t_sgrna__Intercept")
    for name in ("t_sgrna__Intercept", "r_sgrna", "phi", "z_phi", "z_sgrna", "L_sgrna"):
        assert name not in kept
    for name in ("Intercept", "b", "sd_gene", "sd_sgrna", "r_gene", "cor_sgrna"):
        assert name in kept
    for name in ("phi_trend_Intercept", "phi_trend_slope", "sd_phi"):  # per class
        assert name in kept
    assert "t_sgrna__Intercept" in stored_variables(model, store_sgrna=True)
    per_guide = sf.ScreenModel(FORMULA, data, dispersion="sgrna").pymc_model
    kept = stored_variables(per_guide, store_sgrna=False)
    assert "phi_rate" in kept and "phi" not in kept


def test_filter_by_shape_for_any_name():
    coords = {"sgrna": [f"s{i}" for i in range(6)], "gene": ["a", "b", "c"]}
    with pm.Model(coords=coords) as model:
        pm.Normal("scalar", 0, 1)
        pm.Normal("per_gene", 0, 1, dims="gene")
        pm.Normal("per_gene_raw", 0, 1, shape=(3, 2))
        pm.Normal("per_guide_raw", 0, 1, shape=(6, 2))
        pm.Normal("per_guide", 0, 1, dims="sgrna")
        pm.Deterministic("per_guide_det", model["per_guide_raw"].sum(axis=1))
    kept = stored_variables(model, store_sgrna=False)
    assert kept == ["scalar", "per_gene", "per_gene_raw"]
    # 6 x 2 + 6 + 6 = 24 guide-level numbers per draw
    assert sgrna_store_default(model, 2_500_000)
    assert not sgrna_store_default(model, 2_500_001)


def test_shapes_pymc_cannot_infer_statically_are_evaluated():
    from screenformula.inference.nuts import variable_shapes

    # a normal mixture's shape is known only when evaluated, and depends on no free
    # variable: compiled with no inputs, it once refused the initial point's values
    with pm.Model() as model:
        w = pm.Beta("w", 1, 1)
        pm.NormalMixture(
            "x", w=pm.math.stack([1 - w, w]), mu=[0.0, 0.0], sigma=[0.2, 1.0], shape=(3, 2)
        )
    shapes = variable_shapes(model)
    assert shapes["x"] == (3, 2)
    assert shapes["w"] == ()
