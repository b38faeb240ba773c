"""What the pool component did: the guide-level correlation, and per-gene LFC changes."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from screenformula.errors import FitError
from screenformula.results.draws import correlation_draws, flatten_draws
from screenformula.spec.names import cor_pairs

if TYPE_CHECKING:
    from screenformula.results.fit import ScreenFit


def guide_correlation(fit: ScreenFit, hdi_prob: float = 0.94) -> pd.DataFrame:
    """Posterior of the correlations between guide-level effects (the guide LKJ term).

    With ``pool="joint"`` the guide baseline is what the pool measures, so the
    correlation of the baseline with each treatment deviation answers "do guides that
    start rare respond differently?" (the seed's "unmeasured underlying effect").

    Returns
    -------
    DataFrame
        One row per pair of effects: ``effect_a``, ``effect_b``, ``mean``, ``sd``,
        ``hdi_low``, ``hdi_high``, ``prob_positive``.
    """
    from screenformula.results.contrast_core import hdi

    terms = [t for t in fit.model.spec.groups if t.level == "sgrna" and t.uses_lkj]
    if not terms:
        raise FitError("the model has no correlated guide-level term ((... | gene:sgrna))")
    term = terms[0]
    cor = correlation_draws(fit.posterior, term)
    if cor is None:
        raise FitError(f"this fit did not keep the correlations ({term.names.cor})")
    coefs = list(term.coef_names)
    flat = flatten_draws(cor)
    rows = []
    for k, (i, j) in enumerate(cor_pairs(len(coefs))):
        draws = flat[:, k]
        low, high = hdi(draws[:, None], hdi_prob)
        rows.append(
            {
                "effect_a": coefs[i],
                "effect_b": coefs[j],
                "mean": float(draws.mean()),
                "sd": float(draws.std()),
                "hdi_low": float(low[0]),
                "hdi_high": float(high[0]),
                "prob_positive": float(np.mean(draws > 0)),
            }
        )
    return pd.DataFrame(rows)


def compare_gene_lfcs(
    fit: ScreenFit, other: ScreenFit, factor: str = "treatment", ref: str | None = None
) -> pd.DataFrame:
    """How gene LFCs change between two fits of the same screen (e.g. pool vs no pool).

    Returns
    -------
    DataFrame
        Per gene and contrast: ``lfc`` and ``lfc_sd`` of each fit (suffixes ``_fit`` and
        ``_other``, log2), ``lfc_change`` = fit - other, ``sd_ratio`` = fit / other, and
        ``hit_fit`` / ``hit_other`` (each fit's calls at `ScreenFit.contrast`'s defaults:
        delta 0.5, FDR 0.05).
    """
    columns = ["gene", "contrast", "lfc", "lfc_sd", "hit"]
    a = fit.contrast(factor, ref=ref).genes[columns]
    b = other.contrast(factor, ref=ref).genes[columns]
    merged = a.merge(b, on=["gene", "contrast"], suffixes=("_fit", "_other"), how="inner")
    if merged.empty:
        raise FitError("the two fits share no gene and contrast")
    merged["lfc_change"] = merged["lfc_fit"] - merged["lfc_other"]
    merged["sd_ratio"] = merged["lfc_sd_fit"] / merged["lfc_sd_other"]
    return merged.sort_values("lfc_change", key=np.abs, ascending=False, ignore_index=True)
