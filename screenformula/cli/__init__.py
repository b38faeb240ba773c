"""The ``screenformula`` command line: wiring of the public API only.

Errors a user can fix (bad input, missing files, existing outputs, a folder that cannot
be written) end the command with one line on stderr and exit status 2; ``--debug``
(before or after the sub-command) shows the traceback instead. Advice in such a line is
worded for the command line: each sub-command sets ``wording``, how it names the
settings an `AdvisedDataError` suggests (``--norm-method total``, not
``size_factors='total'``).
"""

from __future__ import annotations

import argparse
import errno
import sys
import warnings
from collections.abc import Callable, Sequence

from screenformula.errors import ScreenFormulaError
from screenformula.io.advice import AdvisedDataError, Wording

#: OS errors a user fixes (permissions, a read-only or full disk, a file where a folder
#: should be): one line and exit status 2, like bad input.
USER_OS_ERRORS = (
    errno.EACCES,
    errno.EPERM,
    errno.EROFS,
    errno.ENOSPC,
    errno.EDQUOT,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.EEXIST,
    errno.ENOENT,
    errno.ENAMETOOLONG,
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command."""
    from screenformula.cli import config, mageck_test, saved

    parser = argparse.ArgumentParser(
        prog="screenformula",
        description="Bayesian hierarchical models of pooled CRISPR screens (brms-style formulas).",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    mageck_test.add_parser(sub)
    config.add_parser(sub)
    saved.add_parser(sub)
    for command in sub.choices.values():  # also after the sub-command, as users type it
        command.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks"
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    # a fit that failed its checks: the commands say so themselves, worded as flags
    # (analysis.warn_convergence), not as Python keywords with a source line
    from screenformula.results.fit import ConvergenceWarning

    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    parser = build_parser()
    args = parser.parse_args(argv)
    quiet = getattr(args, "quiet", False)

    def say(text: str) -> None:
        if not quiet:
            print(text, flush=True)

    restore = _interrupt_on_sigterm()
    try:
        return int(args.run(args, say) or 0)
    except KeyboardInterrupt as err:
        notes = getattr(err, "__notes__", [])
        kept = any(" is kept" in note for note in notes)
        what = "only the fit was kept" if kept else "no output was written"
        print(f"screenformula: interrupted; {what}", file=sys.stderr)
        _print_notes(err)
        return 130
    except Exception as err:
        if args.debug:
            raise
        text = user_error(err, getattr(args, "wording", {}))
        if text is not None:
            print(f"screenformula: error: {text}", file=sys.stderr)
            _print_notes(err)
            return 2
        # an internal failure: still one line unless --debug
        first = str(err).splitlines()[0] if str(err) else ""
        print(
            f"screenformula: internal error: {type(err).__name__}: {first} (rerun with --debug)",
            file=sys.stderr,
        )
        _print_notes(err)
        return 1
    finally:
        restore()


def _interrupt_on_sigterm() -> Callable[[], None]:
    """SIGTERM (a batch system's time limit, ``kill``) stops a command as Ctrl-C does.

    So its clean-up runs: staged outputs are removed and a checkpointed fit says how many
    chunks are kept (a rerun resumes). Only in the main thread, where signals arrive;
    returns what puts the previous handler back.
    """
    import signal
    import threading

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.signal(signal.SIGTERM, interrupt)
    return lambda: signal.signal(signal.SIGTERM, previous)


def user_error(err: BaseException, wording: Wording) -> str | None:
    """The one line that tells a user what to fix, or None for an internal error.

    Parameters
    ----------
    err : BaseException
        What the command raised.
    wording : Wording
        The sub-command's wording of the settings an `AdvisedDataError` suggests.
    """
    if isinstance(err, AdvisedDataError):
        return err.worded(wording)
    if isinstance(err, ScreenFormulaError):
        return str(err).splitlines()[0] if str(err) else type(err).__name__
    if isinstance(err, OSError) and err.errno in USER_OS_ERRORS:
        if isinstance(err, FileNotFoundError) and err.filename:
            return f"no such file: {err.filename}"
        where = f": {err.filename}" if err.filename else ""
        return f"{err.strerror or type(err).__name__}{where}"
    return None


def _print_notes(err: BaseException) -> None:
    """Print the notes an error carries (e.g. that the fit was kept), one line each."""
    for note in getattr(err, "__notes__", []):
        print(f"screenformula: {note}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
