"""Contrast extraction and tables on fits with hand-built posteriors (no sampling)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _contrast_fakes import fake_fit, small_screen

from screenformula.errors import FitError
from screenformula.results.draws import (
    LOG2E,
    NO_GROUPS,
    NO_SGRNA_DRAWS,
    gene_lfc_draws,
    group_effect_draws,
    sgrna_lfc_draws,
)

SEED_FORMULA = "count ~ 1 + treatment + (1 + treatment | gene) + (1 + treatment | gene:sgrna)"
GROUP_FORMULA = "count ~ 1 + treatment + (1 + treatment | group/gene/sgrna)"
A, B = "treatment[drugA]", "treatment[drugB]"


@pytest.fixture(scope="module")
def data():
    return small_screen()


@pytest.fixture(scope="module")
def seed_fit(data):
    return fake_fit(data, SEED_FORMULA)


def coef(fit, name):
    return list(fit.model.spec.mean.common.names).index(name)


def test_gene_lfc_is_population_slope_plus_gene_effect(seed_fit):
    fit, arr = seed_fit
    da = gene_lfc_draws(fit)
    assert list(da["contrast"].values) == ["drugA vs control", "drugB vs control"]
    assert da.dims == ("draw", "gene", "contrast")
    for k, name in enumerate((A, B)):
        expected = arr["b"][:, coef(fit, name), None] + arr["r_gene"][:, :, 1 + k]
        assert np.allclose(da.values[:, :, k], expected)
    res = fit.contrast()
    g = res.genes[res.genes["contrast"] == "drugA vs control"]
    assert np.allclose(g["lfc_ln"], da.values[:, :, 0].mean(axis=0))
    assert np.allclose(g["lfc"], g["lfc_ln"] * LOG2E)
    assert np.allclose(g["lfc_sd"], da.values[:, :, 0].std(axis=0, ddof=1) * LOG2E)
    assert (g["hdi_low"] < g["lfc"]).all() and (g["lfc"] < g["hdi_high"]).all()
    assert (g["n_sgrna"] == 3).all()
    assert len(res.genes) == 6 * 2


def test_treatment_against_treatment(seed_fit):
    fit, arr = seed_fit
    da = gene_lfc_draws(fit, a="drugA", b="drugB")
    assert list(da["contrast"].values) == ["drugA vs drugB"]
    expected = (
        arr["b"][:, coef(fit, A), None]
        + arr["r_gene"][:, :, 1]
        - arr["b"][:, coef(fit, B), None]
        - arr["r_gene"][:, :, 2]
    )
    assert np.allclose(da.values[:, :, 0], expected)
    both = gene_lfc_draws(fit, ref="drugA")
    assert list(both["contrast"].values) == ["control vs drugA", "drugB vs drugA"]
    assert np.allclose(both.values[:, :, 1], -expected)


def test_guide_lfc_adds_the_guide_effect(seed_fit, data):
    fit, arr = seed_fit
    genes = gene_lfc_draws(fit).values
    guides = sgrna_lfc_draws(fit).values
    assert np.allclose(guides[:, :, 0], genes[:, data.gene_codes, 0] + arr["r_sgrna"][:, :, 1])
    res = fit.contrast()
    s = res.sgrnas[res.sgrnas["contrast"] == "drugA vs control"]
    assert list(s["sgrna"]) == list(data.sgrnas)
    assert np.allclose(s["deviation"], arr["r_sgrna"][:, :, 1].mean(axis=0) * LOG2E)


def test_group_term_enters_gene_and_group_effects(data):
    fit, arr = fake_fit(data, GROUP_FORMULA)
    group_of_gene = np.asarray(data.group_codes)
    genes = gene_lfc_draws(fit).values[:, :, 0]
    expected = (
        arr["b"][:, coef(fit, A), None]
        + arr["r_group"][:, group_of_gene, 1]
        + arr["r_gene"][:, :, 1]
    )
    assert np.allclose(genes, expected)
    groups = group_effect_draws(fit)
    assert groups.attrs["source"] == "group term"
    assert np.allclose(
        groups.values[:, :, 0], arr["b"][:, coef(fit, A), None] + arr["r_group"][:, :, 1]
    )
    res = fit.contrast()
    assert res.groups.attrs["source"] == "group term"
    assert set(res.groups["group"]) == {"GRP1", "GRP2"}


def test_group_effect_without_group_term_is_mean_gene_lfc(seed_fit, data):
    fit, _ = seed_fit
    genes = gene_lfc_draws(fit).values[:, :, 0]
    groups = group_effect_draws(fit)
    assert groups.attrs["source"] == "mean of gene LFCs"
    for k, name in enumerate(groups["group"].values):
        members = (data.gene_groups == name).to_numpy()
        assert np.allclose(groups.values[:, k, 0], genes[:, members].mean(axis=1))


def test_prob_top_and_ranks_of_groups(data):
    n = 400
    r_group = np.zeros((n, 2, 3))
    r_group[:, 1, 1] = 1.0  # GRP2 is far more enriched under drugA in every draw
    r_group[: n // 4, 0, 2] = 2.0  # under drugB GRP1 wins a quarter of the draws
    r_group[:, 1, 2] = 1.0
    fit, _ = fake_fit(data, GROUP_FORMULA, {"r_group": r_group, "b": np.zeros(2)})
    res = fit.contrast()
    g = res.groups.set_index(["contrast", "group"])
    assert g.loc[("drugA vs control", "GRP2"), "prob_top"] == 1.0
    assert g.loc[("drugA vs control", "GRP1"), "prob_bottom"] == 1.0
    assert g.loc[("drugA vs control", "GRP2"), "rank"] == 1
    assert g.loc[("drugB vs control", "GRP1"), "prob_top"] == pytest.approx(0.25)
    assert g.loc[("drugB vs control", "GRP2"), "prob_top"] == pytest.approx(0.75)
    assert g.loc[("drugB vs control", "GRP2"), "mean_rank"] == pytest.approx(1.25)
    assert g.loc[("drugA vs control", "GRP1"), "n_genes"] == 3


def test_columns_on_a_certain_and_a_null_gene(data):
    n = 400
    rng = np.random.default_rng(5)
    r_gene = rng.normal(0.0, 0.05, (n, 6, 3))
    r_gene[:, 0, 1] = -2.0 + rng.normal(0, 0.1, n)  # G1: surely down under drugA
    half = rng.normal(0.0, 1.0, (n // 2,))
    r_gene[:, 1, 1] = np.concatenate([half, -half])  # G2: symmetric around 0
    fit, _ = fake_fit(data, SEED_FORMULA, {"r_gene": r_gene, "b": np.zeros(2)})
    res = fit.contrast(delta=0.5)
    g = res.genes[res.genes["contrast"] == "drugA vs control"].set_index("gene")
    assert g.loc["G1", "prob_down"] == 1.0 and g.loc["G1", "prob_up"] == 0.0
    assert g.loc["G1", "lfsr"] == 0.0 and g.loc["G1", "pep"] == 0.0
    assert g.loc["G1", "qvalue"] == 0.0 and g.loc["G1", "hit"]
    assert g.loc["G1", "rank"] == 1
    assert g.loc["G1", "lfc"] == pytest.approx(-2.0 * LOG2E, abs=0.05)
    assert g.loc["G2", "lfsr"] == pytest.approx(0.5)
    assert not g.loc["G2", "hit"]
    # delta is on the log2 scale: P(|LFC_ln| <= 0.5 * ln 2)
    ln_delta = 0.5 / LOG2E
    assert g.loc["G2", "pep"] == pytest.approx(np.mean(np.abs(r_gene[:, 1, 1]) <= ln_delta))
    down = res.hits(direction="down")
    assert "G1" in set(down["gene"]) and (down["lfc"] < 0).all()
    assert "G1" not in set(res.hits(direction="up")["gene"])
    assert set(res.hits(q=0.05)["gene"]) >= {"G1"}
    with pytest.raises(FitError, match="direction"):
        res.hits(direction="sideways")


def test_guide_efficiency_and_concordance(data):
    n = 400
    r_gene = np.zeros((n, 6, 3))
    r_gene[:, 0, 1] = -1.0  # G1 down under drugA, certainly
    r_sgrna = np.zeros((n, 18, 3))
    r_sgrna[:, 0, 1] = 0.5  # G1_1 does half of its gene's effect
    r_sgrna[:, 1, 1] = 1.5  # G1_2 goes the other way
    noise = np.random.default_rng(1).normal(0, 0.01, (n, 6, 3))
    fit, _ = fake_fit(
        data,
        SEED_FORMULA,
        {"r_gene": r_gene + noise, "r_sgrna": r_sgrna, "b": np.zeros(2)},
    )
    res = fit.contrast(a="drugA")
    s = res.sgrnas.set_index("sgrna")
    assert s.loc["G1_1", "efficiency"] == pytest.approx(0.5, abs=0.02)
    assert s.loc["G1_2", "efficiency"] == pytest.approx(-0.5, abs=0.02)
    assert s.loc["G1_3", "efficiency"] == pytest.approx(1.0, abs=0.02)
    assert s.loc["G1_1", "prob_concordant"] == 1.0 and s.loc["G1_2", "prob_concordant"] == 0.0
    # genes whose sign is unknown get no efficiency
    g2 = res.genes.set_index("gene").loc["G2"]
    assert g2["lfsr"] > 0.05 and s.loc[["G2_1", "G2_2", "G2_3"], "efficiency"].isna().all()


def test_missing_guide_draws_are_reported_not_fatal(data):
    fit, _ = fake_fit(data, SEED_FORMULA, store_sgrna=False)
    res = fit.contrast()
    assert res.sgrnas.empty
    assert res.sgrnas.attrs["message"] == NO_SGRNA_DRAWS == res.sgrna_message
    assert "store_sgrna" in repr(res)
    assert len(res.genes) == 12 and len(res.groups) == 4
    with pytest.raises(FitError, match="store_sgrna"):
        sgrna_lfc_draws(fit)


def test_no_gene_groups(data):
    plain = small_screen(n_groups=0)
    fit, _ = fake_fit(plain, SEED_FORMULA)
    res = fit.contrast()
    assert res.groups.empty and res.group_message == NO_GROUPS
    assert "group" not in res.genes.columns
    with pytest.raises(FitError, match="gene groups"):
        group_effect_draws(fit)


def test_numeric_factor_contrast_is_its_slope(data):
    fit, arr = fake_fit(data, "count ~ 1 + replicate + (1 + replicate | gene)")
    res = fit.contrast("replicate")
    assert list(res.genes["contrast"].unique()) == ["replicate"]
    assert np.allclose(res.genes["lfc_ln"], (arr["b"][:, 0, None] + arr["r_gene"][:, :, 1]).mean(0))
    with pytest.raises(FitError, match="numeric"):
        fit.contrast("replicate", ref="1")


def test_bad_requests_name_the_choices(seed_fit):
    fit, _ = seed_fit
    with pytest.raises(FitError, match="factors with coefficients: treatment"):
        fit.contrast("dose")
    with pytest.raises(FitError, match="levels: control, drugA, drugB"):
        fit.contrast(ref="placebo")
    with pytest.raises(FitError, match="disagree"):
        fit.contrast(ref="control", b="drugA")
    with pytest.raises(FitError, match="nothing to compare"):
        fit.contrast(a="control")
    with pytest.raises(FitError, match="delta"):
        fit.contrast(delta=-1)


def test_guide_counts_for_the_gene_panel(seed_fit, data):
    fit, _ = seed_fit
    res = fit.contrast(a="drugB")
    long = res.guide_counts("G2")
    assert set(long["sgrna"]) == {"G2_1", "G2_2", "G2_3"}
    raw = data.counts_frame().set_index("sgRNA")
    for row in long.itertuples():
        assert row.count == raw.loc[row.sgrna, row.sample]
        sf = data.size_factors[row.sample]
        assert row.normalized_count == pytest.approx(row.count / sf)
    roles = long.drop_duplicates("sample").set_index("sample")["role"]
    assert roles["control_1"] == "control" and roles["drugB_2"] == "treatment"
    assert roles["drugA_1"] == "other"


def test_expected_counts_arithmetic(data):
    values = {
        "Intercept": 5.0,
        "b": np.array([0.4, -0.3]),
        "r_gene": np.random.default_rng(2).normal(0, 0.3, (6, 3)),
        "r_sgrna": np.random.default_rng(3).normal(0, 0.5, (18, 3)),
    }
    fit, arr = fake_fit(data, SEED_FORMULA, values, n_draws=50)
    table = fit.expected_counts()
    l_ref = np.exp(np.mean(fit.model.spec.log_size_factors))
    assert table.attrs["reference_depth"] == pytest.approx(l_ref)
    assert table.attrs["guide_effects"] == "draws"
    design = {"control": [1, 0, 0], "drugA": [1, 1, 0], "drugB": [1, 0, 1]}
    codes = data.gene_codes
    for (gene, cond), row in table.set_index(["gene", "treatment"]).iterrows():
        g = list(data.gene_names).index(gene)
        z = np.array(design[cond], dtype=float)
        eta = 5.0 + values["b"] @ z[1:] + values["r_gene"][g] @ z
        guides = np.flatnonzero(codes == g)
        mu = l_ref * np.exp(eta + values["r_sgrna"][guides] @ z)
        assert row["mean"] == pytest.approx(mu.sum())
        assert row["hdi_low"] == pytest.approx(mu.sum()) == row["hdi_high"]
        samples = data.samples.index[data.samples["treatment"] == cond]
        norm = data.counts[guides][:, data.samples.index.get_indexer(samples)]
        norm = norm / data.size_factors[samples].to_numpy() * l_ref
        assert row["observed"] == pytest.approx(norm.sum(axis=0).mean())
    mean_table = fit.expected_counts(aggregate="mean")
    assert np.allclose(mean_table["mean"], table["mean"] / 3)
    doubled = fit.expected_counts(reference_depth=2 * l_ref)
    assert np.allclose(doubled["mean"], 2 * table["mean"])


def test_expected_counts_integrate_guides_without_their_draws(data):
    values = {"Intercept": 4.0, "b": np.zeros(2), "r_gene": np.zeros((6, 3))}
    values["sd_sgrna"] = np.array([0.6, 0.3, 0.2])
    fit, _ = fake_fit(data, SEED_FORMULA, values, n_draws=20, store_sgrna=False)
    table = fit.expected_counts()
    assert table.attrs["guide_effects"] == "integrated"
    l_ref = table.attrs["reference_depth"]
    row = table.set_index(["gene", "treatment"]).loc[("G1", "drugA")]
    # lognormal mean of a typical guide: exp(v / 2), v = 0.6^2 + 0.3^2 (no correlation)
    assert row["mean"] == pytest.approx(3 * l_ref * np.exp(4.0 + 0.5 * (0.36 + 0.09)))


def test_expected_counts_refuses_bad_options(seed_fit):
    fit, _ = seed_fit
    with pytest.raises(FitError, match="aggregate"):
        fit.expected_counts(aggregate="median")
    with pytest.raises(FitError, match="sample-sheet column"):
        fit.expected_counts(by="dose")
    with pytest.raises(FitError, match="positive"):
        fit.expected_counts(reference_depth=-1)


def test_tables_carry_their_settings(seed_fit):
    fit, _ = seed_fit
    res = fit.contrast(delta=0.25, hdi_prob=0.8, fdr_target=0.1)
    for table in (res.genes, res.sgrnas, res.groups):
        assert table.attrs["delta"] == 0.25 and table.attrs["hdi_prob"] == 0.8
        assert table.attrs["n_draws"] == 400
    assert isinstance(res.genes, pd.DataFrame)
    assert "drugA vs control" in repr(res)


def test_full_dummy_coding_in_a_group_term(data):
    fit, arr = fake_fit(data, "count ~ 1 + treatment + (0 + treatment | gene)")
    gene = fit.model.spec.term("gene")
    assert gene.coef_names == ("treatment[control]", A, B)
    da = gene_lfc_draws(fit, a="drugA")
    expected = arr["b"][:, coef(fit, A), None] + arr["r_gene"][:, :, 1] - arr["r_gene"][:, :, 0]
    assert np.allclose(da.values[:, :, 0], expected)
