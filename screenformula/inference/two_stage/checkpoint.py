"""Checkpoints of a two-stage fit: stage 1 and every finished chunk, kept on disk.

A checkpoint is a folder. ``fingerprint.json`` says what it was made from: a hash of
the counts (and guides, genes, samples, size factors), the model's settings (formula,
priors, dispersion, pool), the seed, the draws, the kept variables and the engine's
settings. Stage 1's result (``stage1.nc``, ``stage1.npz``, then ``stage1.json``, written
last, which marks it whole) and each chunk's stage-2 result (``chunk-00003.npz``) are
written as they finish, each atomically (`screenformula.io.atomic`): a run killed at any
moment leaves whole files or none. A chunk file records the hash of the stage-1 draws
it was conditioned on, and is used only with them.

Opening a checkpoint made from other inputs or settings refuses to mix old and new
results (`CheckpointMismatchError`, one line naming what differs) unless ``force`` is
given, which empties the folder and starts over.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from screenformula.errors import FitError
from screenformula.io.atomic import atomic_path, write_text_atomic

__all__ = [
    "Checkpoint",
    "CheckpointMismatchError",
    "data_hash",
    "hash_arrays",
    "remove_checkpoint",
]

#: Format of the files; a checkpoint of another version is not reused.
VERSION = 1


class CheckpointMismatchError(FitError):
    """A checkpoint was made from other inputs or settings than this fit's."""


def hash_arrays(*arrays: Any) -> str:
    """A SHA-256 (hex, 16 digits) of arrays' dtypes, shapes and bytes, or of strings."""
    h = hashlib.sha256()
    for a in arrays:
        if isinstance(a, str):
            h.update(b"s" + a.encode())
            continue
        arr = np.ascontiguousarray(np.asarray(a))
        if arr.dtype.kind in "OUT":
            h.update(b"t" + "\x1f".join(map(str, arr.ravel().tolist())).encode())
        else:
            h.update(f"{arr.dtype.str}{arr.shape}".encode())
            h.update(arr.tobytes())
    return h.hexdigest()[:16]


def data_hash(data: Any) -> str:
    """Hash of a `ScreenData`: counts, guides, their genes, controls, samples, size factors."""
    samples = data.samples
    return hash_arrays(
        data.counts,
        np.asarray(data.sgrnas, dtype=str),
        np.asarray(data.genes_of_sgrna, dtype=str),
        np.asarray(data.controls),
        samples.to_csv(),
        np.asarray(data.size_factors, dtype=float),
    )


