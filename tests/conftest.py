"""Small simulated screens shared by the tests (spec, backend, inference, results, report)."""

from __future__ import annotations

import os
from pathlib import Path

# Under pytest-xdist (`make test`), each worker compiles into its own PyTensor folder:
# PyTensor locks its compile folder while it compiles, which would make the workers wait
# for each other. Set before anything imports PyTensor; subprocesses inherit it.
if worker := os.environ.get("PYTEST_XDIST_WORKER"):
    base = Path(os.environ.get("SCREENFORMULA_TEST_COMPILEDIR", Path.home() / ".pytensor"))
    flags = os.environ.get("PYTENSOR_FLAGS", "")
    os.environ["PYTENSOR_FLAGS"] = ",".join(
        f for f in (flags, f"base_compiledir={base / f'xdist-{worker}'}") if f
    )

import pytest  # noqa: E402

import screenformula as sf  # noqa: E402


@pytest.fixture(scope="session")
def small_screen():
    """30 genes x 4 guides, one pool + 3 control + 3 treated samples."""
    return sf.simulate_screen(n_genes=30, random_seed=11)


@pytest.fixture(scope="session")
def grouped_screen():
    """Two treatments and gene groups, for the three-level formula."""
    return sf.simulate_screen(n_genes=24, treatments=("drugA", "drugB"), n_groups=4, random_seed=5)
