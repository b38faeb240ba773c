from __future__ import annotations

import hashlib
import time

import numpy as np
import pandas as pd
import pytest

import screenformula
from screenformula.errors import ScreenFormulaError
from screenformula.io.screen_data import ScreenData
from screenformula.simulate import (
    CONTROL_GENE,
    SimulationTruth,
    sample_negative_binomial,
    simulate_screen,
)


@pytest.fixture(scope="module")
def default_screen() -> tuple[ScreenData, SimulationTruth]:
    return simulate_screen(random_seed=11)


def test_lazy_public_name():
    assert screenformula.simulate_screen is simulate_screen


def test_reproducible_with_seed():
    d1, t1 = simulate_screen(n_genes=50, n_groups=3, n_controls=8, random_seed=5)
    d2, t2 = simulate_screen(n_genes=50, n_groups=3, n_controls=8, random_seed=5)
    d3, _ = simulate_screen(n_genes=50, n_groups=3, n_controls=8, random_seed=6)
    np.testing.assert_array_equal(d1.counts, d2.counts)
    pd.testing.assert_frame_equal(t1.genes, t2.genes)
    pd.testing.assert_frame_equal(t1.sgrnas, t2.sgrnas)
    pd.testing.assert_frame_equal(t1.groups, t2.groups)
    assert not np.array_equal(d1.counts, d3.counts)


def test_generator_seed_accepted():
    d1, _ = simulate_screen(n_genes=20, random_seed=np.random.default_rng(3))
    d2, _ = simulate_screen(n_genes=20, random_seed=np.random.default_rng(3))
    np.testing.assert_array_equal(d1.counts, d2.counts)


def test_pool_switch_keeps_truth():
    with_pool, t_pool = simulate_screen(n_genes=30, n_pool_samples=2, random_seed=4)
    without, t_none = simulate_screen(n_genes=30, n_pool_samples=0, random_seed=4)
    # Separate random streams per component: the pool changes no gene or guide parameter.
    assert without.n_samples == 6 and with_pool.n_samples == 8
    assert without.pool_mask.sum() == 0 and with_pool.pool_mask.sum() == 2
    pd.testing.assert_frame_equal(t_pool.genes, t_none.genes)
    pd.testing.assert_frame_equal(t_pool.sgrnas, t_none.sgrnas)


def test_shapes_and_names(default_screen):
    data, truth = default_screen
    assert data.counts.shape == (800, 7)
    assert data.counts.dtype == np.int64
    assert data.n_genes == 200
    assert list(data.sgrnas[:4]) == ["G001_1", "G001_2", "G001_3", "G001_4"]
    assert len(truth.genes) == 200  # one treatment
    assert len(truth.sgrnas) == 800
    assert list(truth.sgrnas["sgrna"]) == list(data.sgrnas)
    assert truth.groups.empty
    assert list(truth.groups.columns) == [
        "group",
        "treatment",
        "effect",
        "is_hit",
        "baseline",
        "n_genes",
    ]
    assert truth.expected_counts.shape == data.counts.shape
    assert set(truth.genes.columns) >= {
        "gene",
        "treatment",
        "lfc",
        "lfc_log2",
        "is_hit",
        "group",
        "baseline",
    }
    assert set(truth.sgrnas.columns) >= {
        "sgrna",
        "gene",
        "baseline",
        "efficiency",
        "phi",
        "lfc_treated",
    }
    np.testing.assert_allclose(truth.genes["lfc_log2"], truth.genes["lfc"] / np.log(2))


def test_sample_table(default_screen):
    data, truth = default_screen
    sheet = data.samples
    assert list(sheet.columns) == ["condition", "treatment", "replicate", "pool"]
    assert list(sheet.index) == [
        "pool_1",
        "control_1",
        "control_2",
        "control_3",
        "treated_1",
        "treated_2",
        "treated_3",
    ]
    assert isinstance(sheet["treatment"].dtype, pd.CategoricalDtype)
    assert list(sheet["treatment"].cat.categories) == ["control", "treated", "pool"]
    assert list(sheet["condition"]) == ["pool"] + ["control"] * 3 + ["treated"] * 3
    assert list(sheet["replicate"]) == [1, 1, 2, 3, 1, 2, 3]
    assert list(sheet["pool"]) == [True] + [False] * 6
    assert list(data.pool_samples) == ["pool_1"]
    assert list(truth.samples["sample"]) == list(sheet.index)
    sf = truth.samples["size_factor"].to_numpy()
    assert np.all(sf > 0)
    assert np.exp(np.log(sf).mean()) == pytest.approx(1.0)


