"""parameterization="auto" centres guide-level slopes where the counts identify them."""

import numpy as np
import pandas as pd
import pytest

import screenformula as sf
from screenformula.io.screen_data import ScreenData
from screenformula.spec import identification
from screenformula.spec.identification import CENTRE_BELOW, sampling_to_scatter

FORMULA = "count ~ 1 + treatment + (1 + treatment | gene) + (1 + treatment | gene:sgrna)"


def _screen(depth: float, guide_sd: float, per_condition: int = 3, seed: int = 0) -> ScreenData:
    """40 genes x 4 guides, Poisson counts with guide LFCs scattered by ``guide_sd``."""
    rng = np.random.default_rng(seed)
    n_genes, per_gene = 40, 4
    genes = np.repeat([f"G{g}" for g in range(n_genes)], per_gene)
    gene_lfc = np.repeat(rng.normal(0, 0.5, n_genes), per_gene)
    lfc = gene_lfc + rng.normal(0, guide_sd, len(genes))
    base = np.log(depth) + rng.normal(0, 0.5, len(genes))
    treated = np.array([0] * per_condition + [1] * per_condition)
    counts = rng.poisson(np.exp(base[:, None] + lfc[:, None] * treated[None, :]))
    names = [f"{c}{i}" for c in ("ctrl", "trt") for i in range(per_condition)]
    sheet = pd.DataFrame(
        {"condition": np.where(treated == 1, "treated", "ctrl")}, index=names
    ).assign(treatment=lambda d: d["condition"])
    return ScreenData(counts, [f"s{i}" for i in range(len(genes))], genes, sheet)


def _ratio(data: ScreenData) -> np.ndarray:
    Z = np.column_stack([np.ones(data.n_samples), data.samples["treatment"] == "treated"])
    return sampling_to_scatter(data.counts, data.size_factors.to_numpy(), Z, data.gene_codes)


def test_the_ratio_is_small_for_deep_scattered_guides_and_large_for_shallow_alike_ones():
    deep = _ratio(_screen(depth=4000, guide_sd=0.5))
    shallow = _ratio(_screen(depth=8, guide_sd=0.0))
    assert deep[1] < 0.05 < CENTRE_BELOW  # Poisson noise 2/4000 per sample, scatter 0.25
    assert shallow[1] > 1  # only noise: no scatter beyond it (inf) or a small one
    # one sample per condition: no residual to tell the noise from
    assert np.isnan(_ratio(_screen(depth=4000, guide_sd=0.5, per_condition=1))).all()


@pytest.mark.parametrize(
    ("depth", "guide_sd", "centred"),
    [(4000, 0.5, "Intercept, treatment[treated]"), (8, 0.0, "Intercept")],
)
def test_auto_centres_the_guide_slopes_the_counts_identify(depth, guide_sd, centred):
    model = sf.ScreenModel(FORMULA, _screen(depth, guide_sd), reference={"treatment": "ctrl"})
    guide = next(t for t in model.spec.groups if t.level == "sgrna")
    gene = next(t for t in model.spec.groups if t.level == "gene")
    assert guide.centered == (True, centred.endswith("]")) and gene.centered == (False, True)
    assert f"name 'sgrna'; centred: {centred}\n" in repr(model) + "\n"
    explicit = sf.ScreenModel(
        FORMULA, _screen(depth, guide_sd), reference={"treatment": "ctrl"},
        parameterization={"sgrna": ["Intercept"]},
    )  # fmt: skip
    assert next(t for t in explicit.spec.groups if t.level == "sgrna").centered == (True, False)


def test_a_two_stage_subset_keeps_the_whole_screens_choice(monkeypatch):
    """Stage 1's subsample and stage 2's chunks never decide "auto" again on fewer genes."""
    from screenformula.inference.two_stage.blocks import subset_model

    model = sf.ScreenModel(FORMULA, _screen(4000, 0.5), reference={"treatment": "ctrl"})
    calls = []
    real = identification.identified_guide_effects
    monkeypatch.setattr(
        "screenformula.spec.terms.identified_guide_effects",
        lambda *a: calls.append(1) or real(*a),
    )
    sub, _ = subset_model(model, np.arange(3))
    assert not calls  # rebuilt from the resolved flags, not from "auto"
    assert [t.centered for t in sub.spec.groups] == [t.centered for t in model.spec.groups]
    again = sf.ScreenModel(FORMULA, _screen(4000, 0.5), reference={"treatment": "ctrl"})
    assert calls and again.spec.groups[1].centered == (True, True)  # the patch is live
