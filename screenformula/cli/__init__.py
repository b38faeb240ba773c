"""The ``screenformula`` command line: wiring of the public API only.

Errors a user can fix (bad input, missing files, existing outputs) end the command
with one line on stderr and exit status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

from screenformula.errors import ScreenFormulaError


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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    # PyTensor's C backend says so when numpy's BLAS is not linkable; it is not actionable
    # for a user (sampling runs through nutpie's numba code)
    warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS")
    parser = build_parser()
    args = parser.parse_args(argv)
    quiet = getattr(args, "quiet", False)

    def say(text: str) -> None:
        if not quiet:
            print(text, flush=True)

    try:
        return int(args.run(args, say) or 0)
    except KeyboardInterrupt as err:
        notes = getattr(err, "__notes__", [])
        what = "only the fit was kept" if notes else "no output was written"
        print(f"screenformula: interrupted; {what}", file=sys.stderr)
        _print_notes(err)
        return 130
    except (ScreenFormulaError, FileNotFoundError, IsADirectoryError, PermissionError) as err:
        if args.debug:
            raise
        text = str(err).splitlines()[0] if str(err) else type(err).__name__
        if isinstance(err, FileNotFoundError) and err.filename:
            text = f"no such file: {err.filename}"
        print(f"screenformula: error: {text}", file=sys.stderr)
        _print_notes(err)
        return 2
    except Exception as err:  # an internal failure: still one line unless --debug
        if args.debug:
            raise
        first = str(err).splitlines()[0] if str(err) else ""
        print(
            f"screenformula: internal error: {type(err).__name__}: {first} (rerun with --debug)",
            file=sys.stderr,
        )
        _print_notes(err)
        return 1


def _print_notes(err: BaseException) -> None:
    """Print the notes an error carries (e.g. that the fit was kept), one line each."""
    for note in getattr(err, "__notes__", []):
        print(f"screenformula: {note}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
