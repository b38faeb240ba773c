"""The one atomic file writer: whole files or none, the temporary name removed on failure."""

import os

import pytest

from screenformula.io.atomic import (
    atomic_path,
    move_into_place,
    temporary_name,
    write_text_atomic,
)


def test_temporary_name_is_hidden_beside_the_file(tmp_path):
    tmp = temporary_name(tmp_path / "out.txt")
    assert tmp.parent == tmp_path
    assert tmp.name == f".out.txt.tmp-{os.getpid()}"


def test_atomic_path_renames_on_success(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")
    with atomic_path(path) as tmp:
        assert tmp != path
        tmp.write_text("new")
        assert path.read_text() == "old"
    assert path.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_atomic_path_keeps_the_old_file_and_removes_the_temporary_on_failure(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="boom"), atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_atomic_path_failure_before_writing_leaves_nothing(tmp_path):
    path = tmp_path / "out.txt"
    with pytest.raises(ValueError), atomic_path(path):
        raise ValueError
    assert list(tmp_path.iterdir()) == []


def test_write_text_atomic(tmp_path):
    path = tmp_path / "page.html"
    assert write_text_atomic(path, "café\n") == path
    assert path.read_text(encoding="utf-8") == "café\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["page.html"]


def test_move_into_place_replaces(tmp_path):
    staged = tmp_path / "stage" / "a.txt"
    staged.parent.mkdir()
    staged.write_text("new")
    path = tmp_path / "a.txt"
    path.write_text("old")
    assert move_into_place(staged, path) == path
    assert path.read_text() == "new"
    assert not staged.exists()
