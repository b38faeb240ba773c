"""Progress of long work: a bar on a terminal, one line per stage in a log.

`stage_line` prints one line (to stdout, flushed) whatever the output is: a log file
gets each stage's start and end and nothing per step. `Bar` draws a progress bar on
stderr only when stderr is a terminal (rich's, a dependency of PyMC), and nothing
otherwise.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["Bar", "stage_line"]


def stage_line(text: str, enabled: bool = True) -> None:
    """One line about a stage of the work (``enabled``: the caller's ``progress``)."""
    if enabled:
        print(text, flush=True)


class Bar:
    """A progress bar over ``total`` steps (``done`` of them already done).

    A context manager; `advance` after each step. Drawn on stderr when it is a terminal
    and ``enabled``; otherwise it does nothing (the stage lines say enough in a log).
    """

    def __init__(self, total: int, label: str, *, enabled: bool = True, done: int = 0) -> None:
        self.total = int(total)
        self.label = label
        self._progress: Any = None
        self._task: Any = None
        if not (enabled and self.total > 0 and _is_terminal(sys.stderr)):
            return
        try:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
        except ImportError:  # pragma: no cover - rich comes with PyMC
            return
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(file=sys.stderr),
            transient=False,
        )
        self._task = self._progress.add_task(label, total=self.total, completed=int(done))

    def __enter__(self) -> Bar:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def advance(self, steps: int = 1) -> None:
        """Count ``steps`` more steps done."""
        if self._progress is not None:
            self._progress.advance(self._task, steps)

    @property
    def drawn(self) -> bool:
        """Whether a bar is drawn (a terminal)."""
        return self._progress is not None


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
