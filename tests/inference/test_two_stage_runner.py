"""The two-stage runner passes fit()'s settings on to the engine (no fitting here)."""

from __future__ import annotations

import pytest

from screenformula.inference.registry import FitRequest
from screenformula.inference.two_stage import engine, runner


def request(target_accept: float | None, **kwargs) -> FitRequest:
    return FitRequest(
        draws=10, tune=10, chains=1, cores=None, random_seed=1, engine="nutpie",
        target_accept=target_accept, progress=False, var_names=[], kwargs=kwargs,
    )  # fmt: skip


@pytest.fixture
def seen(monkeypatch):
    """What fit_two_stage was called with; it returns the options it would have."""
    calls = {}

    def fake(model, **kwargs):
        calls.update(kwargs)
        config = engine.TwoStageConfig(
            **{k: v for k, v in kwargs.items() if hasattr(engine.TwoStageConfig, k)}
        )
        return None, {"config": {"target_accept": config.target_accept}}

    monkeypatch.setattr(engine, "fit_two_stage", fake)
    monkeypatch.delenv(runner.ENV_OPTIONS, raising=False)
    return calls


def test_target_accept_reaches_stage_one(seen):
    # the convergence advice says "raise the target acceptance": it must do something
    _, options = runner.run_two_stage(object(), request(0.95))
    assert seen["target_accept"] == 0.95 and options["target_accept"] == 0.95
    _, options = runner.run_two_stage(object(), request(0.8, stage1_draws=50))
    assert seen["target_accept"] == 0.8 and seen["stage1_draws"] == 50


def test_no_target_accept_leaves_stage_one_its_own_default(seen):
    # fit(target_accept=None): stage 1 runs at the engine's 0.9 (NUTS's default is 0.8)
    _, options = runner.run_two_stage(object(), request(None))
    assert "target_accept" not in seen
    assert options["target_accept"] == engine.TwoStageConfig().target_accept == 0.9


def test_the_nuts_runner_records_the_target_acceptance_it_ran(monkeypatch):
    from screenformula.inference import nuts

    ran = {}
    monkeypatch.setattr(nuts, "sample_nuts", lambda *a, **k: ran.update(k) or "idata")

    class Model:
        pymc_model = None

    _, options = nuts.run_nuts(Model(), request(None))
    assert ran["target_accept"] == options["target_accept"] == nuts.NUTS_TARGET_ACCEPT == 0.8
    _, options = nuts.run_nuts(Model(), request(0.95))
    assert ran["target_accept"] == options["target_accept"] == 0.95


def test_engine_settings_in_the_environment_still_apply(seen, monkeypatch):
    monkeypatch.setenv(runner.ENV_OPTIONS, "target_accept=0.9,chunk_genes=100")
    _, options = runner.run_two_stage(object(), request(0.8))
    assert seen["target_accept"] == 0.9 and seen["chunk_genes"] == 100