def test_no_pool_no_pool_level():
    data, truth = simulate_screen(n_genes=20, n_pool_samples=0, random_seed=1)
    assert list(data.samples["treatment"].cat.categories) == ["control", "treated"]
    assert not data.pool_mask.any()
    assert truth.params["alpha_pool"] is None


def test_size_factor_options():
    data, truth = simulate_screen(n_genes=100, size_factors="true", random_seed=2)
    np.testing.assert_allclose(data.size_factors.to_numpy(), truth.samples["size_factor"])
    assert data.size_factor_method == "given"
    median, _ = simulate_screen(n_genes=100, random_seed=2)
    assert median.size_factor_method == "median"
    # Median-of-ratios estimates the true factors up to a common scale.
    ratio = median.size_factors.to_numpy()[1:] / truth.samples["size_factor"].to_numpy()[1:]
    assert np.std(np.log(ratio)) < 0.05


def test_negative_binomial_moments():
    rng = np.random.default_rng(0)
    for mu, phi in [(50.0, 5.0), (300.0, 20.0), (2.0, 0.5)]:
        y = sample_negative_binomial(rng, np.full(400_000, mu), phi)
        assert y.dtype == np.int64
        assert y.mean() == pytest.approx(mu, rel=0.01)
        assert y.var() == pytest.approx(mu + mu**2 / phi, rel=0.03)
    # phi = inf is Poisson.
    y = sample_negative_binomial(rng, np.full(200_000, 40.0), np.inf)
    assert y.var() == pytest.approx(40.0, rel=0.03)
    with pytest.raises(ScreenFormulaError):
        sample_negative_binomial(rng, np.array([1.0]), 0.0)


def test_screen_counts_match_nb_parameters():
    data, truth = simulate_screen(
        n_genes=3000, dispersion="shared", phi=15.0, n_pool_samples=0, random_seed=8
    )
    assert np.all(truth.sgrnas["phi"] == 15.0)
    mu = truth.expected_counts.to_numpy()
    y = data.counts.astype(float)
    z = (y - mu) / np.sqrt(mu + mu**2 / 15.0)
    assert abs(z.mean()) < 0.01
    assert z.var() == pytest.approx(1.0, abs=0.03)
    assert y.mean() / mu.mean() == pytest.approx(1.0, abs=0.01)
    # The expected counts are exactly the model's linear predictor.
    sgr = truth.sgrnas
    ctrl = data.samples.index.get_indexer(["control_1"])[0]
    trt = data.samples.index.get_indexer(["treated_1"])[0]
    sf = truth.samples["size_factor"].to_numpy()
    np.testing.assert_allclose(mu[:, ctrl], sf[ctrl] * sgr["baseline_count"])
    np.testing.assert_allclose(
        mu[:, trt], sf[trt] * sgr["baseline_count"] * np.exp(sgr["lfc_treated"])
    )


def test_sgrna_dispersion_partially_pooled():
    _, truth = simulate_screen(n_genes=2000, phi=20.0, phi_shape=4.0, random_seed=3)
    phi = truth.sgrnas["phi"]
    assert phi.mean() == pytest.approx(20.0, rel=0.05)
    assert phi.std() / phi.mean() == pytest.approx(0.5, rel=0.1)
    assert truth.params["phi"]["mode"] == "sgrna"


def test_nonhits_zero_and_hit_fraction():
    data, truth = simulate_screen(n_genes=500, frac_hits=0.1, random_seed=9)
    genes = truth.genes
    assert genes["is_hit"].sum() == 50
    assert np.all(genes.loc[~genes["is_hit"], "lfc"] == 0.0)
    mags = genes.loc[genes["is_hit"], "lfc"].abs()
    assert mags.min() >= 0.5 and mags.max() <= 2.5
    assert (genes.loc[genes["is_hit"], "lfc"] < 0).any()
    assert (genes.loc[genes["is_hit"], "lfc"] > 0).any()
    assert truth.params["n_hits"] == {"treated": 50}


def test_hit_direction_negative():
    _, truth = simulate_screen(n_genes=300, hit_direction="negative", random_seed=1)
    hits = truth.genes[truth.genes["is_hit"]]
    assert len(hits) == 30 and np.all(hits["lfc"] < 0)


def test_hits_visible_in_counts():
    data, truth = simulate_screen(n_genes=1000, random_seed=12)
    norm = data.counts / data.size_factors.to_numpy()
    trt = data.samples["treatment"].to_numpy()
    log_ratio = np.log(norm[:, trt == "treated"].mean(1) + 1) - np.log(
        norm[:, trt == "control"].mean(1) + 1
    )
    naive = pd.Series(log_ratio).groupby(data.genes_of_sgrna).mean()
    true = truth.lfc_table()["treated"]
    assert np.corrcoef(naive.loc[true.index], true)[0, 1] > 0.9


