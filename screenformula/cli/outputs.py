"""Output files that appear whole or not at all, and never overwrite by accident."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from screenformula.errors import ScreenFormulaError
from screenformula.io.atomic import move_into_place


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
    optional : list of Path
        Files of ``paths`` the command may decide not to write (it says why itself).
    """

    def __init__(
        self, paths: list[Path], *, force: bool = False, optional: list[Path] | None = None
    ) -> None:
        self.paths = [Path(p) for p in paths]
        self.optional = {Path(p) for p in optional or []}
        existing = [p for p in self.paths if p.exists()]
        if existing and not force:
            names = ", ".join(str(p) for p in existing[:3]) + (" ..." if len(existing) > 3 else "")
            raise ScreenFormulaError(f"output exists: {names} (use --force to replace)")
        folders = {p.parent for p in self.paths}
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
        first = self.paths[0].parent
        self.stage = Path(tempfile.mkdtemp(prefix=".screenformula-", dir=first))
        self._keep: list[tuple[Path, str]] = []

    def __enter__(self) -> OutputSet:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            kept = self._keep_staged()
            if kept and isinstance(exc, BaseException):
                for path, hint in kept:
                    exc.add_note(f"{path} is kept{hint}")
            self.discard()

    def keep_on_failure(self, path: Path, hint: str = "") -> None:
        """Move ``path``'s staged file into place even if a later step fails.

        For work that is expensive to redo (a fit): when the block raises after ``path``
        was staged, it is moved in (the others are discarded) and the exception gets a
        note saying so, with ``hint`` (how to finish the job) after it.
        """
        self._keep.append((Path(path), hint))

    def _keep_staged(self) -> list[tuple[Path, str]]:
        kept = []
        for path, hint in self._keep:
            staged = self.staged(path)
            if staged.exists():
                move_into_place(staged, path)
                kept.append((path, hint))
        return kept

    def staged(self, path: Path) -> Path:
        """Where to write ``path`` for now (inside the staging folder)."""
        return self.stage / Path(path).name

    def commit(self) -> list[Path]:
        """Move every staged file to its place (same file system: atomic renames)."""
        missing = [p for p in self.paths if not self.staged(p).exists()]
        required = [p for p in missing if p not in self.optional]
        if required:
            raise ScreenFormulaError(f"internal: {required[0].name} was not written")
        written = [p for p in self.paths if p not in missing]
        for path in written:
            move_into_place(self.staged(path), path)
        self.discard()
        return written

    def discard(self) -> None:
        """Remove the staging folder and whatever is in it."""
        shutil.rmtree(self.stage, ignore_errors=True)
