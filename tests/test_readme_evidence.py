"""The README's evidence tables are what benchmarks/results/*.json give (never typed by hand)."""

from __future__ import annotations

import importlib.util
import sys

from _paths import ROOT


def test_readme_evidence_tables_match_the_benchmark_results():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        spec = importlib.util.spec_from_file_location(
            "update_readme", ROOT / "benchmarks" / "update_readme.py"
        )
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    readme = (ROOT / "README.md").read_text()
    assert module.START in readme and module.END in readme
    assert module.updated(readme) == readme, "run benchmarks/update_readme.py"
