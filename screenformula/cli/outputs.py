"""Output files that appear whole or not at all, and never overwrite by accident."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from screenformula.errors import ScreenFormulaError


class OutputSet:
    """Plan a command's output files, stage them in a temporary folder, then move them in.

    Used as a context manager, the staging folder is discarded when the block raises
    (nothing is moved in); the block calls `commit` when everything is written.

    Parameters
    ----------
    paths : list of Path
        Every file the command will write.
    force : bool
        Replace existing files; otherwise any existing one is an error *before* work starts.
    """

    def __init__(self, paths: list[Path], *, force: bool = False) -> None:
        self.paths = [Path(p) for p in paths]
        existing = [p for p in self.paths if p.exists()]
        if existing and not force:
            names = ", ".join(str(p) for p in existing[:3]) + (" ..." if len(existing) > 3 else "")
            raise ScreenFormulaError(f"output exists: {names} (use --force to replace)")
        folders = {p.parent for p in self.paths}
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
        first = self.paths[0].parent
        self.stage = Path(tempfile.mkdtemp(prefix=".screenformula-", dir=first))

    def __enter__(self) -> OutputSet:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            self.discard()

    def staged(self, path: Path) -> Path:
        """Where to write ``path`` for now (inside the staging folder)."""
        return self.stage / Path(path).name

    def commit(self) -> list[Path]:
        """Move every staged file to its place (same file system: atomic renames)."""
        missing = [p for p in self.paths if not self.staged(p).exists()]
        if missing:
            raise ScreenFormulaError(f"internal: {missing[0].name} was not written")
        for path in self.paths:
            os.replace(self.staged(path), path)
        self.discard()
        return self.paths

    def discard(self) -> None:
        """Remove the staging folder and whatever is in it."""
        shutil.rmtree(self.stage, ignore_errors=True)
