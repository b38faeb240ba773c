"""screenformula: Bayesian hierarchical negative-binomial models for pooled CRISPR screens.

The public API only; everything else lives in sub-packages.
"""

from __future__ import annotations

import warnings
from importlib import import_module
from typing import Any

from screenformula._blas import configure as _configure_blas
from screenformula.errors import FitError, FormulaError, ScreenDataError, ScreenFormulaError
from screenformula.io.normalize import compute_size_factors
from screenformula.io.screen_data import ScreenData

__version__ = "0.1.0"

# PyTensor's C matrix products link to the OpenBLAS SciPy ships (set before PyTensor loads)
_configure_blas()

_formatwarning = warnings.formatwarning


def _format_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    line: str | None = None,
) -> str:
    """Our own warnings (`ApproximateWarning`, `ConvergenceWarning`) print their message only.

    Python's format names a source file and line, which for these is our internals' or
    the user's own call, neither of which says anything the message does not.
    """
    if getattr(category, "__module__", "").startswith("screenformula."):
        return f"{category.__name__}: {message}\n"
    return _formatwarning(message, category, filename, lineno, line)


if getattr(warnings.formatwarning, "__module__", None) != __name__:  # once per process
    warnings.formatwarning = _format_warning

# Heavy parts (PyMC, Bambi) load only when used.
_LAZY = {
    "read_counts": "screenformula.io.counts",
    "read_sample_sheet": "screenformula.io.sample_sheet",
    "read_gene_groups": "screenformula.io.sample_sheet",
    "filter_sgrnas": "screenformula.io.filtering",
    "simulate_screen": "screenformula.simulate",
    "SimulatedScreen": "screenformula.simulate",
    "datasets": "screenformula.datasets",
    "ScreenModel": "screenformula.model",
    "Prior": "screenformula.spec.priors",
    "ScreenFit": "screenformula.results.fit",
    "load_fit": "screenformula.model",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = import_module(_LAZY[name])
        return module if name == "datasets" else getattr(module, name)
    raise AttributeError(f"module 'screenformula' has no attribute {name!r}")


__all__ = [
    "FitError",
    "FormulaError",
    "ScreenData",
    "ScreenDataError",
    "ScreenFormulaError",
    "compute_size_factors",
    "__version__",
    *_LAZY,
]
