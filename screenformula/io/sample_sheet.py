"""Sample sheets (sample -> condition, replicate, batch, time, pool) and gene groups.

The generic delimited-text helpers it shares with :mod:`screenformula.io.counts` live in
:mod:`screenformula.io.text`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from screenformula._constants import (
    BATCH,
    CONDITION,
    COUNT,
    GENE,
    GROUP,
    POOL,
    POOL_LABELS,
    REPLICATE,
    SAMPLE,
    SGRNA,
    SIZE_FACTOR,
    TIME,
)
from screenformula.errors import ScreenDataError
from screenformula.io.text import (
    PathLike,
    Where,
    clean_labels,
    format_names,
    is_path,
    read_delimited,
)

#: Sample-sheet columns matched case-insensitively and renamed to these spellings.
KNOWN_SHEET_COLUMNS = (SAMPLE, CONDITION, REPLICATE, BATCH, TIME, POOL)
#: Sample-sheet columns kept as text labels (never parsed as numbers).
_LABEL_COLUMNS = (SAMPLE, CONDITION, REPLICATE, BATCH)
#: Names the long table and the model already use; a sheet column may not take them.
RESERVED_NAMES = frozenset({SGRNA, GENE, GROUP, COUNT, SIZE_FACTOR})

_VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TRUE = frozenset({"true", "t", "yes", "y", "1", "1.0"})
_FALSE = frozenset({"false", "f", "no", "n", "0", "0.0"})
_GENE_HEADERS = frozenset({"gene", "genes", "gene_id", "gene_name", "gene_symbol", "symbol", "id"})
_GROUP_HEADERS = frozenset(
    {"group", "groups", "gene_group", "category", "class", "label", "type", "set"}
)


def _is_listlike(value: object) -> bool:
    return isinstance(value, list | tuple | set | frozenset | np.ndarray | pd.Series | pd.Index)


# --------------------------------------------------------------------------- sample sheet
def read_sample_sheet(
    source: PathLike | pd.DataFrame | Mapping[str, Any],
) -> pd.DataFrame:
    """Read and validate a sample sheet.

    Parameters
    ----------
    source : str, PathLike, DataFrame or dict
        A TSV/CSV file (separator sniffed; ``.gz`` allowed), a DataFrame, a dict of
        columns (``{"sample": [...], "condition": [...]}``) or a dict mapping each
        sample name to its condition (``{"T0": "pool", "A": "screen"}``). A DataFrame
        whose index is named ``sample`` (such as ``ScreenData.samples``) is accepted too.

    Returns
    -------
    DataFrame
        Indexed by sample name (``str``, index name ``sample``), with a text
        ``condition`` column, a boolean ``pool`` column and every other column of the
        source. ``replicate`` and ``batch`` are kept as text labels; ``time`` is numeric
        when every value is a number. ``attrs["source"]`` names where it came from.

    Raises
    ------
    ScreenDataError
        With one line naming the file and row: no ``sample`` or ``condition`` column,
        a missing or duplicate sample name, a missing value, a ``pool`` value that is
        not true/false/yes/no/1/0, or a column name that is not a valid formula
        variable name (letters, digits and underscores, not starting with a digit).

    Notes
    -----
    Column names ``sample``, ``condition``, ``replicate``, ``batch``, ``time`` and
    ``pool`` are matched case-insensitively. Without a ``pool`` column, a sample is a
    pool (plasmid / T0) sample when its lower-cased condition is one of
    ``screenformula._constants.POOL_LABELS`` (``pool``, ``plasmid``, ``t0``, ...).
    """
    if is_path(source):
        frame, where = read_delimited(
            source,  # type: ignore[arg-type]
            sep=None,
            header=True,
            text_columns=lambda cols: [
                pos for pos, c in enumerate(cols) if c.lower() in _LABEL_COLUMNS
            ],
            what="sample sheet",
        )
    elif isinstance(source, pd.DataFrame):
        frame, where = source.copy(), Where("sample sheet")
        if SAMPLE not in {str(c).strip().lower() for c in frame.columns}:
            idx_name = frame.index.name
            if isinstance(idx_name, str) and idx_name.strip().lower() == SAMPLE:
                frame = frame.reset_index()
    elif isinstance(source, Mapping):
        frame, where = _sheet_from_dict(source), Where("sample sheet")
    else:
        raise ScreenDataError(
            f"sample sheet must be a file path, a DataFrame or a dict, not {type(source).__name__}"
        )
    return _normalize_sheet(frame, where)


def _sheet_from_dict(source: Mapping[str, Any]) -> pd.DataFrame:
    if len(source) == 0:
        raise ScreenDataError("sample sheet: the dict is empty")
    values = list(source.values())
    if all(_is_listlike(v) for v in values):
        lengths = {len(v) for v in values}
        if len(lengths) != 1:
            raise ScreenDataError("sample sheet: the dict's columns have different lengths")
        return pd.DataFrame({str(k): list(v) for k, v in source.items()})
    if any(_is_listlike(v) for v in values):
        raise ScreenDataError(
            "sample sheet: give a dict of columns ({'sample': [...], 'condition': [...]}) "
            "or a dict of sample -> condition, not a mix"
        )
    return pd.DataFrame({SAMPLE: list(source.keys()), CONDITION: values})


def _normalize_sheet(frame: pd.DataFrame, where: Where) -> pd.DataFrame:
    name = where.name
    # Column names: canonical spelling for the known ones, formula-safe for the rest.
    columns: list[str] = []
    for col in frame.columns:
        text = str(col).strip()
        columns.append(text.lower() if text.lower() in KNOWN_SHEET_COLUMNS else text)
    for pos, col in enumerate(columns):
        if col in columns[:pos]:
            raise ScreenDataError(f"{name}: the sample sheet has two {col!r} columns")
    frame = frame.set_axis(pd.Index(columns, dtype=object), axis=1)
    if SAMPLE not in frame.columns:
        found = ", ".join(repr(c) for c in columns) or "none"
        raise ScreenDataError(f"{name}: the sample sheet needs a 'sample' column (found: {found})")
    if CONDITION not in frame.columns:
        raise ScreenDataError(f"{name}: the sample sheet needs a 'condition' column")
    for col in columns:
        if col == SAMPLE:
            continue
        if not _VARIABLE_NAME.match(col):
            raise ScreenDataError(
                f"{name}: sample sheet column {col!r} is not a valid formula variable name "
                "(use letters, digits and underscores, not starting with a digit)"
            )
        if col in RESERVED_NAMES:
            raise ScreenDataError(
                f"{name}: sample sheet column {col!r} clashes with a built-in variable "
                f"({', '.join(sorted(RESERVED_NAMES))}); rename it"
            )
    if len(frame) == 0:
        raise ScreenDataError(f"{name}: the sample sheet has no rows")

    samples, empty = clean_labels(frame[SAMPLE])
    if empty.any():
        raise ScreenDataError(f"{where.row(int(np.argmax(empty)))}: missing sample name")
    first_seen: dict[str, int] = {}
    for i, sample in enumerate(samples):
        if sample in first_seen:
            raise ScreenDataError(
                f"{where.row(i)}: duplicate sample {sample!r} "
                f"(first on {where.ref(first_seen[sample])})"
            )
        first_seen[sample] = i

    out = pd.DataFrame(index=pd.Index(samples, name=SAMPLE, dtype=object))
    for col in columns:
        if col == SAMPLE:
            continue
        values = frame[col]
        if col in _LABEL_COLUMNS:
            labels, missing = clean_labels(values)
        else:
            missing = values.isna().to_numpy()
            if not pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
                missing = missing | (values.astype(object).astype(str).str.strip() == "").to_numpy()
        if missing.any():
            i = int(np.argmax(missing))
            what = "condition" if col == CONDITION else f"value in column {col!r}"
            raise ScreenDataError(f"{where.row(i)}: missing {what} for sample {samples[i]!r}")
        if col in _LABEL_COLUMNS:
            out[col] = labels
        elif col == POOL:
            out[col] = _parse_pool(values, samples, where)
        elif col == TIME:
            try:
                out[col] = pd.to_numeric(values).to_numpy()
            except (ValueError, TypeError):
                out[col] = values.to_numpy()
        else:
            out[col] = values.to_numpy()
    if POOL not in out.columns:
        out[POOL] = np.array([c.lower() in POOL_LABELS for c in out[CONDITION]], dtype=bool)
    out.attrs["source"] = name
    return out


def _parse_pool(values: pd.Series, samples: np.ndarray, where: Where) -> np.ndarray:
    result = np.zeros(len(values), dtype=bool)
    for i, value in enumerate(values.to_numpy()):
        if isinstance(value, bool | np.bool_):
            result[i] = bool(value)
            continue
        text = str(value).strip().lower()
        if text in _TRUE:
            result[i] = True
        elif text not in _FALSE:
            raise ScreenDataError(
                f"{where.cell(i, POOL)}: pool value {value!r} for sample {samples[i]!r} is not "
                "true/false, yes/no or 1/0"
            )
    return result


def check_conditions(sheet: pd.DataFrame, allowed: Iterable[str]) -> None:
    """Check that every condition of a sample sheet is one of ``allowed``.

    Parameters
    ----------
    sheet : DataFrame
        A sample sheet as returned by :func:`read_sample_sheet`.
    allowed : iterable of str
        The condition labels that may appear.

    Raises
    ------
    ScreenDataError
        ``unknown condition 'X' in sample sheet row N`` for the first row (1-based,
        in sheet order) whose condition is not allowed.
    """
    allowed = [str(a) for a in allowed]
    known = set(allowed)
    if CONDITION not in sheet.columns:
        raise ScreenDataError("the sample sheet needs a 'condition' column")
    for i, condition in enumerate(sheet[CONDITION].astype(str)):
        if condition not in known:
            raise ScreenDataError(
                f"unknown condition {condition!r} in sample sheet row {i + 1} "
                f"(sample {str(sheet.index[i])!r}; allowed: {format_names(allowed, 10)})"
            )


def default_sample_sheet(samples: Iterable[str]) -> pd.DataFrame:
    """Build a sheet with ``condition`` = the sample name and ``pool`` = False for every sample."""
    names = [str(s) for s in samples]
    return pd.DataFrame(
        {CONDITION: np.array(names, dtype=object), POOL: np.zeros(len(names), dtype=bool)},
        index=pd.Index(names, name=SAMPLE, dtype=object),
    )


# --------------------------------------------------------------------------- gene groups
def read_gene_groups(
    source: PathLike | pd.Series | pd.DataFrame | Mapping[str, Any],
) -> pd.Series:
    """Read a gene -> group mapping.

    Parameters
    ----------
    source : str, PathLike, Series, DataFrame or dict
        A two-column file (gene, group; tab, comma or whitespace separated; a header
        line is optional and recognised by names such as ``gene`` / ``group``), a
        Series indexed by gene, a DataFrame with ``gene`` and ``group`` columns (or
        exactly two columns), a dict ``{gene: group}`` or a dict of lists
        ``{group: [gene, ...]}``.

    Returns
    -------
    Series
        Group label (``str``) indexed by gene (index name ``gene``, series name ``group``),
        in first-seen order. A gene listed twice with the same group appears once.

    Raises
    ------
    ScreenDataError
        A gene listed in two different groups (naming it and both places), an empty
        gene or group, or a file without two columns.
    """
    if is_path(source):
        genes, groups, where = _gene_groups_from_file(source)  # type: ignore[arg-type]
    elif isinstance(source, pd.Series):
        genes, groups, where = source.index.to_numpy(), source.to_numpy(), Where("gene groups")
    elif isinstance(source, pd.DataFrame):
        genes, groups = _gene_group_columns(source, "gene groups")
        where = Where("gene groups")
    elif isinstance(source, Mapping):
        values = list(source.values())
        if values and all(_is_listlike(v) for v in values):
            genes = np.array([g for v in values for g in v], dtype=object)
            groups = np.array([k for k, v in source.items() for _ in v], dtype=object)
        else:
            genes, groups = np.array(list(source.keys()), dtype=object), np.array(values, object)
        where = Where("gene groups")
    else:
        raise ScreenDataError(
            "gene groups must be a file path, a Series, a DataFrame or a dict, "
            f"not {type(source).__name__}"
        )
    gene_text, gene_empty = clean_labels(genes)
    group_text, group_empty = clean_labels(groups)
    if len(gene_text) == 0:
        raise ScreenDataError(f"{where.name}: no genes listed")
    bad = gene_empty | group_empty
    if bad.any():
        i = int(np.argmax(bad))
        what = "gene" if gene_empty[i] else f"group for gene {gene_text[i]!r}"
        raise ScreenDataError(f"{where.row(i)}: empty {what}")
    seen: dict[str, int] = {}
    keep = np.zeros(len(gene_text), dtype=bool)
    for i, (gene, group) in enumerate(zip(gene_text, group_text, strict=True)):
        j = seen.get(gene)
        if j is None:
            seen[gene] = i
            keep[i] = True
        elif group_text[j] != group:
            raise ScreenDataError(
                f"{where.name}: gene {gene!r} is listed in two groups "
                f"({group_text[j]!r} on {where.ref(j)}, {group!r} on {where.ref(i)})"
            )
    return pd.Series(
        group_text[keep], index=pd.Index(gene_text[keep], name=GENE, dtype=object), name=GROUP
    )


def _gene_group_columns(frame: pd.DataFrame, name: str) -> tuple[np.ndarray, np.ndarray]:
    lower = {str(c).strip().lower(): c for c in frame.columns}
    if GENE in lower and GROUP in lower:
        return frame[lower[GENE]].to_numpy(), frame[lower[GROUP]].to_numpy()
    if frame.shape[1] != 2:
        raise ScreenDataError(f"{name}: expected two columns (gene, group), found {frame.shape[1]}")
    return frame.iloc[:, 0].to_numpy(), frame.iloc[:, 1].to_numpy()


def _gene_groups_from_file(path: PathLike) -> tuple[np.ndarray, np.ndarray, Where]:
    frame, where = read_delimited(
        path,
        sep=None,
        header=False,
        text_columns=lambda cols: range(len(cols)),
        what="gene groups",
    )
    name = where.name
    if len(frame) == 0:
        raise ScreenDataError(f"{name}: no genes listed")
    first = [str(v).strip().lower() for v in frame.iloc[0]]
    has_header = bool(
        first
        and (
            first[0] in _GENE_HEADERS
            or (len(first) > 1 and first[1] in _GROUP_HEADERS)
            or {GENE, GROUP} <= set(first)
        )
    )
    if has_header:
        header = [str(v).strip() for v in frame.iloc[0]]
        frame = frame.iloc[1:].set_axis(pd.Index(header, dtype=object), axis=1)
        where = where.subset(np.arange(1, len(where.lines)))  # type: ignore[arg-type]
    elif frame.shape[1] != 2:
        raise ScreenDataError(f"{name}: expected two columns (gene, group), found {frame.shape[1]}")
    genes, groups = _gene_group_columns(frame, name)
    return genes, groups, where