class Checkpoint:
    """One fit's checkpoint folder (created when missing).

    Parameters
    ----------
    folder : path
    parts : dict
        The fingerprint: name -> JSON value (hashes, the seed, the draws...). A folder
        holding another fingerprint is refused, naming the parts that differ.
    force : bool
        Start over: remove whatever the folder holds first.
    """

    def __init__(self, folder: str | os.PathLike, parts: dict[str, Any], *, force: bool = False):
        self.folder = Path(folder)
        self.parts = {"version": VERSION, **parts}
        path = self.folder / "fingerprint.json"
        if force and self.folder.exists():
            self.clear()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.seed: int | None = None  # the seed drawn for a fit without one
        if path.exists():
            try:
                old = json.loads(path.read_text())
            except (OSError, ValueError):
                old = {"parts": {}}
            differ = [
                k
                for k in dict.fromkeys([*self.parts, *old.get("parts", {})])
                if old.get("parts", {}).get(k) != self.parts.get(k)
            ]
            if differ:
                verb = "differs" if len(differ) == 1 else "differ"
                raise CheckpointMismatchError(
                    f"the checkpoint in {self.folder} was made from other inputs or settings "
                    f"({', '.join(differ)} {verb}): its results are not mixed with this "
                    "fit's; start over with --force (Python: force=True) or give another "
                    "checkpoint folder"
                )
            self.seed = old.get("seed")
        else:
            write_text_atomic(path, json.dumps({"parts": self.parts}, indent=1) + "\n")

    def clear(self) -> None:
        """Remove the checkpoint's files (only its own: the folder may hold others)."""
        remove_checkpoint(self.folder)

    def remove(self) -> None:
        """Remove the checkpoint once the fit it served is saved."""
        self.clear()

    # ------------------------------------------------------------------ seed
    def remember_seed(self, seed: int) -> None:
        """Keep the seed drawn for a fit without one (a resumed run uses it again)."""
        self.seed = int(seed)
        write_text_atomic(
            self.folder / "fingerprint.json",
            json.dumps({"parts": self.parts, "seed": self.seed}, indent=1) + "\n",
        )

    # ------------------------------------------------------------------ stage 1
    def save_stage1(self, posterior: Any, arrays: dict[str, np.ndarray], info: dict) -> None:
        """Stage 1's posterior (a Dataset), its arrays (``.npz``) and facts (JSON, last)."""
        with atomic_path(self.folder / "stage1.nc") as tmp:
            posterior.to_netcdf(tmp, engine="h5netcdf")
        _save_npz(self.folder / "stage1.npz", arrays)
        write_text_atomic(self.folder / "stage1.json", json.dumps(info, indent=1) + "\n")

    def load_stage1(self) -> tuple[Any, dict[str, np.ndarray], dict] | None:
        """What `save_stage1` saved, or None when it is not (all) there."""
        import xarray as xr

        if not (self.folder / "stage1.json").exists():
            return None
        try:
            info = json.loads((self.folder / "stage1.json").read_text())
            with xr.open_dataset(self.folder / "stage1.nc", engine="h5netcdf") as ds:
                posterior = ds.load()
            with np.load(self.folder / "stage1.npz") as f:
                arrays = {k: f[k] for k in f.files}
        except (OSError, ValueError, KeyError):
            return None
        return posterior, arrays, info

    # ------------------------------------------------------------------ chunks
    def chunk_path(self, index: int) -> Path:
        """The file of chunk ``index``."""
        return self.folder / f"chunk-{index:05d}.npz"

    def save_chunk(self, index: int, arrays: dict[str, np.ndarray], meta: dict) -> None:
        """One chunk's arrays and facts (``meta``: its genes' hash, the stage-1 hash...)."""
        _save_npz(self.chunk_path(index), {**arrays, "__meta__": np.array(json.dumps(meta))})

    def load_chunk(self, index: int, meta: dict) -> dict[str, np.ndarray] | None:
        """The chunk's arrays when its file is there, whole, and made with ``meta``."""
        path = self.chunk_path(index)
        if not path.exists():
            return None
        try:
            with np.load(path) as f:
                if json.loads(str(f["__meta__"])) != meta:
                    return None
                return {k: f[k] for k in f.files if k != "__meta__"}
        except (OSError, ValueError, KeyError, EOFError):
            return None  # damaged: computed again

    def guide_path(self, index: int, name: str) -> Path:
        """The file of chunk ``index``'s draws of guide-level variable ``name`` (``.npy``).

        Written by the worker as it makes them (on this machine), so that guide draws never
        travel back in memory; the chunk's ``.npz``, saved after, says it is complete.
        """
        return self.folder / f"chunk-{index:05d}-guides-{quote(name, safe='')}.npy"

    def chunk_files(self) -> list[Path]:
        """The chunk files there now."""
        return sorted(self.folder.glob("chunk-*.npz"))


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez`` to ``path`` atomically, flushed to disk before the rename."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())


def remove_checkpoint(folder: str | os.PathLike) -> None:
    """Remove a checkpoint's files, and its folder when nothing else is in it."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    names = (
        "fingerprint.json",
        "stage1.nc",
        "stage1.npz",
        "stage1.json",
        "chunk-*.npz",
        "chunk-*-guides-*.npy",
    )
    for pattern in (*names, ".*.tmp-*"):
        for path in folder.glob(pattern):
            path.unlink()
    with contextlib.suppress(OSError):
        folder.rmdir()  # when nothing else is there
