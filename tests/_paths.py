"""Where the real public screens of ../shared/data live (beside the checkout, in CI too)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SCREENFORMULA_DATA", ROOT.parent / "shared" / "data"))


def load_benchmark(name: str) -> ModuleType:
    """The module ``benchmarks/<name>.py`` (benchmarks/ is not a package), loaded from its file."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
