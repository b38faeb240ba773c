"""Guide summaries kept at fit time give what the guide draws give (issue: no guide draws)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import screenformula as sf
from screenformula.results import contrast_core as core
from screenformula.results.guide_summary import GUIDE_DELTAS, GUIDE_HDI_PROBS

FORMULA = "count ~ 1 + treatment + (1 + treatment | gene) + (1 + treatment | gene:sgrna)"


def test_statistics_give_the_same_summary_as_the_draws():
    rng = np.random.default_rng(3)
    x = rng.normal(rng.normal(0, 1, 50), 0.4, size=(300, 50))
    x[:, 0] = 0.0  # ties at zero
    for delta, prob in ((0.0, 0.94), (0.3, 0.5)):
        stats = core.item_statistics(x, deltas=(0.1, delta), hdi_probs=(prob, 0.9))
        got = core.summary_from_statistics(stats, delta_index=1, hdi_index=0, fdr_target=0.1)
        want = core.summarize(x, delta=delta, hdi_prob=prob, fdr_target=0.1)
        for key, value in want.items():
            np.testing.assert_array_equal(got[key], value, err_msg=key)


def test_reversed_statistics_are_those_of_the_negated_draws():
    rng = np.random.default_rng(4)
    x = rng.normal(0.2, 1.0, size=(401, 30))
    stats = core.reversed_statistics(core.item_statistics(x, deltas=(0.0, 0.5)))
    want = core.item_statistics(-x, deltas=(0.0, 0.5))
    for key in ("mean", "sd", "n_pos", "n_neg", "n_above", "n_below"):
        np.testing.assert_allclose(stats[key], want[key], err_msg=key)
    # the HDI of the negated draws may pick another window only on exactly tied widths
    np.testing.assert_allclose(stats["hdi_low"], want["hdi_low"], atol=0.05)


@pytest.fixture(scope="module")
def screen():
    data, _ = sf.simulate_screen(
        n_genes=20, treatments=("drugA", "drugB"), n_sgrnas_per_gene=3, random_seed=6
    )
    return data


@pytest.mark.slow
@pytest.mark.parametrize("method", ["nuts", "approx"])
def test_streamed_summaries_equal_the_stored_draws(screen, method, tmp_path):
    """Same seed, same draws: the guide table from kept summaries equals the one from draws."""
    model = sf.ScreenModel(FORMULA, screen)
    if method == "nuts":
        kw = {"draws": 60, "tune": 60, "chains": 2}
    else:
        kw = {"draws": 150, "n": 300}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stored = model.fit(method, store_sgrna=True, random_seed=4, progress=False, **kw)
        streamed = model.fit(method, store_sgrna=False, random_seed=4, progress=False, **kw)
    assert streamed.sgrna_summary is not None and stored.sgrna_summary is None
    assert "r_sgrna" not in streamed.posterior and "phi" not in streamed.posterior
    assert "r_sgrna" in stored.posterior
    assert not streamed.options["store_sgrna"]
    saved = sf.load_fit(streamed.save(tmp_path / "streamed.nc"))
    for kwargs in (
        {},
        {"delta": 0.5, "hdi_prob": 0.9},
        {"ref": "drugA", "delta": 1.0},  # drugB vs drugA, kept the other way round
        {"a": "control", "b": "drugB"},
    ):
        want = stored.contrast(**kwargs)
        for fit in (streamed, saved):
            got = fit.contrast(**kwargs)
            assert got.sgrnas.attrs["source"].startswith("guide summaries")
            pd.testing.assert_frame_equal(got.sgrnas, want.sgrnas, check_exact=False, rtol=1e-9)
            pd.testing.assert_frame_equal(got.genes, want.genes)
            pd.testing.assert_series_equal(got.phi, want.phi, rtol=1e-9)
    # the MAGeCK files are written from the summaries
    written = saved.contrast(a="drugB").to_mageck(tmp_path / "out")
    assert [p.name for p in written] == ["out.gene_summary.txt", "out.sgrna_summary.txt"]
    # off the kept grid: the columns that need it are NaN, and a warning says why
    assert 0.3 not in GUIDE_DELTAS and 0.7 not in GUIDE_HDI_PROBS
    with pytest.warns(UserWarning, match="delta=0.3.*hdi_prob=0.7"):
        off = streamed.contrast(delta=0.3, hdi_prob=0.7)
    assert off.sgrnas["qvalue"].isna().all() and off.sgrnas["hdi_low"].isna().all()
    assert off.sgrnas["lfsr"].notna().all()


@pytest.mark.slow
def test_summaries_of_many_blocks_in_threads_equal_one_block():
    """Blocks of guides summarised two at a time give what one block gives, in order."""
    from screenformula.results.guide_summary import SUMMARY_THREADS, compute_guide_summaries

    assert SUMMARY_THREADS >= 2
    data, _ = sf.simulate_screen(n_genes=70, n_sgrnas_per_gene=3, random_seed=2)
    model = sf.ScreenModel(FORMULA, data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = model.fit("approx", draws=100, n=300, store_sgrna=True, random_seed=4, progress=False)
    whole = compute_guide_summaries(fit)
    many = compute_guide_summaries(fit, block_bytes=1)  # the least: 64 guides a block
    assert whole is not None and many is not None and whole.sizes["sgrna"] == 210
    xr.testing.assert_identical(many, whole)
