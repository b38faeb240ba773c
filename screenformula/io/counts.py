"""Read sgRNA count tables (MAGeCK wide or long / tidy layout) into a `ScreenData`."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from screenformula._constants import COUNT, GENE, SAMPLE, SGRNA
from screenformula.errors import ScreenDataError
from screenformula.io.advice import AdvisedDataError
from screenformula.io.sample_sheet import (
    default_sample_sheet,
    read_gene_groups,
    read_sample_sheet,
)
from screenformula.io.screen_data import MAX_COUNT, ScreenData, empty_dropped
from screenformula.io.text import (
    READ_ERRORS,
    PathLike,
    Where,
    blank_rows,
    clean_labels,
    format_names,
    is_path,
    open_text,
    read_delimited,
    unreadable,
)

LAYOUTS = ("auto", "wide", "long")
NAN_POLICIES = ("error", "drop")
_LONG_COLUMNS = (SGRNA, GENE, SAMPLE, COUNT)
_ID_FILE_HEADERS = frozenset({"sgrna", "sgrna_id", "guide", "id", "gene", "genes", "name"})


@dataclass
class _Parsed:
    """A validated count table before the sample sheet, controls and NaN policy."""

    sgrnas: np.ndarray  # object array of str, one per guide
    genes: np.ndarray  # object array of str
    samples: list[str]  # sample names in table order
    counts: np.ndarray  # int64 (n_guide, n_sample); 0 where missing
    missing: np.ndarray  # bool (n_guide, n_sample)


def read_counts(
    source: PathLike | pd.DataFrame,
    samples: PathLike | pd.DataFrame | Mapping[str, Any] | None = None,
    *,
    sep: str | None = None,
    layout: str = "auto",
    gene_groups: PathLike | pd.Series | pd.DataFrame | Mapping[str, Any] | None = None,
    controls: str | os.PathLike[str] | Iterable[str] | np.ndarray | None = None,
    size_factors: str | Sequence[float] | np.ndarray = "median",
    nan: str = "error",
) -> ScreenData:
    """Read and validate an sgRNA x sample count table.

    Parameters
    ----------
    source : str, PathLike or DataFrame
        The count table: a file (``.gz``, ``.bz2``, ``.xz`` decompressed) or a DataFrame.
        Two layouts are understood:

        * **wide** (MAGeCK): first column the sgRNA id, second the gene label (whatever
          their headers), then one integer count column per sample;
        * **long** (tidy): columns ``sgrna``, ``gene``, ``sample``, ``count`` (any case),
          one row per sgRNA and sample; other columns are ignored.
    samples : str, PathLike, DataFrame or dict, optional
        The sample sheet (see :func:`screenformula.io.read_sample_sheet`). It must list
        exactly the samples of the table, in any order. Without one, each sample is its
        own condition and none is a pool sample.
    sep : str, optional
        Field separator of a file; sniffed from the header line (tab, comma, semicolon,
        else whitespace) when None.
    layout : {"auto", "wide", "long"}
        ``"auto"`` picks long when the columns include sgrna, gene, sample and count.
    gene_groups : str, PathLike, Series, DataFrame or dict, optional
        Gene -> group, read with :func:`screenformula.io.read_gene_groups`.
    controls : str, PathLike, iterable of str or boolean array, optional
        Negative-control guides: a gene label (all its guides) or an sgRNA id, a list or
        set of sgRNA ids and/or gene labels, a one-column file of such ids (MAGeCK's
        ``control_sgrna.txt`` / ``control_gene.txt``; blank lines and ``#`` comments
        skipped), or one boolean per guide. Each entry that is an sgRNA id marks that
        guide and each that is a gene label marks every guide of the gene.
    size_factors : str or array-like, default "median"
        ``"median"``, ``"total"``, ``"control"``, ``"none"`` or one value per sample.
    nan : {"error", "drop"}
        What to do with a missing (NaN / empty) count: raise, or drop the guide and
        record it in ``ScreenData.dropped``.

    Returns
    -------
    ScreenData

    Raises
    ------
    ScreenDataError
        With one line naming the file, its line number (header = line 1) and the
        sample column of the first bad cell: a count that is negative, not an integer
        (``2.5``; ``239.0`` is fine), 2^31 or more, not a number or missing. Also:
        duplicate sgRNA ids (naming both lines), an empty gene, an empty table,
        duplicate sample columns; in the long layout a repeated (sgrna, sample) pair, a
        guide whose gene changes between rows, or a missing (sgrna, sample) combination;
        samples missing from the table or from the sheet; unknown control ids; a sample
        without reads (unless ``size_factors="none"``). An error whose fix is one of the
        settings above says which (``use nan='drop'``) and is an `AdvisedDataError`.
    """
    if layout not in LAYOUTS:
        raise ScreenDataError(f"unknown layout {layout!r}: choose one of {', '.join(LAYOUTS)}")
    if nan not in NAN_POLICIES:
        raise ScreenDataError(f"unknown nan policy {nan!r}: choose 'error' or 'drop'")

    if is_path(source):
        frame, where, layout = _read_file(source, sep, layout)  # type: ignore[arg-type]
        source_name: str | None = os.fspath(source)  # type: ignore[arg-type]
    elif isinstance(source, pd.DataFrame):
        frame, where, layout = _prepare_frame(source, layout)
        source_name = None
    else:
        raise ScreenDataError(
            f"count table must be a file path or a DataFrame, not {type(source).__name__}"
        )

    if layout == "long":
        parsed = _parse_long(frame, where, nan)
    else:
        parsed = _parse_wide(frame, where, nan)

    # Sample sheet: exactly the table's samples, reordered to the table's columns.
    if samples is None:
        sheet = default_sample_sheet(parsed.samples)
    else:
        sheet = read_sample_sheet(samples)
        sheet_name = sheet.attrs.get("source", "sample sheet")
        in_sheet = set(sheet.index)
        not_in_sheet = [s for s in parsed.samples if s not in in_sheet]
        if not_in_sheet:
            raise ScreenDataError(
                f"{sheet_name}: sample(s) of the count table missing from the sample sheet: "
                f"{format_names(not_in_sheet)}"
            )
        in_table = set(parsed.samples)
        not_in_table = [s for s in sheet.index if s not in in_table]
        if not_in_table:
            raise ScreenDataError(
                f"{sheet_name}: sample(s) of the sample sheet missing from the count table "
                f"{where.name}: {format_names(not_in_table)}"
            )
        attrs = dict(sheet.attrs)
        sheet = sheet.loc[parsed.samples]
        sheet.attrs.update(attrs)

    control_mask = _control_mask(controls, parsed.sgrnas, parsed.genes)
    groups = read_gene_groups(gene_groups) if gene_groups is not None else None

    dropped = empty_dropped()
    counts, sgrnas, genes = parsed.counts, parsed.sgrnas, parsed.genes
    incomplete = parsed.missing.any(axis=1)
    if incomplete.any():  # only reachable with nan="drop"
        names = np.asarray(parsed.samples, dtype=object)
        reasons = [
            "missing count in " + ", ".join(names[row]) for row in parsed.missing[incomplete]
        ]
        dropped = pd.DataFrame(
            {SGRNA: sgrnas[incomplete], GENE: genes[incomplete], "reason": reasons}
        )
        if incomplete.all():
            raise AdvisedDataError(
                where.name,
                "every sgRNA has a missing count, so {nan} leaves nothing",
                {"nan": "drop"},
            )
        keep = ~incomplete
        counts, sgrnas, genes = counts[keep], sgrnas[keep], genes[keep]
        if control_mask is not None:
            control_mask = control_mask[keep]

    return ScreenData(
        counts,
        sgrnas,
        genes,
        sheet,
        gene_groups=groups,
        controls=control_mask,
        size_factors=size_factors,
        source=source_name,
        dropped=dropped,
    )


# --------------------------------------------------------------------------- loading
def _long_columns(columns: Iterable[object]) -> dict[str, str]:
    """Map sgrna/gene/sample/count to the actual (any-case) column names found."""
    found: dict[str, str] = {}
    for col in columns:
        key = str(col).strip().lower()
        if key in _LONG_COLUMNS and key not in found:
            found[key] = str(col)
    return found


def _choose_layout(columns: list[str], layout: str, name: str) -> str:
    found = _long_columns(columns)
    if layout == "auto":
        return "long" if len(found) == len(_LONG_COLUMNS) else "wide"
    if layout == "long" and len(found) < len(_LONG_COLUMNS):
        missing = [c for c in _LONG_COLUMNS if c not in found]
        raise ScreenDataError(
            f"{name}: a long count table needs columns sgrna, gene, sample, count; "
            f"missing {', '.join(missing)}"
        )
    return layout


def _read_file(path: PathLike, sep: str | None, layout: str) -> tuple[pd.DataFrame, Where, str]:
    chosen: list[str] = []

    def text_columns(cols: list[str]) -> list[int]:
        lay = _choose_layout(cols, layout, Path(path).name)
        chosen.append(lay)
        if lay == "long":
            found = _long_columns(cols)
            return [cols.index(found[key]) for key in (SGRNA, GENE, SAMPLE)]
        return [0, 1]

    frame, where = read_delimited(
        path, sep=sep, header=True, text_columns=text_columns, what="count table"
    )
    return frame, where, chosen[0]


def _prepare_frame(source: pd.DataFrame, layout: str) -> tuple[pd.DataFrame, Where, str]:
    frame = source
    names = [str(c).strip() for c in frame.columns]
    if len(frame.columns) and not isinstance(frame.index, pd.RangeIndex):
        if any(n is not None for n in frame.index.names):  # ids kept in a named index
            frame = frame.reset_index()
            names = [str(c).strip() for c in frame.columns]
    for pos, col in enumerate(names):
        if col in names[:pos]:
            raise ScreenDataError(f"count table: duplicate column {col!r}")
    frame = frame.set_axis(pd.Index(names, dtype=object), axis=1)
    layout = _choose_layout(names, layout, "count table")
    where: Where = Where("count table")
    blank = blank_rows(frame)
    if blank.any():  # all-empty rows are skipped; name the others by their original position
        keep = ~blank
        frame = frame.loc[keep].reset_index(drop=True)
        where = _PositionWhere("count table", np.flatnonzero(keep))
    return frame, where, layout


class _PositionWhere(Where):
    """Rows of a DataFrame named by their 1-based position in the original frame."""

    def __init__(self, name: str, positions: np.ndarray) -> None:
        super().__init__(name, None)
        self.positions = positions

    def ref(self, i: int) -> str:
        return f"row {int(self.positions[i]) + 1}"


# --------------------------------------------------------------------------- parsing
def _check_empty(frame: pd.DataFrame, n_samples: int, where: Where) -> None:
    if n_samples == 0:
        raise ScreenDataError(
            f"{where.name}: no sample columns (expected sgRNA id, gene, then one count "
            "column per sample)"
        )
    if len(frame) == 0:
        raise ScreenDataError(f"{where.name}: the table has no rows")


def _parse_wide(frame: pd.DataFrame, where: Where, nan: str) -> _Parsed:
    columns = [str(c) for c in frame.columns]
    if len(columns) < 2:
        raise ScreenDataError(
            f"{where.name}: no sample columns (expected sgRNA id, gene, then one count "
            "column per sample)"
        )
    # Trailing separators give unnamed, empty last columns: ignore them.
    end = len(columns)
    while end > 2 and columns[end - 1] == "" and frame.iloc[:, end - 1].isna().all():
        end -= 1
    sample_cols = columns[2:end]
    for pos, col in enumerate(sample_cols):
        if col == "":
            raise ScreenDataError(f"{where.name}: column {pos + 3} has no sample name")
    _check_empty(frame, len(sample_cols), where)

    sgrnas, no_id = clean_labels(frame.iloc[:, 0])
    genes, no_gene = clean_labels(frame.iloc[:, 1])
    if no_id.any():
        raise ScreenDataError(f"{where.row(int(np.argmax(no_id)))}: empty sgRNA id")
    if no_gene.any():
        i = int(np.argmax(no_gene))
        raise ScreenDataError(f"{where.row(i)}: sgRNA {sgrnas[i]!r} has an empty gene")
    _check_unique_ids(sgrnas, where)

    def cell(i: int, j: int) -> str:
        return where.cell(i, sample_cols[j])

    counts, missing = _count_matrix(frame.iloc[:, 2:end], cell, nan)
    return _Parsed(sgrnas, genes, sample_cols, counts, missing)


def _check_unique_ids(sgrnas: np.ndarray, where: Where) -> None:
    index = pd.Index(sgrnas)
    if not index.has_duplicates:
        return
    i = int(np.argmax(index.duplicated()))
    j = int(np.argmax(sgrnas == sgrnas[i]))
    raise ScreenDataError(
        f"{where.row(i)}: duplicate sgRNA id {sgrnas[i]!r} (first on {where.ref(j)})"
    )


def _parse_long(frame: pd.DataFrame, where: Where, nan: str) -> _Parsed:
    found = _long_columns(frame.columns)
    if len(frame) == 0:
        raise ScreenDataError(f"{where.name}: the table has no rows")
    sgrna_all, no_id = clean_labels(frame[found[SGRNA]])
    gene_all, no_gene = clean_labels(frame[found[GENE]])
    sample_all, no_sample = clean_labels(frame[found[SAMPLE]])
    if no_id.any():
        raise ScreenDataError(f"{where.row(int(np.argmax(no_id)))}: empty sgRNA id")
    if no_gene.any():
        i = int(np.argmax(no_gene))
        raise ScreenDataError(f"{where.row(i)}: sgRNA {sgrna_all[i]!r} has an empty gene")
    if no_sample.any():
        raise ScreenDataError(f"{where.row(int(np.argmax(no_sample)))}: empty sample name")

    count_col = found[COUNT]

    def cell(i: int, j: int) -> str:
        return f"{where.cell(i, count_col)} (sample {sample_all[i]!r})"

    values, value_missing = _count_matrix(frame[[count_col]], cell, nan)
    values, value_missing = values[:, 0], value_missing[:, 0]

    s_codes, s_names = pd.factorize(sgrna_all)
    j_codes, j_names = pd.factorize(sample_all)
    n_s, n_j = len(s_names), len(j_names)
    key = s_codes.astype(np.int64) * n_j + j_codes
    dup = pd.Index(key).duplicated()
    if dup.any():
        i = int(np.argmax(dup))
        first = int(np.argmax(key == key[i]))
        raise ScreenDataError(
            f"{where.row(i)}: sgRNA {sgrna_all[i]!r} has a second count for sample "
            f"{sample_all[i]!r} (first on {where.ref(first)})"
        )
    _, first_row = np.unique(s_codes, return_index=True)  # codes follow first appearance
    first_gene = gene_all[first_row]
    changed = gene_all != first_gene[s_codes]
    if changed.any():
        i = int(np.argmax(changed))
        raise ScreenDataError(
            f"{where.row(i)}: sgRNA {sgrna_all[i]!r} has gene {gene_all[i]!r} here but "
            f"{first_gene[s_codes[i]]!r} on {where.ref(int(first_row[s_codes[i]]))}"
        )
    if len(key) < n_s * n_j:
        present = np.zeros((n_s, n_j), dtype=bool)
        present[s_codes, j_codes] = True
        s, j = divmod(int(np.argmax(~present.reshape(-1))), n_j)
        raise ScreenDataError(
            f"{where.name}: sgRNA {s_names[s]!r} has no row for sample {j_names[j]!r} "
            "(a long table needs one row per sgRNA and sample)"
        )
    counts = np.zeros((n_s, n_j), dtype=np.int64)
    counts[s_codes, j_codes] = values
    missing = np.zeros((n_s, n_j), dtype=bool)
    missing[s_codes, j_codes] = value_missing
    return _Parsed(
        np.asarray(s_names, dtype=object),
        np.asarray(first_gene, dtype=object),
        [str(s) for s in j_names],
        counts,
        missing,
    )


_TOO_LARGE = f"is too large (counts must be below 2^31 = {MAX_COUNT:,})"


def _format_count(value: float) -> str:
    if np.isfinite(value) and value == np.floor(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _count_matrix(
    block: pd.DataFrame, cell: Callable[[int, int], str], nan: str
) -> tuple[np.ndarray, np.ndarray]:
    """Validate the count columns of ``block`` as one int64 matrix plus a missing mask.

    Columns are taken by position (names may repeat). ``cell(i, j)`` names row ``i``,
    column ``j`` in messages.

    The first bad cell in file order (row by row, left to right) is reported; missing
    cells only count as bad with ``nan="error"``.
    """
    n, k = block.shape
    dtypes = list(block.dtypes)
    if all(isinstance(d, np.dtype) and np.issubdtype(d, np.integer) for d in dtypes):
        # fast path: plain numpy integers, nothing can be missing
        counts = block.to_numpy(dtype=np.int64)
        bad = (counts < 0) | (counts >= MAX_COUNT)
        if bad.any():
            i, j = divmod(int(np.argmax(bad.reshape(-1))), k)
            why = "is negative" if counts[i, j] < 0 else _TOO_LARGE
            raise ScreenDataError(f"{cell(i, j)}: count {counts[i, j]} {why}")
        return counts, np.zeros((n, k), dtype=bool)

    values = np.empty((n, k), dtype=float)
    text = np.zeros((n, k), dtype=bool)
    for j in range(k):
        series = block.iloc[:, j]
        if pd.api.types.is_bool_dtype(series):  # True/False are not counts
            values[:, j] = np.nan
            text[:, j] = series.notna().to_numpy()
        elif not pd.api.types.is_numeric_dtype(series):
            as_text = series.astype(object)
            number = pd.to_numeric(as_text, errors="coerce")
            values[:, j] = pd.Series(number).to_numpy(dtype=float, na_value=np.nan)
            blank = (
                series.isna().to_numpy()
                | (as_text.fillna("").astype(str).str.strip() == "").to_numpy()
            )
            text[:, j] = np.isnan(values[:, j]) & ~blank
        else:
            values[:, j] = series.to_numpy(dtype=float, na_value=np.nan)
    missing = np.isnan(values) & ~text
    with np.errstate(invalid="ignore"):
        infinite = np.isinf(values)
        fractional = np.isfinite(values) & (values != np.floor(values))
        negative = values < 0
        huge = np.isfinite(values) & (values >= MAX_COUNT)
    bad = text | infinite | fractional | negative | huge
    if nan == "error":
        bad |= missing
    if bad.any():
        i, j = divmod(int(np.argmax(bad.reshape(-1))), k)
        value = values[i, j]
        if text[i, j]:
            why = f"count {str(block.iloc[i, j]).strip()!r} is not a number"
        elif missing[i, j]:
            raise AdvisedDataError(
                cell(i, j), "count is missing (use {nan} to drop such sgRNAs)", {"nan": "drop"}
            )
        elif infinite[i, j]:
            why = f"count {value} is not a finite number"
        elif fractional[i, j]:
            why = f"count {_format_count(value)} is not an integer"
        elif negative[i, j]:
            why = f"count {_format_count(value)} is negative"
        else:
            why = f"count {_format_count(value)} {_TOO_LARGE}"
        raise ScreenDataError(f"{cell(i, j)}: {why}")
    counts = np.where(missing, 0.0, values).astype(np.int64)
    return counts, missing


# --------------------------------------------------------------------------- controls
def _control_mask(
    controls: str | os.PathLike[str] | Iterable[str] | np.ndarray | None,
    sgrnas: np.ndarray,
    genes: np.ndarray,
) -> np.ndarray | None:
    """Resolve the ``controls`` argument of :func:`read_counts` to one bool per guide."""
    if controls is None:
        return None
    id_index, gene_index = pd.Index(sgrnas), pd.Index(genes)
    label = "controls"
    if isinstance(controls, str | os.PathLike):
        text = controls if isinstance(controls, str) else None
        if text is not None and (text in id_index or text in gene_index):
            entries = [text]
        elif Path(controls).is_file():
            entries, label = _read_id_file(controls, id_index, gene_index), Path(controls).name
        elif text is None:
            raise ScreenDataError(f"controls file not found: {os.fspath(controls)}")
        else:
            raise ScreenDataError(
                f"controls: {text!r} is not an sgRNA id, a gene label or an existing file"
            )
    else:
        array = np.asarray(
            sorted(controls) if isinstance(controls, set | frozenset) else list(controls)  # type: ignore[arg-type]
        )
        if array.dtype == bool:
            if array.shape != (len(sgrnas),):
                raise ScreenDataError(
                    f"controls: a boolean mask needs one value per sgRNA ({len(sgrnas)}), "
                    f"got {array.size}"
                )
            return array
        entries = [str(x).strip() for x in array.reshape(-1)]
    if not entries:
        raise ScreenDataError(f"{label}: no control ids given")
    known_id = id_index.isin(entries)
    known_gene = gene_index.isin(entries)
    unknown = [e for e in dict.fromkeys(entries) if e not in id_index and e not in gene_index]
    if unknown:
        raise ScreenDataError(
            f"{label}: {len(unknown)} control id(s) are neither an sgRNA id nor a gene label "
            f"of the count table: {format_names(unknown)}"
        )
    return np.asarray(known_id | known_gene, dtype=bool)


def _read_id_file(path: PathLike, id_index: pd.Index, gene_index: pd.Index) -> list[str]:
    """Ids from a one-id-per-line file (first field of each line; ``#`` lines skipped)."""
    name = Path(path).name
    entries: list[str] = []
    try:
        with open_text(path) as handle:
            for line in handle:
                text = line.strip()
                if not text or text.startswith("#"):
                    continue
                entries.append(text.replace(",", "\t").split("\t")[0].split()[0].strip())
    except READ_ERRORS as err:
        raise unreadable(path, err) from None
    if (
        entries
        and entries[0].lower() in _ID_FILE_HEADERS
        and entries[0] not in id_index
        and entries[0] not in gene_index
    ):
        entries = entries[1:]  # a header line
    if not entries:
        raise ScreenDataError(f"{name}: the controls file lists no ids")
    return entries
