"""Executors, checkpoints and engine settings of the two-stage engine: no fitting (issue 17)."""

from __future__ import annotations

import socket
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from _screens import FORMULA

import screenformula as sf
from screenformula.errors import FitError
from screenformula.inference import executors
from screenformula.inference.executors import (
    DaskUnavailableError,
    InProcess,
    MapExecutor,
    ProcessPool,
    SchedulerUnreachableError,
    as_executor,
    connect,
)
from screenformula.inference.two_stage.checkpoint import (
    Checkpoint,
    CheckpointMismatchError,
    remove_checkpoint,
)
from screenformula.inference.two_stage.config import TwoStageConfig
from screenformula.inference.two_stage.engine import _fingerprint
from screenformula.inference.two_stage.runner import ENV_OPTIONS, env_options


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scaled(shared, part):
    return shared["scale"] * part


@pytest.mark.parametrize(
    "executor",
    [InProcess(), ProcessPool(2), MapExecutor(ThreadPoolExecutor(2))],
    ids=["in-process", "processes", "map"],
)
def test_every_executor_returns_each_part_with_its_index(executor):
    parts = [np.arange(3) + i for i in range(5)]
    got = dict(executor.run(scaled, {"scale": 10}, parts))
    assert sorted(got) == list(range(5))
    for i, part in enumerate(parts):
        np.testing.assert_array_equal(got[i], 10 * part)
    assert executor.describe()


def test_as_executor_chooses_by_the_arguments():
    with as_executor(workers=1) as ex:
        assert ex.kind == "in-process"
    with as_executor(workers=3) as ex:
        assert ex.kind == "processes" and ex.workers == 3
    with as_executor(ThreadPoolExecutor(1)) as ex:
        assert ex.kind == "map"
    with pytest.raises(FitError, match="not both"), as_executor(InProcess(), client="tcp://x:1"):
        pass


def test_dask_not_installed_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(DaskUnavailableError, match=r"pip install 'screenformula\[dask\]'"):
        connect("tcp://127.0.0.1:1")


def test_an_unreachable_scheduler_is_one_line_after_a_short_wait():
    pytest.importorskip("distributed")
    address = f"tcp://127.0.0.1:{free_port()}"
    with pytest.raises(SchedulerUnreachableError, match="cannot reach the Dask scheduler") as err:
        connect(address, timeout=1)
    assert address in str(err.value) and "\n" not in str(err.value)


def test_the_command_line_says_so_in_one_line(tmp_path, monkeypatch, capsys):
    from screenformula.cli import main

    pytest.importorskip("distributed")
    monkeypatch.setattr(executors, "CONNECT_TIMEOUT", 1.0)
    monkeypatch.setattr(executors.connect, "__defaults__", (1.0,))
    port = free_port()
    args = ["test", "-k", "x.txt", "-t", "T1", "-c", "C1", "-n", str(tmp_path / "o")]
    assert main([*args, "--scheduler", f"tcp://127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        f"screenformula: error: cannot reach the Dask scheduler at tcp://127.0.0.1:{port}"
    )
    assert list(tmp_path.iterdir()) == []


PARTS = {"counts": "abc", "formula": "count ~ 1", "seed": 1, "draws": 10}


def test_a_checkpoint_of_other_inputs_is_refused_and_force_starts_over(tmp_path):
    folder = tmp_path / "ck"
    first = Checkpoint(folder, PARTS)
    meta = {"index": 0, "stage1": "h"}
    first.save_chunk(0, {"g:x": np.arange(4.0)}, meta)
    again = Checkpoint(folder, PARTS)  # same inputs: the chunk is there
    np.testing.assert_array_equal(again.load_chunk(0, meta)["g:x"], np.arange(4.0))
    assert again.load_chunk(0, {**meta, "stage1": "other"}) is None  # other stage-1 draws
    changed = {**PARTS, "counts": "abd", "seed": 2}
    with pytest.raises(CheckpointMismatchError) as err:
        Checkpoint(folder, changed)
    text = str(err.value)
    assert "(counts, seed differ)" in text and "--force" in text and "\n" not in text
    assert again.chunk_files()  # refused: nothing removed
    fresh = Checkpoint(folder, changed, force=True)
    assert fresh.chunk_files() == [] and fresh.load_chunk(0, meta) is None
    assert Checkpoint(folder, changed).parts["counts"] == "abd"


def test_a_damaged_chunk_file_is_computed_again(tmp_path):
    ck = Checkpoint(tmp_path / "ck", PARTS)
    ck.chunk_path(3).write_bytes(b"not a zip")
    assert ck.load_chunk(3, {}) is None


def test_a_fit_without_a_seed_keeps_the_one_it_drew(tmp_path):
    ck = Checkpoint(tmp_path / "ck", {**PARTS, "seed": None})
    assert ck.seed is None
    ck.remember_seed(123)
    assert Checkpoint(tmp_path / "ck", {**PARTS, "seed": None}).seed == 123


def test_removing_a_checkpoint_keeps_other_files(tmp_path):
    ck = Checkpoint(tmp_path / "ck", PARTS)
    ck.save_chunk(0, {"a": np.zeros(2)}, {})
    (tmp_path / "ck" / "mine.txt").write_text("x")
    remove_checkpoint(tmp_path / "ck")
    assert [p.name for p in (tmp_path / "ck").iterdir()] == ["mine.txt"]
    (tmp_path / "ck" / "mine.txt").unlink()
    Checkpoint(tmp_path / "ck", PARTS)
    remove_checkpoint(tmp_path / "ck")
    assert not (tmp_path / "ck").exists()


def test_the_fingerprint_tells_counts_formula_and_settings_apart():
    data, _ = sf.simulate_screen(n_genes=6, random_seed=1)
    model = sf.ScreenModel(FORMULA, data)
    base = _fingerprint(model, 100, 1, ["b"], TwoStageConfig())
    assert base == _fingerprint(model, 100, 1, ["b"], TwoStageConfig(workers=4))
    counts = data.counts.copy()
    counts[0, 0] += 1
    other = sf.ScreenData(
        counts, data.sgrnas, data.genes_of_sgrna, data.samples, size_factors="none"
    )
    changed = sf.ScreenModel(FORMULA, other)
    assert _fingerprint(changed, 100, 1, ["b"], TwoStageConfig())["counts"] != base["counts"]
    simpler = sf.ScreenModel("count ~ 1 + treatment + (1 + treatment | gene)", data)
    fp = _fingerprint(simpler, 100, 1, ["b"], TwoStageConfig(chunk_genes=5))
    assert fp["formula"] != base["formula"]
    assert fp["engine settings"] != base["engine settings"]


def test_client_and_checkpoint_are_for_the_two_stage_engine():
    data, _ = sf.simulate_screen(n_genes=6, random_seed=1)
    model = sf.ScreenModel(FORMULA, data)
    with pytest.raises(FitError, match="client= apply to method='two-stage' only, not 'nuts'"):
        model.fit("nuts", client="tcp://127.0.0.1:1")
    with pytest.raises(FitError, match=r"checkpoint= .*method='auto' chose 'nuts'"):
        model.fit(checkpoint="ck", progress=False)


def test_engine_settings_from_the_environment(monkeypatch):
    monkeypatch.setenv(ENV_OPTIONS, "chunk_genes=7, khat_threshold=1e9,workers=none")
    assert env_options() == {"chunk_genes": 7, "khat_threshold": 1e9, "workers": None}
    monkeypatch.setenv(ENV_OPTIONS, "chunks=7")
    with pytest.raises(FitError, match="not KEY=VALUE"):
        env_options()
