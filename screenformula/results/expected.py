"""Posterior expected ("real", de-noised) read counts of a fitted screen per condition.

`expected_counts` (also `ScreenFit.expected_counts`) rebuilds the model's linear
predictor from the posterior draws (via the draw extraction of
`screenformula.results.draws`) and summarises it with `screenformula.results.contrast_core`.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import xarray as xr

from screenformula._constants import CONDITION, SGRNA, TREATMENT
from screenformula.errors import FitError
from screenformula.results import contrast_core as core
from screenformula.results.draws import (
    PosteriorEffects,
    correlation_matrices,
    flatten_draws,
    ordered_levels,
)
from screenformula.spec.names import B_POOL, INTERCEPT, B

if TYPE_CHECKING:
    from screenformula.results.fit import ScreenFit
    from screenformula.spec.terms import GroupTerm

__all__ = ["ExpectedCounts", "expected_counts", "treatment_column"]


def expected_counts(
    fit: ScreenFit,
    reference_depth: float | None = None,
    *,
    by: str | None = None,
    hdi_prob: float = 0.94,
    aggregate: Literal["sum", "mean"] = "sum",
    chunk_genes: int = 256,
) -> pd.DataFrame:
    """Posterior expected ("real", de-noised) read count of every gene in every condition.

    For guide ``s`` and condition ``c`` (a level of the sample-sheet column ``by``)::

        mu[s, c] = L_ref * exp(mean over the screen samples j of condition c of eta[s, j])

    where ``eta`` is the model's linear predictor without the size factor: intercept,
    population terms, offsets, every group term (gene groups, genes, guides; sample-level
    terms averaged over the condition's samples) and the pool offset or covariate when
    the model has one. The gene's count is the sum of ``mu`` over its guides
    (``aggregate="sum"``, comparable with a gene's total reads) or their mean
    (``"mean"``). Summaries are over the posterior draws of that quantity.

    ``L_ref`` (``reference_depth``) is a size factor: by default the geometric mean of the
    screen samples' size factors, i.e. a typical sample of this screen; the ``observed``
    column puts the data on the same scale (count / size factor * L_ref, summed or
    averaged over the gene's guides, then averaged over the condition's samples).

    Without stored guide-level draws (genome-scale fits) each guide's own effects are
    integrated out: ``exp(gene-level eta)`` times the log-normal mean ``exp(v / 2)``, ``v``
    the variance of the guide-level effects in that condition (from ``sd_<term>`` and
    ``cor_<term>``): the expected count of a typical guide of the gene.

    ``by`` defaults to the model's treatment column: the sample-sheet column whose levels
    have coefficients in the formula (``treatment`` in ``count ~ 1 + treatment + ...``).

    Returns
    -------
    DataFrame
        One row per gene x level of ``by``: ``gene, <by>, mean, sd, hdi_low, hdi_high,
        observed, n_sgrna`` (the second column is named after ``by``, e.g. ``treatment``);
        ``attrs`` hold ``reference_depth``, ``by``, ``aggregate``, ``hdi_prob`` and
        ``guide_effects`` (``"draws"`` or ``"integrated"``). Code written when that column
        was always called ``condition`` still runs: ``table["condition"]`` and
        ``table.set_index([..., "condition"])`` use the ``by`` column, with a
        `FutureWarning`.
    """
    spec = fit.model.spec
    data = spec.data
    if aggregate not in ("sum", "mean"):
        raise FitError(f"aggregate must be 'sum' or 'mean', not {aggregate!r}")
    if by is None:
        by = treatment_column(spec)
    if by not in data.samples.columns:
        raise FitError(f"by={by!r} is not a sample-sheet column ({', '.join(data.samples)})")
    levels, avg = _condition_weights(spec, by)
    l_ref = (
        float(np.exp(np.mean(spec.log_size_factors)))
        if reference_depth is None
        else float(reference_depth)
    )
    if not (np.isfinite(l_ref) and l_ref > 0):
        raise FitError(f"reference_depth must be a positive size factor, got {reference_depth}")
    ex = PosteriorEffects(fit)
    base, guide_terms, pool_part, integrated = _predictor_parts(ex, avg)
    stats = _gene_means(
        ex, base, guide_terms, pool_part, l_ref, aggregate, hdi_prob, int(chunk_genes)
    )
    order = np.argsort(data.gene_codes, kind="stable")
    n_sg = np.bincount(data.gene_codes, minlength=data.n_genes)
    starts = np.concatenate([[0], np.cumsum(n_sg)])
    n_genes, n_cond = data.n_genes, len(levels)
    sf = np.exp(spec.log_size_factors)
    norm = spec.counts[order] / sf[None, :] * l_ref
    per_gene = np.add.reduceat(norm, starts[:-1], axis=0) if n_genes else norm[:0]
    if aggregate == "mean":
        per_gene = per_gene / n_sg[:, None]
    observed = per_gene @ avg.T
    table = pd.DataFrame(
        {
            "gene": np.repeat(np.asarray(data.gene_names, dtype=object), n_cond),
            by: np.tile(levels, n_genes),
            **{k: v.ravel() for k, v in stats.items()},
            "observed": observed.ravel(),
            "n_sgrna": np.repeat(n_sg, n_cond),
        }
    )
    table = ExpectedCounts(table)
    table.attrs.update(
        {
            "reference_depth": l_ref,
            "by": by,
            "aggregate": aggregate,
            "hdi_prob": hdi_prob,
            "guide_effects": "integrated" if integrated else "draws",
        }
    )
    return table


def treatment_column(spec: Any) -> str:
    """The sample-sheet column the formula's coefficients are levels of (``treatment[x]``).

    The first population-level factor (then group-level slopes) that is a sample-sheet
    column; without one, ``treatment`` when the sheet has it, else ``condition``.
    """
    columns = spec.data.samples.columns
    names = list(spec.mean.common.names)
    for term in spec.groups:
        names += [c for c in term.coef_names if c not in names]
    for name in names:
        factor = name.split("[", 1)[0]
        if "[" in name and ":" not in factor and factor in columns:
            return factor
    return TREATMENT if TREATMENT in columns else CONDITION


class ExpectedCounts(pd.DataFrame):
    """`expected_counts`' table; ``"condition"`` still names its ``by`` column (deprecated).

    Until this table named its second column after ``by`` it was always ``condition``;
    reading ``table["condition"]`` or ``set_index(..."condition"...)`` on a table without
    such a column uses the ``by`` column and warns.
    """

    @property
    def _constructor(self) -> type[ExpectedCounts]:
        return ExpectedCounts

    def _old_name(self, key: Any) -> Any:
        by = self.attrs.get("by")
        if by is None or by == CONDITION or CONDITION in self.columns or by not in self.columns:
            return key
        keys = key if isinstance(key, list) else [key]
        if not any(isinstance(k, str) and k == CONDITION for k in keys):
            return key
        warnings.warn(
            f"expected_counts(): the column 'condition' is now named {by!r} (the "
            f"sample-sheet column the counts are per level of, attrs['by']); use {by!r}",
            FutureWarning,
            stacklevel=3,
        )
        renamed = [by if isinstance(k, str) and k == CONDITION else k for k in keys]
        return renamed if isinstance(key, list) else renamed[0]

    def __getitem__(self, key: Any) -> Any:
        return super().__getitem__(self._old_name(key))

    def set_index(self, keys: Any, *args: Any, **kwargs: Any) -> Any:
        """`pandas.DataFrame.set_index`, reading ``"condition"`` as the ``by`` column."""
        return super().set_index(self._old_name(keys), *args, **kwargs)


def _condition_weights(spec: Any, by: str) -> tuple[np.ndarray, np.ndarray]:
    """The levels of ``by`` and the weights averaging screen samples into each level."""
    column = spec.data.samples.loc[list(spec.samples), by]
    labels = column.astype(str).to_numpy()
    levels = np.asarray(ordered_levels(column), dtype=object)
    avg = (labels[None, :] == levels[:, None]).astype(float)
    avg /= avg.sum(axis=1, keepdims=True)  # (conditions, screen samples)
    return levels, avg


def _predictor_parts(
    ex: PosteriorEffects, avg: np.ndarray
) -> tuple[np.ndarray, list[tuple[GroupTerm, np.ndarray, np.ndarray]], np.ndarray | None, bool]:
    """The linear predictor per condition, in parts.

    Returns the part shared by all guides (draws x conditions), each guide-level term's
    draws with its condition weights, the pool's part (draws x guides, or None), and
    whether guide effects without draws were integrated out (their variance added).
    """
    spec, post, n = ex.spec, ex.post, ex.n_draws
    common = spec.mean.common
    base = np.zeros((n, avg.shape[0]))
    if common.intercept:
        base += flatten_draws(post[INTERCEPT])[:, None]
    if common.names:
        base += flatten_draws(post[B]) @ (avg @ common.X).T
    base += (avg @ common.offset)[None, :]
    guide_terms: list[tuple[GroupTerm, np.ndarray, np.ndarray]] = []
    integrated = False
    for term in spec.groups:
        name = term.names.effects
        if term.level == "sample":
            r = flatten_draws(post[name])  # (n, levels, coefs)
            per_sample = np.einsum("njc,jc->nj", r[:, term.index, :], term.Z)
            base += per_sample @ avg.T
            continue
        zbar = avg @ term.Z  # (conditions, coefs)
        if name in post:
            guide_terms.append((term, flatten_draws(post[name]), zbar))
        elif term.level == SGRNA:
            base += 0.5 * _guide_variance(post, term, zbar, n)
            integrated = True
        else:
            raise FitError(f"posterior variable {name} is missing from this fit")
    pool_part: np.ndarray | None = None
    if spec.pool.mode == "offset":
        pool_part = np.broadcast_to(spec.pool.log_abundance[None, :], (n, ex.data.n_sgrnas))
    elif spec.pool.mode == "covariate":
        pool_part = flatten_draws(post[B_POOL])[:, None] * spec.pool.log_abundance[None, :]
    return base, guide_terms, pool_part, integrated


def _gene_means(
    ex: PosteriorEffects,
    base: np.ndarray,
    guide_terms: list[tuple[GroupTerm, np.ndarray, np.ndarray]],
    pool_part: np.ndarray | None,
    l_ref: float,
    aggregate: str,
    hdi_prob: float,
    chunk_genes: int,
) -> dict[str, np.ndarray]:
    """Posterior mean, sd and HDI of each gene's expected count per condition."""
    data, n = ex.data, ex.n_draws
    order = np.argsort(data.gene_codes, kind="stable")
    n_sg = np.bincount(data.gene_codes, minlength=data.n_genes)
    starts = np.concatenate([[0], np.cumsum(n_sg)])
    n_genes, n_cond = data.n_genes, base.shape[1]
    stats = {k: np.empty((n_genes, n_cond)) for k in ("mean", "sd", "hdi_low", "hdi_high")}
    step = max(1, chunk_genes)
    for g0 in range(0, n_genes, step):
        g1 = min(n_genes, g0 + step)
        guides = order[starts[g0] : starts[g1]]
        eta = np.repeat(base[:, None, :], guides.size, axis=1)
        for term, r, zbar in guide_terms:
            eta += r[:, term.index[guides], :] @ zbar.T
        if pool_part is not None:
            eta += pool_part[:, guides][:, :, None]
        mu = l_ref * np.exp(eta)
        gene_mu = np.add.reduceat(mu, starts[g0:g1] - starts[g0], axis=1)
        if aggregate == "mean":
            gene_mu /= n_sg[g0:g1][None, :, None]
        flat = gene_mu.reshape(n, -1)
        low, high = core.hdi(flat, hdi_prob)
        shape = (g1 - g0, n_cond)
        stats["mean"][g0:g1] = flat.mean(axis=0).reshape(shape)
        stats["sd"][g0:g1] = flat.std(axis=0, ddof=1 if n > 1 else 0).reshape(shape)
        stats["hdi_low"][g0:g1] = low.reshape(shape)
        stats["hdi_high"][g0:g1] = high.reshape(shape)
    return stats


def _guide_variance(post: xr.Dataset, term: GroupTerm, zbar: np.ndarray, n: int) -> np.ndarray:
    """Variance of ``zbar . r_s`` over guides, per draw and condition (n, conditions)."""
    sd = flatten_draws(post[term.names.sd]).reshape(n, -1)  # (n, coefs)
    cor = correlation_matrices(post, term)
    if cor is None:
        cor = np.broadcast_to(np.eye(term.n_coefs), (n, term.n_coefs, term.n_coefs))
    cov = sd[:, :, None] * cor * sd[:, None, :]
    return np.einsum("lc,ncd,ld->nl", zbar, cov, zbar)
