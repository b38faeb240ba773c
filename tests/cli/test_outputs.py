"""OutputSet: files appear whole or not at all, and existing ones are never overwritten."""

from __future__ import annotations

import pytest

from screenformula.cli.outputs import OutputSet
from screenformula.errors import ScreenFormulaError


def test_commit_moves_every_staged_file_in(tmp_path):
    paths = [tmp_path / "a.tsv", tmp_path / "b.tsv"]
    with OutputSet(paths) as out:
        for p in paths:
            out.staged(p).write_text(p.name)
        written = out.commit()
    assert written == paths
    assert [p.read_text() for p in paths] == ["a.tsv", "b.tsv"]
    assert not any(p.name.startswith(".screenformula-") for p in tmp_path.iterdir())


def test_failure_inside_the_block_discards_the_staging_and_writes_nothing(tmp_path):
    paths = [tmp_path / "a.tsv", tmp_path / "b.tsv"]
    with pytest.raises(RuntimeError, match="boom"), OutputSet(paths) as out:
        out.staged(paths[0]).write_text("half")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_existing_output_is_an_error_before_anything_is_staged(tmp_path):
    kept = tmp_path / "a.tsv"
    kept.write_text("mine")
    with pytest.raises(ScreenFormulaError, match="output exists"):
        OutputSet([kept])
    assert kept.read_text() == "mine"
    assert [p.name for p in tmp_path.iterdir()] == ["a.tsv"]


def test_a_failure_removes_the_folders_made_for_the_outputs_only(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    paths = [mine / "new" / "deeper" / "a.tsv", tmp_path / "other" / "b.tsv"]
    with pytest.raises(RuntimeError, match="boom"), OutputSet(paths):
        assert (mine / "new" / "deeper").is_dir() and (tmp_path / "other").is_dir()
        raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]
    assert list(mine.iterdir()) == []


def test_a_kept_file_keeps_the_folder_made_for_it(tmp_path):
    paths = [tmp_path / "run" / "fit.nc", tmp_path / "run" / "genes.tsv"]
    with pytest.raises(RuntimeError), OutputSet(paths) as out:
        out.staged(paths[0]).write_text("the fit")
        out.keep_on_failure(paths[0], "; finish with: ...")
        raise RuntimeError("a later step failed")
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["fit.nc"]


def test_an_output_folder_that_cannot_be_made(tmp_path):
    blocker = tmp_path / "results"
    blocker.write_text("a file where the folder should be")
    with pytest.raises(ScreenFormulaError, match=r"cannot write the outputs .*results is a file"):
        OutputSet([blocker / "sub" / "a.tsv"])
    assert [p.name for p in tmp_path.iterdir()] == ["results"]
