"""The tutorials test_tutorials.py leaves to a second pytest-xdist worker (same check)."""

from __future__ import annotations

import pytest
from test_tutorials import FIRST_HALF, SOURCES, run_tutorial

REST = [name for name in SOURCES if name not in FIRST_HALF]


def test_the_two_files_run_every_tutorial():
    assert FIRST_HALF and REST and sorted(FIRST_HALF + REST) == SOURCES


@pytest.mark.slow
@pytest.mark.parametrize("name", REST)
def test_tutorial_runs(name, tmp_path, monkeypatch):
    run_tutorial(name, tmp_path, monkeypatch)
