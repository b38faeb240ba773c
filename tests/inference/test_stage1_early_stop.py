"""Stage 1 stops at the first multiple of ``check_every`` draws where its globals pass."""

from __future__ import annotations

import numpy as np
import pytest
from _screens import FORMULA

import screenformula as sf
from screenformula.inference.nuts import variable_shapes
from screenformula.inference.two_stage.blocks import global_free_rvs
from screenformula.inference.two_stage.stage1 import (
    _until_converged,
    choose_genes,
    convergence,
    run_stage1,
)


@pytest.fixture(scope="module")
def stage1():
    data, _ = sf.simulate_screen(n_genes=40, random_seed=3)
    model = sf.ScreenModel(FORMULA, data)
    full = model.pymc_model
    probe = [
        rv for rv, _ in global_free_rvs(full, data.n_genes, data.n_sgrnas, variable_shapes(full))
    ]
    genes = choose_genes(data, 30, np.random.default_rng(1))

    def run(draws: int, check_every: int, ess: float) -> tuple:
        idata, _, _ = run_stage1(
            model, genes, probe, [], draws=draws, tune=200, chains=2, random_seed=4,
            progress=False, target_accept=0.8, check_every=check_every, ess_target=ess,
        )  # fmt: skip
        return idata, probe

    return run


@pytest.mark.slow
def test_stage1_stops_once_converged_and_the_draws_depend_on_the_seed_only(stage1):
    first, probe = stage1(20_000, 200, 100.0)
    n = first["posterior"].sizes["draw"]
    assert n < 20_000 and n % 200 == 0  # stopped early, at a multiple of the check
    conv = convergence(first["posterior"].to_dataset(), probe)
    assert all(min(v["ess_bulk_min"], v["ess_tail_min"]) > 100 for v in conv.values())
    assert first["sample_stats"].sizes["draw"] == n
    # the draws kept are those of a fixed run of that length with the same seed (which
    # no timing touches), so the same seed stops at the same draw with the same draws
    fixed, _ = stage1(n, 0, 100.0)
    assert fixed["posterior"].sizes["draw"] == n
    for name in probe:
        np.testing.assert_array_equal(
            fixed["posterior"][name].values, first["posterior"][name].values
        )


class FakeSampler:
    """A finished nutpie background sampler (no compiling): its draws are in a store."""

    is_finished = True

    def __init__(self):
        self.calls = []

    def abort(self):
        self.calls.append("abort")

    def wait(self):
        self.calls.append("wait")


def fake_store(folder, draws: np.ndarray, name: str = "x") -> str:
    """A zarr store laid out as nutpie's: ``posterior/<name>``, 16 draws per chunk."""
    import zarr

    zarr.open_group(str(folder / "posterior"), mode="a")  # the group, as nutpie makes first
    arr = zarr.open_array(
        str(folder / "posterior" / name), mode="w", shape=draws.shape, chunks=(1, 16),
        dtype="f8", fill_value=np.nan,
    )  # fmt: skip
    arr[:] = draws
    return str(folder)


class LaggingSampler(FakeSampler):
    """A sampler whose second variable's draws reach the store after its first's.

    ``y`` is unwritten (NaN) until the check first asks whether sampling has finished,
    as when nutpie has written ``x``'s chunk of the newest draws but not yet ``y``'s.
    """

    def __init__(self, folder, y: np.ndarray):
        super().__init__()
        self.folder, self.y = folder, y

    @property
    def is_finished(self):
        if "y written" not in self.calls:
            fake_store(self.folder, self.y, "y")
            self.calls.append("y written")
        return False


def test_a_target_never_met_runs_every_draw_and_a_met_one_stops_at_its_multiple(tmp_path):
    rng = np.random.default_rng(0)
    stuck = np.stack([np.zeros(600), np.ones(600)]) + rng.normal(0, 0.01, (2, 600))
    folder = fake_store(tmp_path / "stuck", stuck)  # chains disagree: R-hat far above 1.01
    sampler = FakeSampler()
    _, n = _until_converged(sampler, folder, ["x"], 600, 200, 100.0, 1.01, poll_seconds=0)
    assert n == 600 and sampler.calls == ["wait"]
    folder = fake_store(tmp_path / "mixed", rng.normal(size=(2, 600)))  # independent draws
    mixed = FakeSampler()
    _, n = _until_converged(mixed, folder, ["x"], 600, 200, 300.0, 1.01, poll_seconds=0)
    assert n == 200 and mixed.calls == ["abort"]  # 2 x 200 independent draws: ESS ~ 400
    # a first look at 400 (stage1_min_draws): the same draws are kept from there
    later = FakeSampler()
    _, n = _until_converged(later, folder, ["x"], 600, 200, 300.0, 1.01, poll_seconds=0, start=400)
    assert n == 400 and later.calls == ["abort"]


def test_a_multiple_is_checked_only_once_every_variable_has_its_draws(tmp_path):
    """A variable still unwritten when the first one is there is waited for, not skipped.

    ``y``'s chains disagree, so the check must never pass, and it must pass or fail on
    ``y``'s real draws: a check that read the unwritten (NaN) ``y`` once and kept it never
    looks at them (its NaN R-hat entries are skipped, or fail the check, by chance).
    """
    rng = np.random.default_rng(1)
    folder = tmp_path / "lagging"
    fake_store(folder, rng.normal(size=(2, 600)))  # x: independent draws, passes alone
    fake_store(folder, np.full((2, 600), np.nan), "y")  # y: not written yet
    stuck = np.stack([np.zeros(600), np.ones(600)]) + rng.normal(0, 0.01, (2, 600))
    sampler = LaggingSampler(folder, stuck)
    _, n = _until_converged(sampler, str(folder), ["x", "y"], 600, 200, 300.0, 1.01, 0)
    assert sampler.calls[0] == "y written"
    assert n == 600 and sampler.calls[-1] == "wait"


def test_the_rhat_asked_is_what_converged_chains_show_at_the_ess_asked():
    """sqrt(1 + 2 / ESS per chain): Stan's 1.01 at 100 per chain, 1.0198 at stage 1's 50."""
    from arviz_stats.base.array import array_stats

    from screenformula._constants import rhat_for_ess
    from screenformula.inference.two_stage.config import TwoStageConfig

    assert rhat_for_ess(100) == pytest.approx(1.01, abs=1e-4)
    assert TwoStageConfig().stage1_rhat_target == pytest.approx(1.0198, abs=1e-4)
    assert TwoStageConfig(stage1_rhat_max=1.01).stage1_rhat_target == 1.01
    # split R-hat of autocorrelated draws, 2 chains of 1,000 with ESS 50 each (AR(1),
    # (1 - rho) / (1 + rho) = 0.05): its root mean square sits where the formula says
    rng = np.random.default_rng(0)
    rho = 0.95 / 1.05
    noise = rng.normal(size=(300, 2, 1000)) * np.sqrt(1 - rho**2)
    draws = np.empty_like(noise)
    draws[..., 0] = rng.normal(size=(300, 2))
    for t in range(1, 1000):
        draws[..., t] = rho * draws[..., t - 1] + noise[..., t]
    rhat = np.asarray(array_stats.rhat(draws, chain_axis=-2, draw_axis=-1, method="split"))
    assert np.sqrt(np.mean(rhat**2)) == pytest.approx(rhat_for_ess(50), abs=0.004)
    # one variable at this ESS passes 1.01 in about a third of runs (stage 1 checks a dozen
    # at once), its expected R-hat in most
    assert np.mean(rhat <= 1.01) < 0.5 < np.mean(rhat <= rhat_for_ess(50))
