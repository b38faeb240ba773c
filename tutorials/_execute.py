"""Execute the tutorials (jupytext percent-format sources) with the current Python.

Used by ``make tutorials`` and by ``tests/test_tutorials.py``::

    python tutorials/_execute.py                      # all, into tutorials/_build/
    python tutorials/_execute.py --out DIR 01_quick_start.py

Each source is converted to a notebook with jupytext and run top to bottom by nbclient
in a fresh kernel (a failing cell raises), with the output folder as working directory;
the executed notebook is written there as ``<name>.ipynb``. The kernel is the Python
running this script (a kernelspec written to a temporary ``JUPYTER_PATH``), so the
tutorials use this virtual environment whatever kernels the machine has installed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
KERNEL_NAME = "screenformula-tutorials"
#: Seconds one cell may run before the tutorial fails.
CELL_TIMEOUT = 600


def tutorial_sources() -> list[Path]:
    """The tutorial sources, in order (``NN_name.py``)."""
    return sorted(p for p in HERE.glob("[0-9][0-9]_*.py"))


def _kernel_dir(root: Path) -> Path:
    """Write a kernelspec that runs ``sys.executable`` under ``root/kernels``."""
    spec_dir = root / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "screenformula tutorials",
        "language": "python",
        "metadata": {"debugger": False},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    return root


def execute(source: Path, out_dir: Path, *, timeout: int = CELL_TIMEOUT) -> Path:
    """Run one tutorial in ``out_dir`` (its working directory); return the notebook written.

    Raises
    ------
    nbclient.exceptions.CellExecutionError
        When a cell fails (the message names the cell and the error).
    """
    import jupytext
    import nbformat
    from nbclient import NotebookClient

    out_dir.mkdir(parents=True, exist_ok=True)
    notebook = jupytext.read(source)
    with tempfile.TemporaryDirectory(prefix="sf-kernel-") as tmp:
        previous = os.environ.get("JUPYTER_PATH")
        os.environ["JUPYTER_PATH"] = os.pathsep.join(
            [str(_kernel_dir(Path(tmp)))] + ([previous] if previous else [])
        )
        try:
            client = NotebookClient(
                notebook,
                kernel_name=KERNEL_NAME,
                timeout=timeout,
                resources={"metadata": {"path": str(out_dir)}},
            )
            try:
                client.execute()
            finally:
                target = out_dir / f"{source.stem}.ipynb"
                nbformat.write(notebook, target)
        finally:
            if previous is None:
                os.environ.pop("JUPYTER_PATH", None)
            else:
                os.environ["JUPYTER_PATH"] = previous
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tutorials", nargs="*", help="sources to run (default: all)")
    parser.add_argument("--out", type=Path, default=HERE / "_build", help="output folder")
    args = parser.parse_args(argv)
    sources = [HERE / Path(t).name for t in args.tutorials] or tutorial_sources()
    failed = []
    for source in sources:
        start = time.perf_counter()
        try:
            target = execute(source, args.out.resolve())
        except Exception as err:  # report every tutorial, then fail
            failed.append(source.name)
            print(f"FAILED {source.name} ({time.perf_counter() - start:.0f} s): {err}")
        else:
            print(f"ok     {source.name} ({time.perf_counter() - start:.0f} s) -> {target}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
