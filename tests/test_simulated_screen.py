"""``simulate_screen``'s result and the common ``ScreenModel(formula, data)`` call (issue 16).

It returns a named pair: ``data, truth = simulate_screen()`` unpacks as it always did, and
``.data`` is the `ScreenData` a model takes.
"""

from __future__ import annotations

import screenformula as sf
from screenformula.io.screen_data import ScreenData
from screenformula.simulate import SimulatedScreen, simulate_screen


def test_the_result_unpacks_as_a_pair_and_carries_the_data_a_model_takes():
    sim = simulate_screen(n_genes=4, n_sgrnas_per_gene=2, n_pool_samples=0, random_seed=2)
    data, truth = sim
    assert isinstance(sim, SimulatedScreen) and isinstance(sim, tuple)
    assert sim.data is data and sim.truth is truth
    assert isinstance(sim.data, ScreenData) and sf.SimulatedScreen is SimulatedScreen
    model = sf.ScreenModel("count ~ 1 + treatment + (1 | gene)", sim.data)
    assert model.data is data


def test_the_whole_pair_is_taken_as_its_data():
    sim = simulate_screen(n_genes=4, n_sgrnas_per_gene=2, n_pool_samples=0, random_seed=2)
    model = sf.ScreenModel("count ~ 1 + treatment + (1 | gene)", sim)
    assert model.data is sim.data
