"""Small simulated screens shared by the model tests."""

from __future__ import annotations

import pytest

import screenformula as sf

FORMULA = "count ~ 1 + treatment + (1 + treatment | gene) + (1 + treatment | gene:sgrna)"


@pytest.fixture(scope="session")
def small_screen():
    """30 genes x 4 guides, one pool + 3 control + 3 treated samples."""
    return sf.simulate_screen(n_genes=30, random_seed=11)


@pytest.fixture(scope="session")
def grouped_screen():
    """Two treatments and gene groups, for the three-level formula."""
    return sf.simulate_screen(n_genes=24, treatments=("drugA", "drugB"), n_groups=4, random_seed=5)
