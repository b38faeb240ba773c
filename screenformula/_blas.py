"""Link PyTensor's C BLAS ops to the OpenBLAS that SciPy's wheel already ships.

A pip-installed PyTensor finds no system BLAS (no ``libblas.so``, MKL or
``libopenblas.so`` on the linker's path), warns in five lines on the first compiled
function, and runs its matrix products (``Dot22``, ``Gemm``, ``Gemv``) through NumPy
from Python. SciPy's Linux wheels carry a full LP64 OpenBLAS
(``scipy.libs/libscipy_openblas-*.so``) whose symbols have a ``scipy_`` prefix
(``scipy_dgemm_``): :func:`configure` points ``blas__ldflags`` at that library and
renames the Fortran BLAS symbols PyTensor's C code declares (``-Ddgemm_=scipy_dgemm_``).
It runs at ``import screenformula``, before PyTensor is imported, through
``PYTENSOR_FLAGS``; it never overrides a ``blas__ldflags`` the user set (in
``PYTENSOR_FLAGS``, a ``.pytensorrc``, or ``pytensor.config`` before the first compile),
and does nothing where no such library is found (other platforms, a SciPy built from
source): PyTensor then looks for a BLAS itself, as before.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import sys
from pathlib import Path

# Every Fortran BLAS routine PyTensor's C headers declare (pytensor/tensor/blas/c_code/
# blas_headers.py); the headers declare all of them, so all are renamed.
_PREFIXES = {"s": "real", "d": "real", "c": "complex", "z": "complex"}
_REAL = (
    "axpy copy dot gbmv gemm gemv ger rot rotg rotm rotmg sbmv scal spmv spr spr2 swap "
    "symm symv syr syr2 syr2k syrk tbmv tbsv tpmv tpsv trmm trmv trsm trsv"
).split()
_COMPLEX = (
    "axpy copy gbmv gemm gemv gerc geru hbmv hemm hemv her her2 her2k herk hpmv hpr hpr2 "
    "scal swap symm syr2k syrk tbmv tbsv tpmv tpsv trmm trmv trsm trsv"
).split()
BLAS_ROUTINES = (
    [f"{p}{r}" for p in "sd" for r in _REAL]
    + [f"{p}{r}" for p in "cz" for r in _COMPLEX]
    + ["csscal", "zdscal"]
)
SYMBOL_PREFIX = "scipy_"
FLAG_NAMES = ("blas__ldflags", "blas.ldflags")


def scipy_openblas() -> Path | None:
    """SciPy's bundled LP64 OpenBLAS (Linux wheels), or None; SciPy is not imported."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        spec = importlib.util.find_spec("scipy")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    libs = Path(next(iter(spec.submodule_search_locations))).parent / "scipy.libs"
    # "libscipy_openblas-<hash>.so": LP64 (32-bit ints, as PyTensor's headers declare);
    # not numpy's "libscipy_openblas64_-<hash>.so" (ILP64)
    found = sorted(libs.glob("libscipy_openblas-*.so")) if libs.is_dir() else []
    return found[0] if found else None


def ldflags(library: Path) -> str:
    """The ``blas__ldflags`` value linking ``library`` under the standard BLAS names."""
    name = library.name.removeprefix("lib").removesuffix(".so")
    flags = [
        f"-L{library.parent}",
        f"-l{name}",
        f"-Wl,-rpath,{library.parent}",
        *(f"-D{r}_={SYMBOL_PREFIX}{r}_" for r in BLAS_ROUTINES),
    ]
    return " ".join(shlex.quote(f) for f in flags)


def _user_set() -> bool:
    """Whether the user chose ``blas__ldflags`` in PYTENSOR_FLAGS or a config file."""
    if any(name in os.environ.get("PYTENSOR_FLAGS", "") for name in FLAG_NAMES):
        return True
    for rc in os.environ.get("PYTENSORRC", "~/.pytensorrc").split(os.pathsep):
        try:
            text = Path(rc).expanduser().read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if "ldflags" in text:
            return True
    return False


def configure() -> str | None:
    """Point PyTensor at SciPy's OpenBLAS unless the user chose a BLAS; the flags set.

    Before PyTensor is imported the flags go into ``PYTENSOR_FLAGS`` (so subprocesses
    inherit them); after, into ``pytensor.config`` if nothing has compiled yet.
    """
    if _user_set():
        return None
    library = scipy_openblas()
    if library is None:
        return None
    flags = ldflags(library)
    pytensor = sys.modules.get("pytensor")
    if pytensor is not None:
        param = pytensor.config._config_var_dict.get("blas__ldflags")
        if param is None or hasattr(param, "val"):  # already resolved (or chosen)
            return None
        pytensor.config.blas__ldflags = flags
        return flags
    current = os.environ.get("PYTENSOR_FLAGS", "")
    entry = "blas__ldflags=" + shlex.quote(flags)
    os.environ["PYTENSOR_FLAGS"] = f"{current},{entry}" if current else entry
    return flags
