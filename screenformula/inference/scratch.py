"""Arrays of draws that live on disk while a fit runs (guide-level draws at genome scale)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["draw_array", "open_draws", "release"]


def draw_array(name: str, shape: tuple[int, ...], scratch: str | None) -> np.ndarray:
    """An array for one variable's draws: memory-mapped in folder ``scratch``, else in memory.

    `screenformula.inference.fit` removes the folder once the guide summaries are made.
    """
    if scratch is None:
        return np.empty(shape)
    path = Path(scratch) / f"{name}.npy"
    return np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=shape)


def open_draws(path: str) -> np.ndarray:
    """A `draw_array` file opened for writing (in another process, say)."""
    return np.lib.format.open_memmap(path, mode="r+")


def release(arr: np.ndarray) -> None:
    """Write a memory-mapped array's changes to its file and drop its pages from memory.

    Pages written through a shared file mapping count in the process's resident memory
    until the kernel reclaims them; without this, filling a 1 GB array of guide draws
    shows as 1 GB more peak memory. Arrays in memory are left as they are.
    """
    import mmap

    base = arr
    while base is not None and not isinstance(base, np.memmap):
        base = base.base
    if base is None:
        return
    base.flush()
    handle = getattr(base, "_mmap", None)
    if handle is not None and hasattr(handle, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
        handle.madvise(mmap.MADV_DONTNEED)
