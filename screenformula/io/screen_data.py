"""`ScreenData`: the sgRNA x sample count matrix with its annotations."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from screenformula._constants import CONDITION, COUNT, GENE, GROUP, POOL, SAMPLE, SGRNA
from screenformula.errors import ScreenDataError
from screenformula.io.normalize import compute_size_factors

#: Counts must stay below this: the model's log-density is -inf from 2^31 reads on.
MAX_COUNT = 2**31

#: Columns of ``ScreenData.dropped``: which guides were removed, and why.
DROPPED_COLUMNS = (SGRNA, GENE, "reason")


def empty_dropped() -> pd.DataFrame:
    """Return an empty ``dropped`` table (columns ``sgrna, gene, reason``)."""
    return pd.DataFrame({c: pd.Series(dtype=object) for c in DROPPED_COLUMNS})


class ScreenData:
    """Counts of a pooled CRISPR screen: sgRNA x sample integers plus annotations.

    Parameters
    ----------
    counts : array-like of shape (n_sgrna, n_sample)
        Non-negative integer read counts (stored as ``int64``).
    sgrnas : sequence of str
        Unique sgRNA ids, one per row of ``counts``.
    genes : sequence of str
        The gene each sgRNA targets.
    samples : DataFrame
        The sample sheet, indexed by sample name in the column order of ``counts``;
        it has a ``condition`` column and a boolean ``pool`` column (plasmid / T0 rows).
        Every column is a variable a formula can use by name.
    gene_groups : Series, optional
        Gene -> group label. Genes missing from it are put in group ``"ungrouped"``.
    controls : array-like of bool, optional
        Which sgRNAs are non-targeting / negative controls.
    size_factors : str or array-like, default "median"
        A method name (``"median"``, ``"total"``, ``"control"``, ``"none"``) or one value
        per sample.
    source : str, optional
        Where the counts came from (a file name), used in messages.
    dropped : DataFrame, optional
        Guides removed on the way here (missing counts, filters), with columns
        ``sgrna, gene, reason``; kept as the ``dropped`` attribute (default: empty).

    Notes
    -----
    Build it with :func:`screenformula.read_counts` or :func:`screenformula.simulate_screen`
    rather than by hand: those validate the input and name the file, row and column of
    anything wrong.
    """

    def __init__(
        self,
        counts: np.ndarray,
        sgrnas: Sequence[str],
        genes: Sequence[str],
        samples: pd.DataFrame,
        *,
        gene_groups: pd.Series | None = None,
        controls: np.ndarray | None = None,
        size_factors: str | Sequence[float] | np.ndarray = "median",
        source: str | None = None,
        dropped: pd.DataFrame | None = None,
    ) -> None:
        counts = np.asarray(counts)
        if counts.ndim != 2:
            raise ScreenDataError("counts must be a 2-D sgRNA x sample matrix")
        if counts.shape[0] == 0 or counts.shape[1] == 0:
            raise ScreenDataError(f"{source or 'count table'}: the table is empty")
        if not np.issubdtype(counts.dtype, np.integer):
            raise ScreenDataError("counts must be integers")
        if np.any(counts < 0):
            raise ScreenDataError("counts must be non-negative")
        if counts.size and counts.max() >= MAX_COUNT:
            raise ScreenDataError(
                f"{source or 'count table'}: a count of {int(counts.max()):,} is too large "
                f"(counts must be below 2^31 = {MAX_COUNT:,})"
            )
        self.counts: np.ndarray = counts.astype(np.int64, copy=False)
        self.sgrnas: pd.Index = pd.Index(np.asarray(sgrnas, dtype=object), name=SGRNA)
        self.genes_of_sgrna: np.ndarray = np.asarray(genes, dtype=object)
        if len(self.sgrnas) != counts.shape[0] or len(self.genes_of_sgrna) != counts.shape[0]:
            raise ScreenDataError("sgrnas and genes must have one entry per row of counts")
        if self.sgrnas.has_duplicates:
            dup = self.sgrnas[self.sgrnas.duplicated()][0]
            raise ScreenDataError(f"{source or 'count table'}: duplicate sgRNA id {dup!r}")
        samples = samples.copy()
        samples.index = pd.Index(samples.index.astype(str), name=SAMPLE)
        if len(samples) != counts.shape[1]:
            raise ScreenDataError("the sample sheet must have one row per column of counts")
        if CONDITION not in samples.columns:
            raise ScreenDataError("the sample sheet needs a 'condition' column")
        if POOL not in samples.columns:
            samples[POOL] = False
        samples[POOL] = samples[POOL].astype(bool)
        self.samples: pd.DataFrame = samples
        self.source = source

        codes, gene_names = pd.factorize(self.genes_of_sgrna)
        self.gene_codes: np.ndarray = codes.astype(np.int64)
        self.gene_names: pd.Index = pd.Index(gene_names, name=GENE)

        self.gene_groups: pd.Series | None = None
        if gene_groups is not None:
            groups = pd.Series(gene_groups).astype(str)
            groups = groups[~groups.index.duplicated()]
            self.gene_groups = groups.reindex(self.gene_names).fillna("ungrouped").rename(GROUP)

        if controls is None:
            controls = np.zeros(counts.shape[0], dtype=bool)
        self.controls: np.ndarray = np.asarray(controls, dtype=bool)
        if self.controls.shape != (counts.shape[0],):
            raise ScreenDataError("controls must be one boolean per sgRNA")

        self.size_factor_method: str = "given"
        if isinstance(size_factors, str):
            self.size_factor_method = size_factors
            size_factors = compute_size_factors(
                self.counts,
                size_factors,
                self.controls,
                samples=self.samples.index,
                where=Path(source).name if source else "",
            )
        sf = np.asarray(size_factors, dtype=float)
        if sf.shape != (counts.shape[1],) or not np.all(np.isfinite(sf)) or np.any(sf <= 0):
            raise ScreenDataError("size factors must be one positive number per sample")
        self.size_factors: pd.Series = pd.Series(sf, index=self.samples.index, name="size_factor")

        if dropped is None:
            dropped = empty_dropped()
        missing_cols = [c for c in DROPPED_COLUMNS if c not in dropped.columns]
        if missing_cols:
            raise ScreenDataError(f"dropped needs columns {', '.join(DROPPED_COLUMNS)}")
        self.dropped: pd.DataFrame = dropped.reset_index(drop=True)

    # ------------------------------------------------------------------ shape
    @property
    def n_sgrnas(self) -> int:
        """Number of sgRNAs (rows)."""
        return self.counts.shape[0]

    @property
    def n_samples(self) -> int:
        """Number of samples (columns), pool samples included."""
        return self.counts.shape[1]

    @property
    def n_genes(self) -> int:
        """Number of distinct gene labels."""
        return len(self.gene_names)

    @property
    def depth(self) -> pd.Series:
        """Total reads per sample."""
        return pd.Series(self.counts.sum(axis=0), index=self.samples.index, name="depth")

    @property
    def pool_mask(self) -> np.ndarray:
        """Boolean per sample: True for pool (plasmid / T0) samples."""
        return self.samples[POOL].to_numpy(dtype=bool)

    @property
    def pool_samples(self) -> pd.Index:
        """Names of the pool samples."""
        return self.samples.index[self.pool_mask]

    @property
    def screen_samples(self) -> pd.Index:
        """Names of the samples that are not pool samples."""
        return self.samples.index[~self.pool_mask]

    @property
    def group_names(self) -> pd.Index | None:
        """Distinct gene-group labels, or None without gene groups."""
        if self.gene_groups is None:
            return None
        return pd.Index(pd.unique(self.gene_groups.to_numpy()), name=GROUP)

    @property
    def group_codes(self) -> np.ndarray | None:
        """Integer group code per gene (aligned with ``gene_names``), or None."""
        if self.gene_groups is None:
            return None
        return pd.Index(self.group_names).get_indexer(self.gene_groups.to_numpy())

    # ------------------------------------------------------------- conversion
    def counts_frame(self) -> pd.DataFrame:
        """Return the counts as a DataFrame in MAGeCK layout (``sgRNA``, ``Gene``, samples...)."""
        frame = pd.DataFrame(self.counts, index=self.sgrnas, columns=self.samples.index)
        frame.insert(0, "Gene", self.genes_of_sgrna)
        frame.index.name = "sgRNA"
        return frame.reset_index()

    def to_long(self, samples: Sequence[str] | None = None) -> pd.DataFrame:
        """Return the long (tidy) table: one row per sgRNA x sample.

        Parameters
        ----------
        samples : sequence of str, optional
            Which samples to include (default: all).

        Returns
        -------
        DataFrame
            Columns ``sgrna, gene, sample, count, size_factor`` followed by every
            sample-sheet column (and ``group`` when gene groups are known).
        """
        cols = np.arange(self.n_samples)
        if samples is not None:
            cols = self.samples.index.get_indexer(list(samples))
            if np.any(cols < 0):
                missing = [s for s, c in zip(samples, cols, strict=True) if c < 0]
                raise ScreenDataError(f"unknown sample(s): {', '.join(map(str, missing))}")
        n_s, n_j = self.n_sgrnas, len(cols)
        long = pd.DataFrame(
            {
                SGRNA: np.repeat(self.sgrnas.to_numpy(), n_j),
                GENE: np.repeat(self.genes_of_sgrna, n_j),
                SAMPLE: np.tile(self.samples.index.to_numpy()[cols], n_s),
                COUNT: self.counts[:, cols].reshape(-1),
                "size_factor": np.tile(self.size_factors.to_numpy()[cols], n_s),
            }
        )
        if self.gene_groups is not None:
            long[GROUP] = np.repeat(self.gene_groups.to_numpy()[self.gene_codes], n_j)
        sheet = self.samples.iloc[cols]
        for name in sheet.columns:
            if name not in long.columns:
                long[name] = np.tile(sheet[name].to_numpy(), n_s)
        return long

    # --------------------------------------------------------------- subsets
    def subset(
        self, sgrnas: np.ndarray | None = None, samples: Sequence[str] | None = None
    ) -> ScreenData:
        """Return a new `ScreenData` with the chosen guides (boolean mask) and samples.

        Size factors are recomputed with the same method unless they were given by hand,
        in which case they are carried over.
        """
        rows = np.ones(self.n_sgrnas, bool) if sgrnas is None else np.asarray(sgrnas, bool)
        cols = (
            np.arange(self.n_samples)
            if samples is None
            else self.samples.index.get_indexer(list(samples))
        )
        if np.any(cols < 0):
            raise ScreenDataError("subset: unknown sample name")
        sf: str | np.ndarray = self.size_factor_method
        if sf == "given":
            sf = self.size_factors.to_numpy()[cols]
        return ScreenData(
            self.counts[np.ix_(rows, cols)],
            self.sgrnas[rows],
            self.genes_of_sgrna[rows],
            self.samples.iloc[cols],
            gene_groups=self.gene_groups,
            controls=self.controls[rows],
            size_factors=sf,
            source=self.source,
            dropped=self.dropped,
        )

    def with_size_factors(self, size_factors: str | Sequence[float]) -> ScreenData:
        """Return a copy with size factors computed by another method (or given per sample)."""
        return ScreenData(
            self.counts,
            self.sgrnas,
            self.genes_of_sgrna,
            self.samples,
            gene_groups=self.gene_groups,
            controls=self.controls,
            size_factors=size_factors,
            source=self.source,
            dropped=self.dropped,
        )

    # ------------------------------------------------------------------ repr
    def __repr__(self) -> str:
        depth = self.depth
        lines = [
            f"ScreenData: {self.n_sgrnas:,} sgRNAs, {self.n_genes:,} genes, "
            f"{self.n_samples} samples ({len(self.pool_samples)} pool)"
            + (f", {len(self.group_names)} gene groups" if self.gene_groups is not None else "")
            + (f", {int(self.controls.sum()):,} control sgRNAs" if self.controls.any() else ""),
        ]
        if self.source:
            lines.append(f"  source: {self.source}")
        lines.append(f"  size factors: {self.size_factor_method}")
        if len(self.dropped):
            lines.append(f"  dropped: {len(self.dropped):,} sgRNAs (see .dropped)")
        width = max(len(str(s)) for s in self.samples.index)
        for name, row in self.samples.iterrows():
            tag = " [pool]" if row[POOL] else ""
            lines.append(
                f"  {str(name):<{width}}  condition={row[CONDITION]!s:<12} "
                f"depth={depth[name]:>12,}  size_factor={self.size_factors[name]:.3f}{tag}"
            )
        return "\n".join(lines)
