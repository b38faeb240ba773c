"""Files that appear whole or not at all: write under a temporary name, then rename.

The one place that knows how a finished file is put in place. A file is written under a
hidden temporary name in the same folder (so the rename stays on one file system and is
atomic) and renamed over its destination only when the writing succeeded; when it fails,
the temporary file is removed and the destination is left as it was.

Use `atomic_path` when a library writes the file itself (``to_csv``, ``to_netcdf``),
`write_text_atomic` for a string, and `move_into_place` for a file already written
elsewhere on the same file system (a staging folder).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def temporary_name(path: str | os.PathLike) -> Path:
    """Hidden temporary name beside ``path``: ``.<name>.tmp-<process id>``."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def move_into_place(written: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Rename the finished file ``written`` to ``path``, replacing any file there.

    Atomic when both are on the same file system (``os.replace``).
    """
    os.replace(written, path)
    return Path(path)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Context manager yielding a temporary path to write ``path``'s content to.

    When the block ends normally, the temporary file is renamed to ``path``; when it
    raises, the temporary file is removed and ``path`` is untouched. The folder of
    ``path`` must exist.

    Examples
    --------
    >>> with atomic_path("fit.nc") as tmp:  # doctest: +SKIP
    ...     tree.to_netcdf(tmp)
    """
    path = Path(path)
    tmp = temporary_name(path)
    try:
        yield tmp
        move_into_place(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: str | os.PathLike, text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see `atomic_path`) and return ``path``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding=encoding)
    return path
