"""Arrays of draws that live on disk while a fit runs (guide-level draws at genome scale)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["create_draws_file", "draw_array", "open_draws"]


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


def create_draws_file(path: str | Path, shape: tuple[int, ...]) -> None:
    """Make an ``.npy`` file of float draws of ``shape``, for `open_draws` elsewhere.

    The file is sparse until written.
    """
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=shape)
    arr.flush()
    del arr
