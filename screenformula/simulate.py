"""Simulate pooled CRISPR screens from the model screenformula fits (``docs/MODEL.md``).

:func:`simulate_screen` draws a count table (a :class:`~screenformula.ScreenData`) and the
truth behind it (a :class:`SimulationTruth`): every gene's log-fold-change per treatment,
which genes are hits, every guide's baseline, efficiency and dispersion, the gene-group
effects and the true size factors. It is the ground truth for parameter recovery,
simulation-based calibration, FDR checks and the demo.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import numpy as np
import pandas as pd
from scipy.special import ndtr

from screenformula._constants import CONDITION, GENE, GROUP, POOL, REPLICATE, SGRNA, TREATMENT
from screenformula.errors import ScreenFormulaError
from screenformula.io.screen_data import ScreenData

__all__ = [
    "CONTROL_GENE",
    "SimulatedScreen",
    "SimulationTruth",
    "sample_negative_binomial",
    "simulate_screen",
]

#: Gene label of simulated non-targeting control guides.
CONTROL_GENE = "NonTargeting"
#: Treatment / condition label of the reference (control) screen samples.
CONTROL_LEVEL = "control"
#: Treatment / condition label of pool samples.
POOL_LEVEL = "pool"
#: Group label of genes outside every gene group (as :class:`ScreenData` uses).
UNGROUPED = "ungrouped"


@dataclass
class SimulationTruth:
    """The parameters a simulated screen was drawn from.

    All effects are on the natural-log scale (``lfc_log2`` columns excepted).

    Attributes
    ----------
    genes : DataFrame
        One row per gene x treatment (gene-major order; the non-targeting control gene
        included when there are control guides). Columns: ``gene``, ``treatment``,
        ``lfc`` (the true gene log-fold-change ``b_t + c_{k,t} + b_{g,t}`` against the
        control condition), ``lfc_log2``, ``is_hit`` (the gene's effect differs from the
        population slope ``b_t``), ``is_control``, ``group`` (``"ungrouped"`` without groups
        and for the control gene), ``group_effect`` (``c_{k,t}``, 0 without groups) and
        ``baseline`` (the gene intercept ``a_g``).
    sgrnas : DataFrame
        One row per sgRNA, in the row order of the counts. Columns: ``sgrna``, ``gene``,
        ``is_control``, ``baseline`` (the guide intercept ``a_s``), ``efficiency`` (1 unless
        ``guide_efficiency=True``), ``phi`` (its NB dispersion), ``baseline_count``
        (``exp(alpha + a_k + a_g + a_s)``: its expected count in a control sample at size
        factor 1) and one ``lfc_<treatment>`` column per treatment: the guide's total
        log-fold-change ``efficiency * gene lfc + b_{s,t}``.
    groups : DataFrame
        One row per gene group x treatment: ``group``, ``treatment``, ``effect`` (``c_{k,t}``),
        ``is_hit``, ``baseline`` (group intercept ``a_k``), ``n_genes``. Empty (same columns)
        without gene groups.
    samples : DataFrame
        One row per sample in column order: ``sample``, ``condition``, ``treatment``,
        ``replicate``, ``pool`` and ``size_factor`` (the true ``L_j``, geometric mean 1 over
        all samples).
    params : dict
        Scalars and small arrays: ``alpha``, ``alpha_pool`` (None without pool samples),
        ``b`` (treatment -> population slope ``b_t``), ``tau_gene`` and ``tau_sgrna``
        (effect name -> sd), ``tau_group``, ``gene_correlation`` and ``sgrna_correlation``
        (the correlation matrices, order intercept then treatments), ``phi`` (dispersion
        mode and summary), ``phi_pool``, ``gene_effects``, ``hit_lfc``, ``frac_hits``,
        ``n_hits`` (treatment -> number of hit genes), ``mean_count``, ``depth_sd``,
        ``guide_efficiency``, ``random_seed``.
    expected_counts : DataFrame
        The NB means ``mu`` (sgRNA x sample, pool samples included) the counts were drawn
        from.
    """

    genes: pd.DataFrame
    sgrnas: pd.DataFrame
    groups: pd.DataFrame
    samples: pd.DataFrame
    params: dict[str, Any] = field(default_factory=dict)
    expected_counts: pd.DataFrame | None = None

    def lfc_table(self, log2: bool = False) -> pd.DataFrame:
        """Return the true gene LFCs as a gene x treatment table.

        Parameters
        ----------
        log2 : bool, default False
            Return log2 fold-changes instead of natural-log ones.

        Returns
        -------
        DataFrame
            Indexed by gene (library order), one column per treatment.
        """
        col = "lfc_log2" if log2 else "lfc"
        table = self.genes.pivot(index=GENE, columns=TREATMENT, values=col)
        genes = pd.unique(self.genes[GENE].to_numpy())
        treatments = pd.unique(self.genes[TREATMENT].to_numpy())
        return table.loc[genes, treatments]

    @property
    def hits(self) -> pd.DataFrame:
        """The rows of :attr:`genes` that are true hits."""
        return self.genes[self.genes["is_hit"]].reset_index(drop=True)


# --------------------------------------------------------------------------- draws
def sample_negative_binomial(
    rng: np.random.Generator, mu: np.ndarray | float, phi: np.ndarray | float
) -> np.ndarray:
    """Draw negative-binomial counts with mean ``mu`` and dispersion ``phi``.

    The parameterisation of docs/MODEL.md (and of PyMC's ``NegativeBinomial(mu, alpha=phi)``,
    Stan's ``neg_binomial_2``): ``E[y] = mu``, ``Var[y] = mu + mu**2 / phi``. Drawn as a
    gamma-Poisson mixture; ``phi = inf`` gives Poisson counts.

    Parameters
    ----------
    rng : numpy.random.Generator
        Random number generator.
    mu : array-like
        Positive means.
    phi : array-like
        Positive dispersions (``inf`` allowed); broadcast against ``mu``.

    Returns
    -------
    ndarray of int64
        Counts with the broadcast shape of ``mu`` and ``phi``.
    """
    mu, phi = np.broadcast_arrays(np.asarray(mu, dtype=float), np.asarray(phi, dtype=float))
    if np.any(mu < 0) or np.any(phi <= 0):
        raise ScreenFormulaError("negative binomial needs mu >= 0 and phi > 0")
    finite = np.isfinite(phi)
    rate = mu.copy()
    if finite.any():
        shape = phi[finite]
        rate[finite] = rng.gamma(shape, mu[finite] / shape)
    return rng.poisson(rate).astype(np.int64)


def _correlation_matrix(
    value: float | np.ndarray | Sequence[Sequence[float]], size: int, what: str
) -> np.ndarray:
    """Build a ``size x size`` correlation matrix from a scalar or a full matrix.

    A scalar ``r`` is the correlation of the intercept with every slope; slopes are
    mutually uncorrelated.
    """
    arr = np.asarray(value, dtype=float)
    if arr.ndim == 0:
        r = float(arr)
        if not -1.0 < r < 1.0:
            raise ScreenFormulaError(f"{what} must lie strictly between -1 and 1, got {r}")
        omega = np.eye(size)
        omega[0, 1:] = r
        omega[1:, 0] = r
    else:
        omega = arr
        if omega.shape != (size, size):
            raise ScreenFormulaError(
                f"{what} must be a number or a {size}x{size} matrix (intercept, then one row "
                f"per treatment), got shape {omega.shape}"
            )
        if not np.allclose(omega, omega.T) or not np.allclose(np.diag(omega), 1.0):
            raise ScreenFormulaError(f"{what} must be symmetric with a unit diagonal")
    try:
        np.linalg.cholesky(omega)
    except np.linalg.LinAlgError:
        raise ScreenFormulaError(
            f"{what} does not give a positive-definite correlation matrix for {size - 1} "
            "treatment(s); use a smaller correlation or pass the full matrix"
        ) from None
    return omega


def _scales(value: float | Sequence[float], n_treatments: int, what: str) -> np.ndarray:
    """Expand 1, 2 or 1+T numbers to sds (intercept, then one slope per treatment)."""
    arr = np.atleast_1d(np.asarray(value, dtype=float))
    if arr.size == 1:
        arr = np.repeat(arr, 1 + n_treatments)
    elif arr.size == 2:
        arr = np.concatenate([arr[:1], np.repeat(arr[1], n_treatments)])
    elif arr.size != 1 + n_treatments:
        raise ScreenFormulaError(
            f"{what} takes (intercept sd, slope sd) or one sd for the intercept and each of "
            f"the {n_treatments} treatment(s)"
        )
    if np.any(arr < 0) or not np.all(np.isfinite(arr)):
        raise ScreenFormulaError(f"{what} must be finite and non-negative")
    return arr


def _correlated_normals(rng: np.random.Generator, n: int, omega: np.ndarray) -> np.ndarray:
    """``n`` draws of a standard MvNormal with correlation ``omega`` (rows)."""
    return rng.standard_normal((n, omega.shape[0])) @ np.linalg.cholesky(omega).T


def _hit_effects(u: np.ndarray, lo: float, hi: float, direction: str) -> np.ndarray:
    """Map standard normals to hit effects of magnitude Uniform(lo, hi), increasing in ``u``."""
    if direction == "both":
        return np.sign(u) * (lo + (hi - lo) * (2.0 * ndtr(np.abs(u)) - 1.0))
    if direction == "negative":
        return -(lo + (hi - lo) * ndtr(-u))
    return lo + (hi - lo) * ndtr(u)


def _choose(rng: np.random.Generator, n: int, k: int, n_columns: int) -> np.ndarray:
    """Boolean ``(n, n_columns)``: exactly ``k`` True per column, chosen uniformly."""
    ranks = np.argsort(np.argsort(rng.random((n, n_columns)), axis=0), axis=0)
    return ranks < k


def _generators(random_seed: int | np.random.Generator | None, n: int) -> list[np.random.Generator]:
    """Independent child generators, one per model component.

    Separate streams keep components stable when another is switched on or off (adding a
    pool sample does not change the screen counts of the same seed).
    """
    if isinstance(random_seed, np.random.Generator):
        return random_seed.spawn(n)
    return [np.random.default_rng(s) for s in np.random.SeedSequence(random_seed).spawn(n)]


# ------------------------------------------------------------------- stages
@dataclass
class _Groups:
    """Gene groups drawn by `_group_level` (empty arrays without groups)."""

    names: np.ndarray  # (K,) group labels
    of_gene: np.ndarray  # (G,) group index of each gene
    intercept: np.ndarray  # (K,) a_k
    effect: np.ndarray  # (K, T) c_{k,t}
    is_hit: np.ndarray  # (K, T)
    effect_of_gene: np.ndarray  # (G, T) c_{k,t} of each gene's group
    intercept_of_gene: np.ndarray  # (G,) a_k of each gene's group


@dataclass
class _Guides:
    """Guide names and effects drawn by `_guide_level`."""

    ids: np.ndarray  # (S,) sgRNA ids, targeting guides first, then controls
    genes: np.ndarray  # (S,) gene of each guide
    gene_index: np.ndarray  # (n_target,) gene index of each targeting guide
    is_control: np.ndarray  # (S,)
    intercept: np.ndarray  # (S,) a_s
    efficiency: np.ndarray  # (S,) e_s
    lfc: np.ndarray  # (S, T) guide LFC e_s * LFC[g,t] + b_{s,t}
    base: np.ndarray  # (S,) alpha + a_k + a_g + a_s
    phi: np.ndarray  # (S,) NB dispersion phi_s
    alpha: float


@dataclass
class _Samples:
    """The sample layout from `_sample_layout`: pool, control, then treatment samples."""

    conditions: list[str]
    replicates: list[int]
    names: list[str]
    pool: np.ndarray  # (J,) bool
    levels: list[str]  # treatment categories
    sheet: pd.DataFrame


def _check_arguments(
    treatments: Sequence[str] | str,
    *,
    n_genes: int,
    n_sgrnas_per_gene: int,
    n_replicates: int,
    n_control_replicates: int | None,
    n_pool_samples: int,
    n_groups: int,
    n_controls: int,
    gene_effects: str,
    hit_direction: str,
    dispersion: str,
    frac_hits: float,
    frac_group_hits: float,
    hit_lfc: tuple[float, float],
    mean_count: float,
    depth_sd: float,
    phi: float,
    phi_shape: float,
    phi_pool: float,
    group_spread: float,
) -> tuple[list[str], int, float, float]:
    """Validate `simulate_screen`'s arguments.

    Returns
    -------
    treatments : list of str
    n_control_replicates : int
        ``n_replicates`` when not given.
    lo, hi : float
        The range of hit effects.
    """
    treatments = [str(t) for t in ([treatments] if isinstance(treatments, str) else treatments)]
    n_treat = len(treatments)
    if n_treat == 0:
        raise ScreenFormulaError("simulate_screen needs at least one treatment")
    if len(set(treatments)) != n_treat or {CONTROL_LEVEL, POOL_LEVEL} & set(treatments):
        raise ScreenFormulaError("treatments must be distinct and not 'control' or 'pool'")
    n_ctrl_rep = n_replicates if n_control_replicates is None else n_control_replicates
    for name, value, low in (
        ("n_genes", n_genes, 1),
        ("n_sgrnas_per_gene", n_sgrnas_per_gene, 1),
        ("n_replicates", n_replicates, 1),
        ("n_control_replicates", n_ctrl_rep, 0),
        ("n_pool_samples", n_pool_samples, 0),
        ("n_groups", n_groups, 0),
        ("n_controls", n_controls, 0),
    ):
        if int(value) != value or value < low:
            raise ScreenFormulaError(f"{name} must be an integer >= {low}, got {value!r}")
    if n_groups > n_genes:
        raise ScreenFormulaError("n_groups cannot exceed n_genes")
    if gene_effects not in ("hits", "normal"):
        raise ScreenFormulaError(f"gene_effects must be 'hits' or 'normal', not {gene_effects!r}")
    if hit_direction not in ("both", "negative", "positive"):
        raise ScreenFormulaError("hit_direction must be 'both', 'negative' or 'positive'")
    if dispersion not in ("sgrna", "shared"):
        raise ScreenFormulaError(f"dispersion must be 'sgrna' or 'shared', not {dispersion!r}")
    if not (0.0 <= frac_hits <= 1.0 and 0.0 <= frac_group_hits <= 1.0):
        raise ScreenFormulaError("frac_hits and frac_group_hits must lie in [0, 1]")
    lo, hi = (float(v) for v in hit_lfc)
    if not 0.0 <= lo <= hi:
        raise ScreenFormulaError("hit_lfc must be (low, high) with 0 <= low <= high")
    if mean_count <= 0 or depth_sd < 0 or phi <= 0 or phi_shape <= 0 or phi_pool <= 0:
        raise ScreenFormulaError("mean_count, phi, phi_shape, phi_pool must be > 0; depth_sd >= 0")
    if group_spread < 0:
        raise ScreenFormulaError("group_spread must be >= 0")
    return treatments, n_ctrl_rep, lo, hi


def _gene_level(
    rng: np.random.Generator,
    n_genes: int,
    n_treat: int,
    *,
    omega: np.ndarray,
    tau: np.ndarray,
    gene_effects: str,
    frac_hits: float,
    lo: float,
    hi: float,
    hit_direction: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gene names, intercepts ``a_g`` and deviations ``b_{g,t}`` (before gene groups)."""
    width = len(str(n_genes))
    names = np.array([f"G{i + 1:0{width}d}" for i in range(n_genes)], dtype=object)
    z_gene = _correlated_normals(rng, n_genes, omega)
    a_gene = tau[0] * z_gene[:, 0]
    n_hits = int(round(frac_hits * n_genes))
    if gene_effects == "hits":
        single_hit = _choose(rng, n_genes, n_hits, n_treat)
        b_gene = np.where(single_hit, _hit_effects(z_gene[:, 1:], lo, hi, hit_direction), 0.0)
    else:
        b_gene = z_gene[:, 1:] * tau[1:]
    return names, a_gene, b_gene


def _group_level(
    rng: np.random.Generator,
    n_groups: int,
    b_gene: np.ndarray,
    *,
    tau: np.ndarray,
    gene_effects: str,
    frac_group_hits: float,
    lo: float,
    hi: float,
    hit_direction: str,
    group_spread: float,
) -> tuple[_Groups, np.ndarray]:
    """Gene groups and their effects; returns them and ``b_gene`` with hit-group spread."""
    n_g, n_treat = b_gene.shape
    n_k = int(n_groups)
    if n_k == 0:
        groups = _Groups(
            names=np.array([], dtype=object),
            of_gene=np.zeros(n_g, dtype=int),
            intercept=np.zeros(0),
            effect=np.zeros((0, n_treat)),
            is_hit=np.zeros((0, n_treat), dtype=bool),
            effect_of_gene=np.zeros((n_g, n_treat)),
            intercept_of_gene=np.zeros(n_g),
        )
        return groups, b_gene
    kwidth = len(str(n_k))
    names = np.array([f"GRP{k + 1:0{kwidth}d}" for k in range(n_k)], dtype=object)
    of_gene = rng.permutation(np.arange(n_g) % n_k)
    a_group = tau[0] * rng.standard_normal(n_k)
    if gene_effects == "hits":
        n_group_hits = int(round(frac_group_hits * n_k))
        group_hit = _choose(rng, n_k, n_group_hits, n_treat)
        u = rng.standard_normal((n_k, n_treat))
        c_group = np.where(group_hit, _hit_effects(u, lo, hi, hit_direction), 0.0)
        spread = group_spread * rng.standard_normal((n_g, n_treat))
        b_gene = b_gene + np.where(group_hit[of_gene], spread, 0.0)
    else:
        c_group = rng.standard_normal((n_k, n_treat)) * tau[1:]
        group_hit = np.abs(c_group) >= lo
    groups = _Groups(
        names=names,
        of_gene=of_gene,
        intercept=a_group,
        effect=c_group,
        is_hit=group_hit,
        effect_of_gene=c_group[of_gene],
        intercept_of_gene=a_group[of_gene],
    )
    return groups, b_gene


def _guide_level(
    rng_guide: np.random.Generator,
    rng_eff: np.random.Generator,
    rng_phi: np.random.Generator,
    gene_names: np.ndarray,
    gene_base: np.ndarray,
    lfc_gene: np.ndarray,
    *,
    n_per: int,
    n_controls: int,
    omega: np.ndarray,
    tau: np.ndarray,
    alpha: float,
    guide_efficiency: bool,
    efficiency_beta: tuple[float, float],
    dispersion: str,
    phi: float,
    phi_shape: float,
) -> _Guides:
    """Guides of every gene then the controls: names, effects, LFCs, baselines, dispersions.

    ``gene_base`` is ``a_k + a_g`` of each gene and ``lfc_gene`` its true LFC ``(G, T)``.
    """
    n_g, n_treat = lfc_gene.shape
    n_c = int(n_controls)
    n_target = n_g * n_per
    n_s = n_target + n_c
    gene_idx = np.repeat(np.arange(n_g), n_per)
    is_control = np.concatenate([np.zeros(n_target, bool), np.ones(n_c, bool)])
    sgrna_ids = np.concatenate(
        [
            np.char.add(
                np.char.add(gene_names[gene_idx].astype(str), "_"),
                np.tile(np.arange(1, n_per + 1), n_g).astype(str),
            ).astype(object),
            np.array([f"{CONTROL_GENE}_{i + 1:0{len(str(n_c))}d}" for i in range(n_c)], object),
        ]
    )
    sgrna_genes = np.concatenate([gene_names[gene_idx], np.full(n_c, CONTROL_GENE, object)])

    z_guide = _correlated_normals(rng_guide, n_s, omega)
    a_sgrna = tau[0] * z_guide[:, 0]
    b_sgrna = z_guide[:, 1:] * tau[1:]
    b_sgrna[is_control] = 0.0
    if guide_efficiency:
        efficiency = rng_eff.beta(*efficiency_beta, size=n_s)
        efficiency[is_control] = 1.0
    else:
        efficiency = np.ones(n_s)

    lfc_guide = np.zeros((n_s, n_treat))
    lfc_guide[:n_target] = efficiency[:n_target, None] * lfc_gene[gene_idx] + b_sgrna[:n_target]

    base = np.full(n_s, alpha) + a_sgrna
    base[:n_target] += gene_base[gene_idx]

    if dispersion == "sgrna":
        phi_s = rng_phi.gamma(phi_shape, phi / phi_shape, size=n_s)
    else:
        phi_s = np.full(n_s, float(phi))
    return _Guides(
        ids=sgrna_ids,
        genes=sgrna_genes,
        gene_index=gene_idx,
        is_control=is_control,
        intercept=a_sgrna,
        efficiency=efficiency,
        lfc=lfc_guide,
        base=base,
        phi=phi_s,
        alpha=alpha,
    )


def _sample_layout(
    treatments: list[str], n_replicates: int, n_control_replicates: int, n_pool: int
) -> _Samples:
    """Sample names, conditions, replicates and the sample sheet (pool, control, treatments)."""
    n_treat = len(treatments)
    conditions = (
        [POOL_LEVEL] * n_pool
        + [CONTROL_LEVEL] * n_control_replicates
        + [t for t in treatments for _ in range(n_replicates)]
    )
    replicates = (
        list(range(1, n_pool + 1))
        + list(range(1, n_control_replicates + 1))
        + list(range(1, n_replicates + 1)) * n_treat
    )
    sample_names = [f"{c}_{r}" for c, r in zip(conditions, replicates, strict=True)]
    pool_flag = np.array([c == POOL_LEVEL for c in conditions])
    levels = [CONTROL_LEVEL, *treatments] + ([POOL_LEVEL] if n_pool else [])
    sheet = pd.DataFrame(
        {
            CONDITION: list(conditions),
            TREATMENT: pd.Categorical(conditions, categories=levels),
            REPLICATE: np.asarray(replicates, dtype=np.int64),
            POOL: pool_flag,
        },
        index=pd.Index(sample_names),
    )
    return _Samples(conditions, replicates, sample_names, pool_flag, levels, sheet)


def _draw_counts(
    rng_count: np.random.Generator,
    rng_pool: np.random.Generator,
    guides: _Guides,
    samples: _Samples,
    treatments: list[str],
    true_sf: np.ndarray,
    *,
    alpha_pool: float,
    phi_pool: float,
    replicate_scale: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Expected counts ``mu`` and NB counts of every guide in every sample.

    ``replicate_scale[r - 1]`` multiplies the effects of every treatment's replicate ``r``.
    """
    n_s, n_treat = guides.lfc.shape
    n_j = len(samples.names)
    pool_flag = samples.pool
    x = np.zeros((n_j, n_treat))
    for j, c in enumerate(samples.conditions):
        if c in treatments:
            strength = (
                1.0 if replicate_scale is None else replicate_scale[samples.replicates[j] - 1]
            )
            x[j, treatments.index(c)] = strength
    screen = ~pool_flag
    has_pool = bool(pool_flag.any())
    mu = np.empty((n_s, n_j))
    mu[:, screen] = true_sf[screen] * np.exp(guides.base[:, None] + guides.lfc @ x[screen].T)
    if has_pool:
        mu[:, pool_flag] = true_sf[pool_flag] * np.exp(alpha_pool + guides.intercept)[:, None]
    counts = np.empty((n_s, n_j), dtype=np.int64)
    counts[:, screen] = sample_negative_binomial(rng_count, mu[:, screen], guides.phi[:, None])
    if has_pool:
        counts[:, pool_flag] = sample_negative_binomial(rng_pool, mu[:, pool_flag], phi_pool)
    return mu, counts


def _truth_tables(
    gene_names: np.ndarray,
    a_gene: np.ndarray,
    lfc_gene: np.ndarray,
    is_hit: np.ndarray,
    groups: _Groups,
    guides: _Guides,
    samples: _Samples,
    treatments: list[str],
    true_sf: np.ndarray,
) -> dict[str, pd.DataFrame]:
    """The ``genes``, ``sgrnas``, ``groups`` and ``samples`` tables of `SimulationTruth`."""
    n_g, n_treat = lfc_gene.shape
    n_k = len(groups.names)
    use_groups = n_k > 0
    n_c = int(guides.is_control.sum())
    all_genes = gene_names if n_c == 0 else np.append(gene_names, CONTROL_GENE)
    n_all = len(all_genes)
    lfc_all = np.vstack([lfc_gene, np.zeros((n_all - n_g, n_treat))])
    hit_all = np.vstack([is_hit, np.zeros((n_all - n_g, n_treat), bool)])
    c_all = np.vstack([groups.effect_of_gene, np.zeros((n_all - n_g, n_treat))])
    group_label = groups.names[groups.of_gene] if use_groups else np.full(n_g, UNGROUPED, object)
    group_all = np.append(group_label, [UNGROUPED] * (n_all - n_g)).astype(object)
    genes_df = pd.DataFrame(
        {
            GENE: np.repeat(all_genes, n_treat),
            TREATMENT: np.tile(np.asarray(treatments, dtype=object), n_all),
            "lfc": lfc_all.reshape(-1),
            "lfc_log2": lfc_all.reshape(-1) / np.log(2.0),
            "is_hit": hit_all.reshape(-1),
            "is_control": np.repeat(np.arange(n_all) >= n_g, n_treat),
            GROUP: np.repeat(group_all, n_treat),
            "group_effect": c_all.reshape(-1),
            "baseline": np.repeat(np.append(a_gene, np.zeros(n_all - n_g)), n_treat),
        }
    )
    sgrnas_df = pd.DataFrame(
        {
            SGRNA: guides.ids,
            GENE: guides.genes,
            "is_control": guides.is_control,
            "baseline": guides.intercept,
            "efficiency": guides.efficiency,
            "phi": guides.phi,
            "baseline_count": np.exp(guides.base),
        }
    )
    for t_i, t in enumerate(treatments):
        sgrnas_df[f"lfc_{t}"] = guides.lfc[:, t_i]
    group_sizes = np.bincount(groups.of_gene, minlength=n_k) if use_groups else np.zeros(0, int)
    groups_df = pd.DataFrame(
        {
            GROUP: np.repeat(groups.names, n_treat),
            TREATMENT: np.tile(np.asarray(treatments, dtype=object), n_k),
            "effect": groups.effect.reshape(-1),
            "is_hit": groups.is_hit.reshape(-1),
            "baseline": np.repeat(groups.intercept, n_treat),
            "n_genes": np.repeat(group_sizes, n_treat),
        }
    )
    samples_df = pd.DataFrame(
        {
            "sample": samples.names,
            CONDITION: samples.conditions,
            TREATMENT: pd.Categorical(samples.conditions, categories=samples.levels),
            REPLICATE: np.asarray(samples.replicates, dtype=np.int64),
            POOL: samples.pool,
            "size_factor": true_sf,
        }
    )
    return {"genes": genes_df, "sgrnas": sgrnas_df, "groups": groups_df, "samples": samples_df}


# ------------------------------------------------------------------------ simulate
class SimulatedScreen(NamedTuple):
    """What `simulate_screen` returns: the counts and the truth behind them.

    A pair, so ``data, truth = sf.simulate_screen(...)`` unpacks it; ``.data`` is the
    `ScreenData` a model takes (``sf.ScreenModel(formula, sim.data)``), ``.truth`` the
    `SimulationTruth`.
    """

    data: ScreenData
    truth: SimulationTruth


def simulate_screen(
    n_genes: int = 200,
    n_sgrnas_per_gene: int = 4,
    treatments: Sequence[str] = ("treated",),
    n_replicates: int = 3,
    n_pool_samples: int = 1,
    n_groups: int = 0,
    n_controls: int = 0,
    *,
    n_control_replicates: int | None = None,
    mean_count: float = 300.0,
    depth_sd: float = 0.25,
    gene_effects: Literal["hits", "normal"] = "hits",
    frac_hits: float = 0.1,
    hit_lfc: tuple[float, float] = (0.5, 2.5),
    hit_direction: Literal["both", "negative", "positive"] = "both",
    treatment_effects: float | Sequence[float] = 0.0,
    tau_gene: float | Sequence[float] = (0.3, 0.5),
    tau_sgrna: float | Sequence[float] = (1.0, 0.15),
    gene_correlation: float | np.ndarray = -0.3,
    sgrna_correlation: float | np.ndarray = -0.2,
    guide_efficiency: bool = False,
    efficiency_beta: tuple[float, float] = (4.0, 1.5),
    frac_group_hits: float = 0.1,
    tau_group: float | Sequence[float] = (0.2, 0.5),
    group_spread: float = 0.25,
    dispersion: Literal["sgrna", "shared"] = "sgrna",
    phi: float = 20.0,
    phi_shape: float = 4.0,
    phi_pool: float = 50.0,
    alpha_pool: float | None = None,
    size_factors: str = "median",
    replicate_scale: Sequence[float] | None = None,
    random_seed: int | np.random.Generator | None = None,
) -> SimulatedScreen:
    r"""Simulate a pooled CRISPR screen from the screenformula model.

    Returns a `SimulatedScreen`, the pair ``(data, truth)``: unpack it
    (``data, truth = sf.simulate_screen()``) or take ``.data``; a model takes the
    `ScreenData` alone (``sf.ScreenModel(formula, data)``).

    Counts of sgRNA ``s`` (gene ``g``, gene group ``k``) in screen sample ``j`` and pool
    sample ``p``::

        y[s,j] ~ NB(mu[s,j], phi_s)                  Var = mu + mu^2 / phi
        log mu[s,j] = log L_j + alpha + a_k + a_g + a_s + sum_t x_jt * lfc[s,t]
        lfc[s,t]    = e_s * LFC[g,t] + b_{s,t}       guide LFC (e_s = 1 by default)
        LFC[g,t]    = b_t + c_{k,t} + b_{g,t}        the true gene LFC (truth ``lfc``)
        P[s,p] ~ NB(L_p * exp(alpha_pool + a_s), phi_pool)

    ``x_jt`` is the one-hot indicator of treatment ``t``; control samples are the
    reference level. Without efficiencies the guide slope of docs/MODEL.md is
    ``b + b_g + b_s`` exactly; with them the guide deviates from its gene by
    ``(e_s - 1) * LFC + b_{s,t}``.

    **Gene effects** (``gene_effects``):

    - ``"hits"`` (default; for FDR and hit-calling checks): draw
      ``(a_g, u_g1..u_gT) ~ MvNormal(0, Omega_gene)`` (intercept scaled by ``tau_gene[0]``).
      In each treatment exactly ``round(frac_hits * n_genes)`` genes, chosen uniformly and
      independently per treatment, are hits: ``b_{g,t} = h(u_gt)`` with ``|b_{g,t}|``
      Uniform(``hit_lfc``) and sign by ``hit_direction`` (``"both"``: sign of ``u``,
      i.e. 50/50). ``h`` is increasing in ``u``, so ``gene_correlation`` carries over to
      the rank correlation of baseline and effect among hits. Every other gene has
      ``b_{g,t} = 0`` exactly, so with the default ``b_t = 0`` its LFC is exactly 0.
    - ``"normal"`` (for parameter recovery / SBC: the data are drawn from the fitted model
      itself): ``(a_g, b_g1..b_gT) ~ MvNormal(0, diag(tau) Omega diag(tau))`` with
      ``tau = tau_gene``; ``is_hit`` then marks ``|b_{g,t} + c_{k,t}| >= hit_lfc[0]``.

    **Gene groups** (``n_groups > 0``): genes are spread evenly over the groups at random;
    each group has an intercept ``a_k ~ N(0, tau_group[0])`` and a shared effect ``c_{k,t}``
    per treatment. In ``"hits"`` mode ``round(frac_group_hits * n_groups)`` groups per
    treatment are hit groups with ``c_{k,t}`` drawn like a gene hit; their genes also get a
    gene deviation ``N(0, group_spread)`` (and may be individual hits too); all other groups
    have ``c_{k,t} = 0``. In ``"normal"`` mode ``c_{k,t} ~ N(0, tau_group[1])``.

    **Guides**: ``(a_s, b_s1..b_sT) ~ MvNormal(0, diag(tau_sgrna) Omega_sgrna
    diag(tau_sgrna))``; ``tau_sgrna[0] = 1`` makes guide abundances vary ~1 on the log
    scale. With ``guide_efficiency=True``, ``e_s ~ Beta(*efficiency_beta)`` (mean 0.73 by
    default): the gene LFC is the effect of a fully efficient guide.

    **Controls** (``n_controls > 0``): guides of gene ``"NonTargeting"`` (flagged as
    controls in the ScreenData; group ``"ungrouped"``) with ``a_g = 0``, ``b_{s,t} = 0``,
    efficiency 1 and LFC exactly 0 in every treatment, whatever ``b_t``.

    **Scale**: ``alpha = log(mean_count) - (tau_gene[0]^2 + tau_sgrna[0]^2 +
    tau_group[0]^2) / 2`` so the average expected count of a guide in a control sample at
    size factor 1 is ``mean_count``; ``alpha_pool`` defaults to
    ``log(mean_count) - tau_sgrna[0]^2 / 2`` (the same average in the pool).
    Size factors ``log L_j ~ N(0, depth_sd)`` over all samples, rescaled to geometric mean 1.

    **Dispersion**: ``"sgrna"``: ``phi_s ~ Gamma(phi_shape, rate=phi_shape / phi)`` (mean
    ``phi``, coefficient of variation ``1/sqrt(phi_shape)``); ``"shared"``: ``phi_s = phi``.
    The pool has its own ``phi_pool`` (plasmid counts are less noisy).

    Parameters
    ----------
    n_genes : int, default 200
        Number of targeting genes.
    n_sgrnas_per_gene : int, default 4
        Guides per targeting gene.
    treatments : sequence of str, default ("treated",)
        Treatment levels (each gets a slope); not ``"control"`` or ``"pool"``.
    n_replicates : int, default 3
        Screen samples per treatment (and per control unless ``n_control_replicates``).
    n_pool_samples : int, default 1
        Pool (plasmid / T0) samples; 0 disables the pool.
    n_groups : int, default 0
        Gene groups; 0 disables them.
    n_controls : int, default 0
        Non-targeting control guides (gene ``"NonTargeting"``).
    n_control_replicates : int, optional
        Control screen samples (default ``n_replicates``; 0 for designs where only the pool
        is the reference).
    mean_count : float, default 300
        Average expected count per guide and sample.
    depth_sd : float, default 0.25
        Sd of the log size factors.
    gene_effects : {"hits", "normal"}, default "hits"
        Spike-and-slab hits or MvNormal gene effects (see above).
    frac_hits : float, default 0.1
        Fraction of genes that are hits in each treatment (``"hits"`` mode).
    hit_lfc : (float, float), default (0.5, 2.5)
        Range of ``|b_{g,t}|`` of hits (natural log).
    hit_direction : {"both", "negative", "positive"}, default "both"
        Sign of hit effects (``"negative"`` for a dropout screen).
    treatment_effects : float or sequence of float, default 0
        Population slopes ``b_t`` (one value or one per treatment).
    tau_gene : float or sequence of float, default (0.3, 0.5)
        Gene-level sds: intercept, then slope(s) (slopes used in ``"normal"`` mode).
    tau_sgrna : float or sequence of float, default (1.0, 0.15)
        Guide-level sds: intercept ``a_s``, then slope(s) ``b_{s,t}``.
    gene_correlation, sgrna_correlation : float or ndarray, defaults -0.3 and -0.2
        A scalar is the correlation of the intercept with each slope (slopes mutually
        uncorrelated); or the full ``(1+T) x (1+T)`` correlation matrix.
    guide_efficiency : bool, default False
        Draw per-guide efficiencies ``e_s ~ Beta(*efficiency_beta)``.
    efficiency_beta : (float, float), default (4, 1.5)
        Beta parameters of the efficiencies.
    frac_group_hits : float, default 0.1
        Fraction of groups that are hit groups per treatment (``"hits"`` mode).
    tau_group : float or sequence of float, default (0.2, 0.5)
        Group-level sds: intercept, then slope(s) (slopes used in ``"normal"`` mode).
    group_spread : float, default 0.25
        Sd of gene deviations around a hit group's effect (``"hits"`` mode).
    dispersion : {"sgrna", "shared"}, default "sgrna"
        Per-guide (partially pooled) or one shared NB dispersion.
    phi : float, default 20
        Typical (mean) dispersion of the screen samples.
    phi_shape : float, default 4
        Gamma shape of the per-guide dispersions.
    phi_pool : float, default 50
        Dispersion of the pool counts.
    alpha_pool : float, optional
        Pool intercept (default: see Scale above).
    size_factors : str, default "median"
        ``"true"`` gives the ScreenData the true ``L_j``; any other value is a
        :class:`ScreenData` size-factor method (``"median"``, ``"total"``, ``"control"``,
        ``"none"``).
    replicate_scale : sequence of float, optional
        One factor per treated replicate (``n_replicates`` of them) on every effect of
        that replicate, ``x_jt = s_r``: replicates that selected harder. Rescaled to a
        geometric mean of 1, so ``lfc`` stays the replicates' typical effect (what
        ``ScreenModel(..., replicate_scale="condition")`` estimates).
    random_seed : int, Generator or None
        Seed for :func:`numpy.random.default_rng`; the same seed gives the same screen.

    Returns
    -------
    SimulatedScreen
        The pair below, also as attributes ``.data`` and ``.truth``.
    data : ScreenData
        Samples ordered pool samples first (``pool_1``...), then control (``control_1``...)
        and treatments (``<treatment>_1``...). Sample-sheet columns: ``condition`` (str:
        ``"pool"``, ``"control"`` or the treatment name), ``treatment`` (categorical with
        levels ``"control"``, the treatments in the given order, then ``"pool"`` when there
        are pool samples; pool samples have ``treatment="pool"``), ``replicate`` (int, from
        1 within each condition) and ``pool`` (bool). Gene groups and controls are set when
        simulated.
    truth : SimulationTruth
        The generating parameters (see :class:`SimulationTruth`).

    Examples
    --------
    >>> data, truth = simulate_screen(n_genes=100, random_seed=1)
    >>> data.n_sgrnas, data.n_samples
    (400, 7)
    >>> int(truth.genes["is_hit"].sum())
    10
    """
    treatments, n_ctrl_rep, lo, hi = _check_arguments(
        treatments,
        n_genes=n_genes,
        n_sgrnas_per_gene=n_sgrnas_per_gene,
        n_replicates=n_replicates,
        n_control_replicates=n_control_replicates,
        n_pool_samples=n_pool_samples,
        n_groups=n_groups,
        n_controls=n_controls,
        gene_effects=gene_effects,
        hit_direction=hit_direction,
        dispersion=dispersion,
        frac_hits=frac_hits,
        frac_group_hits=frac_group_hits,
        hit_lfc=hit_lfc,
        mean_count=mean_count,
        depth_sd=depth_sd,
        phi=phi,
        phi_shape=phi_shape,
        phi_pool=phi_pool,
        group_spread=group_spread,
    )
    n_treat = len(treatments)
    b_t = np.broadcast_to(np.asarray(treatment_effects, dtype=float), (n_treat,)).copy()
    tau_g = _scales(tau_gene, n_treat, "tau_gene")
    tau_s = _scales(tau_sgrna, n_treat, "tau_sgrna")
    tau_k = _scales(tau_group, n_treat, "tau_group")
    omega_g = _correlation_matrix(gene_correlation, 1 + n_treat, "gene_correlation")
    omega_s = _correlation_matrix(sgrna_correlation, 1 + n_treat, "sgrna_correlation")

    (rng_gene, rng_group, rng_guide, rng_eff, rng_phi, rng_depth, rng_count, rng_pool) = (
        _generators(random_seed, 8)
    )
    hits = {"lo": lo, "hi": hi, "hit_direction": hit_direction}

    # Genes and gene groups: the true gene LFC b_t + c_{k,t} + b_{g,t}.
    n_g = int(n_genes)
    gene_names, a_gene, b_gene = _gene_level(
        rng_gene,
        n_g,
        n_treat,
        omega=omega_g,
        tau=tau_g,
        gene_effects=gene_effects,
        frac_hits=frac_hits,
        **hits,
    )
    use_groups = n_groups > 0
    groups, b_gene = _group_level(
        rng_group,
        n_groups,
        b_gene,
        tau=tau_k,
        gene_effects=gene_effects,
        frac_group_hits=frac_group_hits,
        group_spread=group_spread,
        **hits,
    )
    deviation = groups.effect_of_gene + b_gene  # gene effect beyond the population slope b_t
    lfc_gene = b_t + deviation
    if gene_effects == "hits":
        is_hit = deviation != 0.0
    else:
        is_hit = np.abs(deviation) >= lo

    # Guides, on the scale that makes mean_count the average expected control count.
    alpha = float(np.log(mean_count) - 0.5 * (tau_g[0] ** 2 + tau_s[0] ** 2))
    if use_groups:
        alpha -= 0.5 * tau_k[0] ** 2
    guides = _guide_level(
        rng_guide,
        rng_eff,
        rng_phi,
        gene_names,
        a_gene + groups.intercept_of_gene,
        lfc_gene,
        n_per=int(n_sgrnas_per_gene),
        n_controls=n_controls,
        omega=omega_s,
        tau=tau_s,
        alpha=alpha,
        guide_efficiency=guide_efficiency,
        efficiency_beta=efficiency_beta,
        dispersion=dispersion,
        phi=phi,
        phi_shape=phi_shape,
    )

    # Samples, size factors and counts.
    n_pool = int(n_pool_samples)
    samples = _sample_layout(treatments, n_replicates, n_ctrl_rep, n_pool)
    log_l = depth_sd * rng_depth.standard_normal(len(samples.names))
    true_sf = np.exp(log_l - log_l.mean())
    a_pool = float(np.log(mean_count) - 0.5 * tau_s[0] ** 2) if alpha_pool is None else alpha_pool
    strengths = None
    if replicate_scale is not None:
        strengths = np.asarray(replicate_scale, dtype=float)
        if strengths.shape != (int(n_replicates),) or not np.all(strengths > 0):
            raise ValueError(
                f"replicate_scale needs {n_replicates} positive factors (one per replicate)"
            )
        strengths = strengths / np.exp(np.log(strengths).mean())
    mu, counts = _draw_counts(
        rng_count,
        rng_pool,
        guides,
        samples,
        treatments,
        true_sf,
        alpha_pool=a_pool,
        phi_pool=phi_pool,
        replicate_scale=strengths,
    )

    gene_groups = None
    if use_groups:
        gene_groups = pd.Series(groups.names[groups.of_gene], index=gene_names, name=GROUP)
    seed_txt = random_seed if not isinstance(random_seed, np.random.Generator) else "generator"
    data = ScreenData(
        counts,
        guides.ids,
        guides.genes,
        samples.sheet,
        gene_groups=gene_groups,
        controls=guides.is_control,
        size_factors=true_sf if size_factors == "true" else size_factors,
        source=f"simulate_screen(random_seed={seed_txt})",
    )

    tables = _truth_tables(
        gene_names, a_gene, lfc_gene, is_hit, groups, guides, samples, treatments, true_sf
    )
    phi_s = guides.phi
    names = ["intercept", *treatments]
    params: dict[str, Any] = {
        "alpha": alpha,
        "alpha_pool": a_pool if n_pool else None,
        "b": dict(zip(treatments, b_t.tolist(), strict=True)),
        "tau_gene": dict(zip(names, tau_g.tolist(), strict=True)),
        "tau_sgrna": dict(zip(names, tau_s.tolist(), strict=True)),
        "tau_group": dict(zip(names, tau_k.tolist(), strict=True)) if use_groups else None,
        "gene_correlation": omega_g,
        "sgrna_correlation": omega_s,
        "phi": {
            "mode": dispersion,
            "typical": float(phi),
            "shape": float(phi_shape) if dispersion == "sgrna" else None,
            "mean": float(phi_s.mean()),
            "median": float(np.median(phi_s)),
            "min": float(phi_s.min()),
            "max": float(phi_s.max()),
        },
        "phi_pool": float(phi_pool) if n_pool else None,
        "gene_effects": gene_effects,
        "hit_lfc": (lo, hi),
        "hit_direction": hit_direction,
        "frac_hits": float(frac_hits),
        "n_hits": dict(zip(treatments, is_hit.sum(axis=0).astype(int).tolist(), strict=True)),
        "mean_count": float(mean_count),
        "depth_sd": float(depth_sd),
        "replicate_scale": None if strengths is None else strengths.tolist(),
        "guide_efficiency": bool(guide_efficiency),
        "efficiency_beta": tuple(efficiency_beta) if guide_efficiency else None,
        "random_seed": random_seed if not isinstance(random_seed, np.random.Generator) else None,
    }
    if gene_effects == "hits":
        # The sd a Normal-slope model would see: the realised root-mean-square b_{g,t}.
        params["sd_gene_effect"] = dict(
            zip(treatments, np.sqrt(np.mean(b_gene**2, axis=0)).tolist(), strict=True)
        )
    expected = pd.DataFrame(mu, index=pd.Index(guides.ids, name=SGRNA), columns=samples.names)
    truth = SimulationTruth(**tables, params=params, expected_counts=expected)
    return SimulatedScreen(data, truth)
