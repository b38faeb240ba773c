"""A fit saved by an earlier version still loads, and gives the same contrasts.

``tests/data/fit_format1_ed30f57.nc`` was written by commit ed30f57 (before model settings
became `ModelSettings` and ``load_fit`` moved to `screenformula.model`): 6 genes x 2
guides, NUTS 1 x 20 draws, a user prior on ``b`` and a reference level. Its gene table at
``delta=0.5`` was written beside it by the same code.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

import screenformula as sf
from screenformula.spec.priors import Prior

DATA = Path(__file__).resolve().parents[1] / "data"


def test_a_fit_saved_before_the_settings_object_loads():
    fit = sf.load_fit(DATA / "fit_format1_ed30f57.nc")
    settings = fit.model.settings
    assert settings["formula"].startswith("count ~ 1 + treatment")
    assert settings.priors == {"b": Prior("Normal", mu=0.0, sigma=2.0)}
    assert settings.reference == {"treatment": "control"} and settings.pool == "joint"
    want = pd.read_csv(DATA / "fit_format1_ed30f57_genes.tsv", sep="\t")
    got = fit.contrast(delta=0.5).genes
    pd.testing.assert_frame_equal(
        got[want.columns].reset_index(drop=True),
        want,
        check_dtype=False,
        check_exact=False,
        rtol=1e-9,
    )
    # columns added since (issue 16): the direction of each call, and its hits provisional
    # (1 chain x 20 draws cannot pass the convergence checks)
    assert set(got.columns) - set(want.columns) == {"direction", "provisional"}
    assert (got["provisional"] == got["hit"]).all()