def test_pool_follows_guide_baseline():
    data, truth = simulate_screen(n_genes=1000, n_pool_samples=2, random_seed=4)
    assert data.pool_mask.sum() == 2
    assert list(data.samples.loc[data.pool_mask, "treatment"]) == ["pool", "pool"]
    assert list(data.samples.loc[data.pool_mask, "condition"]) == ["pool", "pool"]
    pool = data.counts[:, data.pool_mask]
    for p in range(2):
        r = np.corrcoef(np.log(pool[:, p] + 0.5), truth.sgrnas["baseline"])[0, 1]
        assert r > 0.95
    # The pool does not carry the gene baseline a_g: mu = L_p exp(alpha_pool + a_s).
    sf = truth.samples["size_factor"].to_numpy()[data.pool_mask]
    expected = sf[0] * np.exp(truth.params["alpha_pool"] + truth.sgrnas["baseline"])
    np.testing.assert_allclose(truth.expected_counts.iloc[:, 0], expected)


def test_groups_present():
    data, truth = simulate_screen(n_genes=120, n_groups=6, frac_group_hits=0.5, random_seed=7)
    assert data.gene_groups is not None
    assert len(data.group_names) == 6
    assert len(truth.groups) == 6
    assert truth.groups["n_genes"].sum() == 120
    assert truth.groups["is_hit"].sum() == 3
    groups = truth.groups.set_index("group")
    genes = truth.genes.set_index("gene")
    assert (genes["group"] == data.gene_groups.reindex(genes.index)).all()
    for name, row in groups.iterrows():
        members = genes[genes["group"] == name]
        assert np.all(members["group_effect"] == row["effect"])
        if row["is_hit"]:
            assert members["is_hit"].all()
            assert abs(row["effect"]) >= 0.5
            # Genes spread around the shared group effect.
            assert abs(members["lfc"].mean() - row["effect"]) < 0.3
        else:
            assert row["effect"] == 0.0
    # Genes of non-hit groups that are not individual hits have LFC exactly 0.
    assert np.all(genes.loc[~genes["is_hit"], "lfc"] == 0.0)


def test_controls_have_zero_lfc():
    data, truth = simulate_screen(
        n_genes=100,
        n_controls=40,
        treatments=("a", "b"),
        treatment_effects=(0.4, -0.2),
        n_groups=4,
        random_seed=3,
    )
    assert data.controls.sum() == 40
    assert set(data.genes_of_sgrna[data.controls]) == {CONTROL_GENE}
    ctrl_genes = truth.genes[truth.genes["gene"] == CONTROL_GENE]
    assert len(ctrl_genes) == 2
    assert np.all(ctrl_genes["lfc"] == 0.0) and not ctrl_genes["is_hit"].any()
    assert ctrl_genes["is_control"].all()
    assert set(ctrl_genes["group"]) == {"ungrouped"}
    ctrl_guides = truth.sgrnas[truth.sgrnas["is_control"]]
    assert np.all(ctrl_guides[["lfc_a", "lfc_b"]].to_numpy() == 0.0)
    # Non-hit targeting genes sit at the population slope b_t.
    target = truth.genes[~truth.genes["is_control"] & ~truth.genes["is_hit"]]
    for t, b in (("a", 0.4), ("b", -0.2)):
        assert np.allclose(target.loc[target["treatment"] == t, "lfc"], b)
    assert truth.params["b"] == {"a": 0.4, "b": -0.2}
    # Control size factors work.
    assert data.with_size_factors("control").size_factor_method == "control"


def test_several_treatments():
    data, truth = simulate_screen(
        n_genes=200, treatments=("drugA", "drugB", "drugC"), n_replicates=2, random_seed=1
    )
    assert data.n_samples == 1 + 2 * 4
    assert list(data.samples["treatment"].cat.categories) == [
        "control",
        "drugA",
        "drugB",
        "drugC",
        "pool",
    ]
    assert len(truth.genes) == 600
    table = truth.lfc_table()
    assert list(table.columns) == ["drugA", "drugB", "drugC"]
    assert table.shape == (200, 3)
    assert list(truth.genes.groupby("treatment")["is_hit"].sum()) == [20, 20, 20]
    assert {f"lfc_{t}" for t in ("drugA", "drugB", "drugC")} <= set(truth.sgrnas.columns)
    assert set(truth.params["tau_gene"]) == {"intercept", "drugA", "drugB", "drugC"}
    assert truth.params["gene_correlation"].shape == (4, 4)


