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
