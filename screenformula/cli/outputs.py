"""Output files that appear whole or not at all, and never overwrite by accident."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from screenformula.errors import ScreenFormulaError
from screenformula.io.atomic import move_into_place

if TYPE_CHECKING:
    import pandas as pd

#: Numbers in tab-separated outputs: 6 significant digits (``0.0125``, not
#: ``0.012499999999999956``); posterior summaries carry Monte Carlo error far above that,
#: and MAGeCK's own tables (`screenformula.results.mageck`) use the same format.
FLOAT_FORMAT = "%.6g"


def write_tsv(table: pd.DataFrame, path: Path) -> None:
    """Write ``table`` tab-separated, without its index, floats to `FLOAT_FORMAT`."""
    table.to_csv(path, sep="\t", index=False, float_format=FLOAT_FORMAT)


class OutputSet:
    """Plan a command's output files, stage them in a temporary folder, then move them in.

    Used as a context manager, the staging folder is discarded when the block raises
    (nothing is moved in), and so are the folders it created for the outputs when they
    are left empty (never a folder that was there before); the block calls `commit` when
    everything is written.

    Parameters
    ----------
    paths : list of Path
        Every file the command will write.
    force : bool
        Replace existing files; otherwise any existing one is an error *before* work starts.
    optional : list of Path
        Files of ``paths`` the command may decide not to write (it says why itself).

    Raises
    ------
    ScreenFormulaError
        An output exists (without ``force``), or an output folder cannot be created or
        written (read-only, no permission, a file in the way).
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
        self.created: list[Path] = []  # folders made here, parents first
        first = folder = self.paths[0].parent
        try:
            for folder in dict.fromkeys(p.parent for p in self.paths):
                self._make_folder(folder)
            folder = first
            self.stage = Path(tempfile.mkdtemp(prefix=".screenformula-", dir=first))
        except OSError as err:
            self.remove_created_folders()
            blocked = next((f for f in (folder, *folder.parents) if f.is_file()), None)
            why = f"{blocked} is a file" if blocked else (err.strerror or str(err))
            raise ScreenFormulaError(
                f"cannot write the outputs to the folder {folder}: {why}"
            ) from None
        self._keep: list[tuple[Path, str]] = []

    def _make_folder(self, folder: Path) -> None:
        missing = [f for f in (folder, *folder.parents) if not f.exists()]
        for made in reversed(missing):
            made.mkdir()
            self.created.append(made)

    def __enter__(self) -> OutputSet:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            kept = self._keep_staged()
            if kept and isinstance(exc, BaseException):
                for path, hint in kept:
                    exc.add_note(f"{path} is kept{hint}")
            self.discard()
            self.remove_created_folders()

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

    def remove_created_folders(self) -> None:
        """Remove the folders made for the outputs that are still empty, deepest first."""
        for folder in reversed(self.created):
            try:
                folder.rmdir()  # only an empty folder: a kept fit stays, with its folder
            except OSError:
                continue
        self.created = []
