"""Small simulated screens shared by the tests (spec, backend, inference, results, report)."""

from __future__ import annotations

import pytest

import screenformula as sf


@pytest.fixture(scope="session")
def small_screen():
    """30 genes x 4 guides, one pool + 3 control + 3 treated samples."""
    return sf.simulate_screen(n_genes=30, random_seed=11)


@pytest.fixture(scope="session")
def grouped_screen():
    """Two treatments and gene groups, for the three-level formula."""
    return sf.simulate_screen(n_genes=24, treatments=("drugA", "drugB"), n_groups=4, random_seed=5)
