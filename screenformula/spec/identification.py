"""How well the counts identify each guide's varying effects: the data's part of "auto".

``parameterization="auto"`` centres a guide-level slope when the counts pin each guide's
slope down more tightly than the guides of a gene scatter around each other, and keeps
it non-centred otherwise. Which parameterisation samples well turns on that ratio
(Papaspiliopoulos, Roberts & Sköld 2007, "A general framework for the parametrization of
hierarchical models"): a centred effect mixes well when the data dominate its prior, a
non-centred one when the prior dominates. Measured on real screens with full NUTS
(`benchmarks/README.md`, 2026-12-05):

- RT112 (93 genes, about 3,800 reads per guide and sample): ratio 0.01. Non-centred
  guide slopes took 420 leapfrog steps per draw and 422 s; centred, 20 steps and 62 s,
  with higher ESS and the same calls.
- HAP1 TKOv3 (about 400 reads, one control sample): no between-guide scatter beyond the
  sampling noise (ratio unbounded); centred guide slopes there left stage 1 at R-hat 1.29.

The ratio is computed once, from a per-guide least-squares fit of the log normalised
counts on the term's sample-level design: each slope's sampling variance from the
residuals, its between-guide variance within genes by the method of moments.
"""

from __future__ import annotations

import numpy as np

#: Centre a guide-level slope when the median guide's sampling variance of it is below
#: this share of the between-guide variance of guides of one gene.
CENTRE_BELOW = 0.25


def sampling_to_scatter(
    counts: np.ndarray, size_factors: np.ndarray, Z: np.ndarray, gene_codes: np.ndarray
) -> np.ndarray:
    """Per column of ``Z``: the median guide's sampling variance over the guides' scatter.

    Parameters
    ----------
    counts : (n_sgrna, n_samples)
        The term's samples' counts.
    size_factors : (n_samples,)
    Z : (n_samples, n_effects)
        The term's sample-level design.
    gene_codes : (n_sgrna,)
        Each guide's gene.

    Returns
    -------
    (n_effects,) ratios; ``inf`` where guides of a gene scatter no more than their
    sampling noise, NaN where the design leaves no residual degrees of freedom (one
    sample per condition) or no gene has two guides.
    """
    n_samples, n_eff = Z.shape
    out = np.full(n_eff, np.nan)
    df = n_samples - np.linalg.matrix_rank(Z)
    if df < 1 or not len(counts):
        return out
    y = np.log((np.asarray(counts, dtype=float) + 0.5) / np.asarray(size_factors)[None, :])
    M = np.linalg.pinv(Z.T @ Z)
    B = y @ Z @ M  # (n_sgrna, n_effects): each guide's least-squares effects
    s2 = ((y - B @ Z.T) ** 2).sum(axis=1) / df
    sampling = s2[:, None] * np.diag(M)[None, :]
    n_genes = int(gene_codes.max()) + 1
    per_gene = np.bincount(gene_codes, minlength=n_genes)
    several = per_gene >= 2  # genes with two or more guides
    shared = several[gene_codes]  # their guides
    if not shared.any():
        return out
    codes = gene_codes[shared]
    size = per_gene[several]
    weight = size - 1.0  # each gene's degrees of freedom
    for c in range(n_eff):
        b = B[shared, c]
        mean = np.bincount(codes, b, minlength=n_genes)[several] / size
        sq = np.bincount(codes, b * b, minlength=n_genes)[several]
        within = (sq - size * mean**2) / weight  # each gene's variance
        scatter = float(np.average(within, weights=weight)) - float(np.mean(sampling[shared, c]))
        noise = float(np.median(sampling[:, c]))
        out[c] = noise / scatter if scatter > 0 else np.inf
    return out


def identified_guide_effects(
    counts: np.ndarray,
    size_factors: np.ndarray,
    Z: np.ndarray,
    gene_codes: np.ndarray,
    coef_names: tuple[str, ...],
) -> tuple[bool, ...]:
    """Which guide-level effects ``"auto"`` centres: the intercept, and identified slopes."""
    ratio = sampling_to_scatter(counts, size_factors, Z, gene_codes)
    return tuple(
        c == "Intercept" or bool(np.isfinite(r) and r < CENTRE_BELOW)
        for c, r in zip(coef_names, ratio, strict=True)
    )
