"""Every tutorial in tutorials/ runs top to bottom (jupytext source -> nbclient), in CI too.

A failing cell fails the test with the cell and its error. Executed notebooks are written
to a temporary folder only (``make tutorials`` keeps them in ``tutorials/_build/``).
"""

from __future__ import annotations

import importlib.util

import pytest
from _paths import ROOT, SHARED_DATA

TUTORIALS = ROOT / "tutorials"

#: Tutorials that read real screens from the shared data folder, and what they need there.
NEEDS_SHARED = {"04_treatments_and_groups.py": ["jacks-aml-yusa-small", "reference-genesets"]}


def _runner():
    spec = importlib.util.spec_from_file_location("_tutorial_runner", TUTORIALS / "_execute.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SOURCES = sorted(p.name for p in TUTORIALS.glob("[0-9][0-9]_*.py"))
#: The tutorials this file runs; test_tutorials_rest.py runs the others, so that
#: pytest-xdist (one file per worker) runs the two halves on two workers.
FIRST_HALF = [name for name in SOURCES if name[:2] in {"01", "02", "05"}]


def test_tutorials_are_found():
    assert len(SOURCES) >= 5, SOURCES


def test_sources_are_percent_format_and_outputs_ignored():
    import jupytext

    for name in SOURCES:
        text = (TUTORIALS / name).read_text()
        assert "format_name: percent" in text, name
        notebook = jupytext.reads(text, fmt="py:percent")
        kinds = {cell.cell_type for cell in notebook.cells}
        assert kinds == {"markdown", "code"}, (name, kinds)
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert "tutorials/*.ipynb" in ignored
    assert "tutorials/_build/" in ignored


def run_tutorial(name: str, tmp_path, monkeypatch) -> None:
    """Execute one tutorial into ``tmp_path``; a failing cell fails the calling test."""
    missing = [d for d in NEEDS_SHARED.get(name, []) if not (SHARED_DATA / d).is_dir()]
    if missing:
        pytest.skip(f"{name} reads {', '.join(missing)} from {SHARED_DATA}, which is absent")
    # the notebooks find the shared data the way the tests do (_paths.py)
    monkeypatch.setenv("SCREENFORMULA_DATA", str(SHARED_DATA))
    runner = _runner()
    notebook = runner.execute(TUTORIALS / name, tmp_path)
    assert notebook.exists()


@pytest.mark.slow
@pytest.mark.parametrize("name", FIRST_HALF)
def test_tutorial_runs(name, tmp_path, monkeypatch):
    run_tutorial(name, tmp_path, monkeypatch)
