"""Arrays of draws that live on disk while a fit runs (guide-level draws at genome scale)."""

from __future__ import annotations

import errno
import os
import shutil
import threading
from pathlib import Path

import numpy as np

from screenformula.errors import FitError

__all__ = [
    "create_draws_file",
    "draw_array",
    "open_draws",
    "remove_in_background",
    "reserve_blocks",
]


def draw_array(name: str, shape: tuple[int, ...], scratch: str | None) -> np.ndarray:
    """An array for one variable's draws: memory-mapped in folder ``scratch``, else in memory.

    `screenformula.inference.fit` removes the folder once the guide summaries are made.
    """
    if scratch is None:
        return np.empty(shape)
    path = Path(scratch) / f"{name}.npy"
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=shape)
    reserve_blocks(path)
    return arr


def open_draws(path: str) -> np.ndarray:
    """A `draw_array` file opened for writing (in another process, say)."""
    return np.lib.format.open_memmap(path, mode="r+")


def create_draws_file(path: str | Path, shape: tuple[int, ...]) -> None:
    """Make an ``.npy`` file of float draws of ``shape``, for `open_draws` elsewhere.

    Its disk blocks are reserved at once (`reserve_blocks`).
    """
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=shape)
    arr.flush()
    del arr
    reserve_blocks(path)


def reserve_blocks(path: str | Path) -> None:
    """Reserve the disk blocks of a new file of draws before anything writes to it.

    A new ``.npy`` file is sparse, and every first write to one of its pages through a
    memory map then makes the file system allocate a block: writing 1,000 draws of
    36,000 guides x 2 values into a new file took 2.4 ms a draw on this machine's ext4,
    0.6 ms after ``posix_fallocate`` (0.08 ms into pages already written). A disk too
    small for the draws is said here, once, instead of as a bus error mid-fit.
    """
    if not hasattr(os, "posix_fallocate"):
        return  # not on this platform: the file system allocates as pages are written
    size = os.path.getsize(path)
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise FitError(
                f"not enough disk space in {Path(path).parent} for {size / 2**30:.1f} GB of "
                "guide-level draws while the fit runs: point TMPDIR at a larger disk"
            ) from err
        # EOPNOTSUPP and the like: a file system without it allocates as pages are written
    finally:
        os.close(fd)


def remove_in_background(folder: str | Path) -> threading.Thread:
    """Remove ``folder`` and everything in it from a thread, returning at once.

    Stage 1's zarr store of a genome-wide fit holds about 18,000 files in 14,000
    folders, which took 2.4 s to remove, while stage 2 waited. The thread is not a daemon:
    the interpreter waits for it at exit, so nothing is left behind by a finished run.
    """
    thread = threading.Thread(
        target=shutil.rmtree,
        args=(str(folder),),
        kwargs={"ignore_errors": True},
        name="screenformula-remove-scratch",
    )
    thread.start()
    return thread
