"""Generic delimited-text reading shared by the readers of :mod:`screenformula.io`.

Opening (possibly compressed) text files, separator sniffing, header parsing, reading a
table once with pandas while keeping file line numbers, label cleaning, and the
``file line N`` / ``DataFrame row N`` wording of error messages (`Where`).
"""

from __future__ import annotations

import bz2
import csv
import gzip
import lzma
import os
import re
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from screenformula.errors import ScreenDataError

PathLike = str | os.PathLike[str]

#: What reading a (possibly compressed) text file can raise besides a parse error.
READ_ERRORS = (UnicodeDecodeError, OSError, EOFError, lzma.LZMAError, zlib.error)
_COMPRESSED = (".gz", ".bz2", ".xz")

# What counts as a missing cell in a numeric column (pandas' defaults, minus nothing).
NA_STRINGS = ["", "NA", "N/A", "n/a", "NaN", "nan", "-nan", "NULL", "null", "None", "#N/A", "<NA>"]


class Where:
    """Names a row of a table in messages: ``sample.txt line 17`` or ``count table row 16``.

    Parameters
    ----------
    name : str
        The file name, or a word for an in-memory table (``"count table"``).
    lines : ndarray of int, optional
        The 1-based line number in the file of each row (header = line 1); None for
        DataFrames, whose rows are named by 1-based position.
    """

    def __init__(self, name: str, lines: np.ndarray | None = None) -> None:
        self.name = name
        self.lines = lines

    def ref(self, i: int) -> str:
        """``line N`` or ``row N`` for row position ``i`` (0-based)."""
        if self.lines is None:
            return f"row {i + 1}"
        return f"line {int(self.lines[i])}"

    def row(self, i: int) -> str:
        """``name line N`` (or ``name row N``) for row position ``i``."""
        return f"{self.name} {self.ref(i)}"

    def cell(self, i: int, column: object) -> str:
        """``name line N, column 'X'`` for row position ``i``."""
        return f"{self.row(i)}, column {str(column)!r}"

    def subset(self, keep: np.ndarray) -> Where:
        """Name the rows selected by a boolean mask or positions."""
        return Where(self.name, None if self.lines is None else self.lines[keep])


def is_path(source: object) -> bool:
    """Whether ``source`` names a file (a str or path-like object)."""
    return isinstance(source, str | os.PathLike)


def open_text(path: PathLike) -> IO[str]:
    """Open a text file, decompressing ``.gz``, ``.bz2`` and ``.xz`` by extension."""
    suffix = Path(path).suffix.lower()
    opener: Callable[..., IO[str]]
    opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}.get(suffix, open)  # type: ignore[assignment]
    return opener(path, "rt", encoding="utf-8-sig", newline="")


def unreadable(path: PathLike, err: BaseException) -> ScreenDataError:
    """The one-line error for a file that cannot be read (one of `READ_ERRORS`), naming it.

    Text that is not UTF-8, a damaged or truncated compressed file and a file the system
    refuses to read (no permission, a folder) are told apart.
    """
    name = Path(path).name
    if isinstance(err, UnicodeDecodeError):
        return ScreenDataError(f"{name}: cannot read the file as UTF-8 text ({err})")
    detail = str(err).strip() or type(err).__name__
    system = isinstance(err, OSError) and err.errno is not None and err.strerror
    if system:
        return ScreenDataError(f"{name}: cannot read the file ({err.strerror})")
    if Path(path).suffix.lower() in _COMPRESSED:
        return ScreenDataError(
            f"{name}: the compressed file is damaged or truncated ({detail}); "
            "copy or download it again"
        )
    return ScreenDataError(f"{name}: cannot read the file ({detail})")


def first_line(path: PathLike, what: str) -> tuple[str, int]:
    """Return the first non-blank line of a file and how many blank lines precede it.

    Raises
    ------
    ScreenDataError
        If the file does not exist, cannot be decoded, or has no non-blank line.
    """
    name = Path(path).name
    if not Path(path).is_file():
        raise ScreenDataError(f"{what} file not found: {os.fspath(path)}")
    try:
        with open_text(path) as handle:
            for skipped, line in enumerate(handle):
                text = line.rstrip("\r\n")
                if text.strip():
                    return text, skipped
    except READ_ERRORS as err:
        raise unreadable(path, err) from None
    raise ScreenDataError(f"{name}: the file is empty")


def sniff_sep(line: str) -> str:
    """Guess the field separator from a header line: tab, comma, semicolon, else whitespace."""
    for sep in ("\t", ",", ";"):
        if sep in line:
            return sep
    return r"\s+"


def split_header(line: str, sep: str) -> list[str]:
    """Split a header line the way pandas will, stripping blanks around each name."""
    if len(sep) == 1:
        fields = next(csv.reader([line], delimiter=sep))
    elif sep == r"\s+":
        fields = line.split()
    else:
        fields = re.split(sep, line.strip())
    return [f.strip() for f in fields]