def test_normal_gene_effects_correlation():
    _, truth = simulate_screen(
        n_genes=4000,
        n_sgrnas_per_gene=1,
        gene_effects="normal",
        tau_gene=(0.5, 0.8),
        gene_correlation=-0.6,
        n_pool_samples=0,
        random_seed=2,
    )
    genes = truth.genes
    assert genes["lfc"].std() == pytest.approx(0.8, rel=0.05)
    assert genes["baseline"].std() == pytest.approx(0.5, rel=0.05)
    assert np.corrcoef(genes["baseline"], genes["lfc"])[0, 1] == pytest.approx(-0.6, abs=0.05)
    assert np.array_equal(genes["is_hit"], genes["lfc"].abs() >= 0.5)


def test_sgrna_correlation_and_scale():
    _, truth = simulate_screen(
        n_genes=3000,
        tau_sgrna=(1.0, 0.3),
        sgrna_correlation=0.5,
        frac_hits=0.0,
        n_pool_samples=0,
        random_seed=5,
    )
    sgr = truth.sgrnas
    assert sgr["baseline"].std() == pytest.approx(1.0, rel=0.05)
    assert sgr["lfc_treated"].std() == pytest.approx(0.3, rel=0.05)
    assert np.corrcoef(sgr["baseline"], sgr["lfc_treated"])[0, 1] == pytest.approx(0.5, abs=0.05)


def test_guide_efficiency():
    _, truth = simulate_screen(
        n_genes=500, guide_efficiency=True, tau_sgrna=(1.0, 0.0), random_seed=6
    )
    sgr = truth.sgrnas
    eff = sgr["efficiency"]
    assert eff.between(0, 1).all() and eff.std() > 0.05
    gene_lfc = truth.lfc_table()["treated"]
    np.testing.assert_allclose(sgr["lfc_treated"], eff * gene_lfc.loc[sgr["gene"]].to_numpy())
    _, plain = simulate_screen(n_genes=50, random_seed=6)
    assert np.all(plain.sgrnas["efficiency"] == 1.0)


def test_bad_arguments():
    with pytest.raises(ScreenFormulaError):
        simulate_screen(treatments=("control",))
    with pytest.raises(ScreenFormulaError):
        simulate_screen(n_genes=0)
    with pytest.raises(ScreenFormulaError):
        simulate_screen(dispersion="gene")
    with pytest.raises(ScreenFormulaError, match="positive-definite"):
        simulate_screen(treatments=("a", "b", "c", "d", "e"), gene_correlation=-0.9)
    with pytest.raises(ScreenFormulaError):
        simulate_screen(gene_correlation=np.eye(3))


def test_large_screen_is_fast():
    start = time.perf_counter()
    data, _ = simulate_screen(n_genes=20_000, n_sgrnas_per_gene=4, random_seed=1)
    elapsed = time.perf_counter() - start
    assert data.counts.shape == (80_000, 7)
    assert elapsed < 5.0


@pytest.mark.parametrize(
    ("kwargs", "digest", "total", "lfc_sum", "phi_sum"),
    [
        ({"random_seed": 1}, "13fc2fa0c13fed89", 1613453, -9.595223868990496, 15895.138232689336),
        (
            {
                "n_genes": 60,
                "n_sgrnas_per_gene": 3,
                "treatments": ("a", "b"),
                "n_groups": 5,
                "n_controls": 7,
                "guide_efficiency": True,
                "random_seed": 11,
            },
            "9d6c8430a1f46d18",
            594106,
            2.9830852110668524,
            3577.265021911967,
        ),
        (
            {
                "n_genes": 50,
                "gene_effects": "normal",
                "n_groups": 4,
                "dispersion": "shared",
                "random_seed": 5,
            },
            "4cb60ba1ba947d9c",
            483919,
            -6.401888675633622,
            4000.0,
        ),
    ],
)
def test_fixed_seed_screen_is_unchanged(kwargs, digest, total, lfc_sum, phi_sum):
    """A fixed seed gives the same counts and truth as when simulate_screen was split up."""
    data, truth = simulate_screen(**kwargs)
    counts = np.ascontiguousarray(data.counts, dtype="<i8")
    assert hashlib.sha256(counts.tobytes()).hexdigest()[:16] == digest
    assert int(counts.sum()) == total
    assert float(truth.genes["lfc"].sum()) == pytest.approx(lfc_sum, rel=1e-12)
    assert float(truth.sgrnas["phi"].sum()) == pytest.approx(phi_sum, rel=1e-12)