def read_delimited(
    path: PathLike,
    *,
    sep: str | None,
    header: bool,
    text_columns: Callable[[list[str]], Iterable[int]] | None = None,
    what: str = "table",
) -> tuple[pd.DataFrame, Where]:
    """Read a delimited text file once with pandas, keeping file line numbers.

    Parameters
    ----------
    path : str or PathLike
        The file (``.gz``, ``.bz2``, ``.xz`` decompressed by extension).
    sep : str, optional
        Field separator; sniffed from the first line when None.
    header : bool
        Whether the first non-blank line names the columns. Without a header the
        columns are named ``"0"``, ``"1"``, ...
    text_columns : callable, optional
        Given the column names, returns the positions of those to read as text (ids,
        labels). Every other column is parsed by pandas (numbers where possible).
    what : str
        What the file is, for messages (``"count table"``).

    Returns
    -------
    frame : DataFrame
        One row per non-blank data line, columns named from the header (stripped).
    where : Where
        The file line number of each row.

    Raises
    ------
    ScreenDataError
        Duplicate column names, ragged rows, undecodable text, a missing file.
    """
    name = Path(path).name
    line, skipped = first_line(path, what)
    sep = sep or sniff_sep(line)
    if header:
        names = split_header(line, sep)
        seen: dict[str, int] = {}
        for pos, col in enumerate(names):
            if col in seen and col:
                raise ScreenDataError(
                    f"{name} line {skipped + 1}: duplicate column {col!r} "
                    f"(columns {seen[col] + 1} and {pos + 1})"
                )
            seen[col] = pos
        skiprows = skipped + 1
        first_data_line = skipped + 2
    else:
        names = [str(i) for i in range(len(split_header(line, sep)))]
        skiprows = skipped
        first_data_line = skipped + 1
    text = set(text_columns(names)) if text_columns is not None else set()
    # A blank or duplicated-empty header name cannot be a pandas column name twice.
    safe = [col if col else f"\x00{pos}" for pos, col in enumerate(names)]
    try:
        frame = pd.read_csv(
            path,
            sep=sep,
            header=None,
            names=safe,
            skiprows=skiprows,
            dtype={c: str for pos, c in enumerate(safe) if pos in text},
            keep_default_na=False,
            na_values={c: NA_STRINGS for pos, c in enumerate(safe) if pos not in text},
            skip_blank_lines=False,
            encoding="utf-8-sig",
            compression="infer",
        )
    except pd.errors.ParserError as err:
        msg = str(err).strip().splitlines()[0] if str(err).strip() else "malformed table"
        msg = msg.replace("Error tokenizing data. C error: ", "")
        raise ScreenDataError(f"{name}: {msg}") from None
    except READ_ERRORS as err:
        raise unreadable(path, err) from None
    except pd.errors.EmptyDataError:
        frame = pd.DataFrame(columns=safe)
    if not isinstance(frame.index, pd.RangeIndex):
        raise ScreenDataError(
            f"{name} line {first_data_line}: the row has more fields than the header "
            f"({len(names)} columns)"
        )
    frame.columns = pd.Index(names, dtype=object)
    lines = np.arange(first_data_line, first_data_line + len(frame), dtype=np.int64)
    blank = blank_rows(frame)
    if blank.any():
        frame = frame.loc[~blank].reset_index(drop=True)
        lines = lines[~blank]
    return frame, Where(name, lines)


def blank_rows(frame: pd.DataFrame) -> np.ndarray:
    """Rows whose every cell is missing or empty text (blank lines in a file)."""
    if frame.shape[1] == 0:
        return np.zeros(len(frame), dtype=bool)
    blank = np.ones(len(frame), dtype=bool)
    for pos in range(frame.shape[1]):
        col = frame.iloc[:, pos]
        empty = col.isna().to_numpy()
        if not pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            empty = empty | (col.astype(object).fillna("").astype(str).str.strip() == "").to_numpy()
        blank &= empty
        if not blank.any():
            break
    return blank


def clean_labels(values: pd.Series | np.ndarray | Iterable[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Labels as stripped ``str`` (object array) and a mask of the missing / empty ones."""
    series = pd.Series(values, dtype=object) if not isinstance(values, pd.Series) else values
    missing = series.isna().to_numpy()
    text = np.array(
        ["" if m else str(v).strip() for v, m in zip(series.to_numpy(), missing, strict=True)],
        dtype=object,
    )
    return text, missing | (text == "")


def format_names(names: Iterable[object], limit: int = 5) -> str:
    """Format names as ``'a', 'b', 'c'`` (at most ``limit``, then ``and N more``)."""
    names = [str(n) for n in names]
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
