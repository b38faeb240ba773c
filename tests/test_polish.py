"""Issue 16, "Polish": each test reproduces what a new user saw, and checks it is gone."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import screenformula as sf
from screenformula import _blas

DATA = Path(__file__).resolve().parent / "data"


# ------------------------------------------------------------------ PyTensor's BLAS
def _env_without_our_blas_flags() -> dict[str, str]:
    """This environment as a user's shell has it: no blas__ldflags set by screenformula."""
    env = dict(os.environ)
    flags = env.get("PYTENSOR_FLAGS", "").split("blas__ldflags=")[0].rstrip(",")
    if flags:
        env["PYTENSOR_FLAGS"] = flags
    else:
        env.pop("PYTENSOR_FLAGS", None)
    return env


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SciPy's OpenBLAS: Linux wheels")
def test_pytensor_links_scipy_openblas_and_does_not_warn():
    # before: the first compiled function printed PyTensor's five-line "could not link to
    # a BLAS installation" warning, and matrix products ran through NumPy from Python
    code = textwrap.dedent(
        """
        import warnings
        warnings.simplefilter("always")
        import screenformula
        import numpy as np
        import pytensor
        import pytensor.tensor as pt
        from pytensor.compile.mode import Mode

        A, x = pt.matrix("A"), pt.vector("x")
        f = pytensor.function([A, x], pt.dot(A, x), mode=Mode(linker="cvm", optimizer="fast_run"))
        a, v = np.arange(12.0).reshape(3, 4), np.linspace(-1, 1, 4)
        assert np.allclose(f(a, v), a @ v)
        print(sorted(type(n.op).__name__ for n in f.maker.fgraph.toposort()))
        print(pytensor.config.blas__ldflags)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env=_env_without_our_blas_flags(),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "could not link to a BLAS" not in done.stderr, done.stderr
    ops, flags = done.stdout.splitlines()[-2:]
    assert "CGemv" in ops  # PyTensor's C BLAS op, not the NumPy fallback (Gemv)
    assert "scipy_openblas" in flags and "-Ddgemm_=scipy_dgemm_" in flags


def test_blas_flags_name_scipys_library_and_every_routine():
    library = _blas.scipy_openblas()
    if sys.platform.startswith("linux"):
        assert library is not None and library.is_file()  # SciPy's wheel ships it
        assert "openblas64" not in library.name  # LP64, as PyTensor's headers declare
    if library is not None:
        flags = _blas.ldflags(library)
        assert f"-L{library.parent}" in flags and "-Wl,-rpath," in flags
        assert flags.count("-D") == len(_blas.BLAS_ROUTINES) == 124


def test_a_users_blas_choice_is_kept(monkeypatch):
    monkeypatch.setenv("PYTENSOR_FLAGS", "floatX=float64,blas__ldflags=-lmyblas")
    assert _blas.configure() is None
    assert os.environ["PYTENSOR_FLAGS"] == "floatX=float64,blas__ldflags=-lmyblas"


# ------------------------------------------------------- the approximate-fit warning
_ADVI_STUB = """
from types import SimpleNamespace
import screenformula
from screenformula.inference import approx
approx.fit_advi = lambda *args, **kwargs: (None, {})  # no optimisation: only the notice
request = SimpleNamespace(
    draws=1, random_seed=1, progress=False, on_disk=(), scratch=None, kwargs={}, var_names=[]
)
approx.run_advi(SimpleNamespace(pymc_model=None), request)
"""


def test_the_approximate_fit_warning_names_no_internal_source_line(monkeypatch):
    from screenformula.inference import approx

    monkeypatch.setattr(approx, "fit_advi", lambda *args, **kwargs: (None, {}))
    request = SimpleNamespace(
        draws=1, random_seed=1, progress=False, on_disk=(), scratch=None, kwargs={}, var_names=[]
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        approx.run_advi(SimpleNamespace(pymc_model=None), request)
    [w] = [w for w in caught if w.category is approx.ApproximateWarning]
    # before: stacklevel=5 pointed past the caller (or into screenformula/results)
    assert w.filename == __file__
    text = warnings.formatwarning(w.message, w.category, w.filename, w.lineno, w.line)
    assert text == f"ApproximateWarning: {approx.APPROX_NOTICE}\n"
    # other warnings keep Python's format
    other = warnings.formatwarning("x", UserWarning, "f.py", 3)
    assert other.startswith("f.py:3: UserWarning: x")


def test_the_approximate_fit_warning_prints_one_line(tmp_path):
    script = tmp_path / "user_script.py"
    script.write_text(_ADVI_STUB, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    from screenformula.inference.approx import APPROX_NOTICE

    assert done.stderr == f"ApproximateWarning: {APPROX_NOTICE}\n"


# ------------------------------------------------------------- numbers in genes.tsv
def _longest_mantissa(text: str) -> int:
    digits = 0
    for cell in text.replace("\n", "\t").split("\t"):
        try:
            float(cell)
        except ValueError:
            continue
        mantissa = cell.lower().split("e")[0].lstrip("+-").replace(".", "").lstrip("0")
        digits = max(digits, len(mantissa))
    return digits


def test_genes_tsv_writes_six_significant_digits(tmp_path):
    # before: `screenformula contrast` wrote 0.012499999999999956 (full float precision)
    from screenformula.cli import main

    fit = DATA / "fit_format1_ed30f57.nc"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(["contrast", str(fit), "-n", str(tmp_path / "c"), "--mageck", "--quiet"])
        want = sf.load_fit(fit).contrast(delta=0.5).genes
    assert code == 0
    for name in ("c.genes.tsv", "c.gene_summary.txt", "c.sgrna_summary.txt"):
        text = (tmp_path / name).read_text(encoding="utf-8")
        assert 0 < _longest_mantissa(text) <= 6, name
    written = pd.read_csv(tmp_path / "c.genes.tsv", sep="\t")
    for column in ("lfc", "lfsr", "qvalue"):
        np.testing.assert_allclose(written[column], want[column], rtol=5e-6, atol=1e-300)


def test_write_tsv_rounds_floats_only(tmp_path):
    from screenformula.cli.outputs import write_tsv

    table = pd.DataFrame({"gene": ["A"], "lfsr": [0.012499999999999956], "n": [123456789]})
    write_tsv(table, tmp_path / "t.tsv")
    assert (tmp_path / "t.tsv").read_text() == "gene\tlfsr\tn\nA\t0.0125\t123456789\n"


# ------------------------------------------------------------ MAGeCK users' flags
@pytest.mark.parametrize(
    ("flags", "advice"),
    [
        (["--day0-label", "d0"], "-c/--control-id"),
        (["--day0-label"], "-c/--control-id"),
        (["--paired"], "(1 | pair)"),
        (["--pdf-report"], "--kind forest -o FILE.pdf"),
    ],
)
def test_mageck_only_flags_are_refused_with_what_to_use(flags, advice, capsys, tmp_path):
    # before: argparse's usage block and "unrecognized arguments: --paired"
    from screenformula.cli import main

    argv = ["test", "-k", "counts.txt", "-t", "T1", "-c", "C1", "-n", str(tmp_path / "x")]
    with pytest.raises(SystemExit) as stop:
        main([*argv[:3], *flags, *argv[3:]])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"screenformula: error: {flags[0]} is not supported: ")
    assert advice in err and err.count("\n") == 1 and "usage" not in err
    assert not list(tmp_path.iterdir())  # nothing written


# ------------------------------------------------------------- expected_counts' column
def test_expected_counts_names_its_column_after_the_treatment_column():
    # before: the column was "condition" whatever the formula's treatment column was
    from _contrast_fakes import fake_fit, small_screen

    data = small_screen()
    # the formula's factor is `drug`, a column that is neither `condition` nor `treatment`
    data.samples["drug"] = data.samples["treatment"].map(
        {"control": "none", "drugA": "A", "drugB": "B"}
    )
    fit, _ = fake_fit(data, "count ~ 1 + drug + (1 + drug | gene)", n_draws=20)
    table = fit.expected_counts()
    assert list(table.columns[:2]) == ["gene", "drug"] and table.attrs["by"] == "drug"
    assert set(table["drug"]) == {"none", "A", "B"}
    assert list(fit.expected_counts(by="treatment").columns[:2]) == ["gene", "treatment"]
    # code written for the old name still runs, and is told the new one
    with pytest.warns(FutureWarning, match="now named 'drug'"):
        old = table["condition"]
    assert old.equals(table["drug"])
    subset = table[table["gene"] == "G1"]
    with pytest.warns(FutureWarning):
        indexed = subset.set_index(["gene", "condition"])
    assert indexed.index.names == ["gene", "drug"] and len(indexed) == 3


# ------------------------------------------------------------------- volcano labels
def _ceiling_genes(n_top: int = 14) -> pd.DataFrame:
    """300 genes; the n_top best have lfsr 0 (no draw on the other side) and close LFCs."""
    rng = np.random.default_rng(4)
    n = 300
    lfc = rng.normal(0.0, 0.4, n)
    lfsr = rng.uniform(0.05, 0.5, n)
    lfc[:n_top] = np.linspace(-3.0, -2.35, n_top)
    lfsr[:n_top] = 0.0
    lfc[n_top : n_top + 3], lfsr[n_top : n_top + 3] = [1.4, 1.6, 1.8], 0.001
    genes = pd.DataFrame(
        {
            "gene": [f"GENE{i}" for i in range(n)],
            "contrast": "drug vs control",
            "lfc": lfc,
            "lfsr": lfsr,
            "hit": lfsr < 0.01,
            "direction": np.where(lfc < 0, "down", "up"),
            "rank": np.argsort(np.argsort(lfsr - np.abs(lfc) * 1e-3)) + 1,
        }
    )
    genes.attrs["n_draws"] = 400
    return genes


def test_volcano_labels_do_not_pile_up_and_there_is_a_legend(tmp_path):
    # before: the 10 labels at the lfsr ceiling were drawn on top of each other; no legend
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Text

    from screenformula.plotting import volcano_plot

    fig = volcano_plot(_ceiling_genes(), path=tmp_path / "v.png")
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    ax = fig.axes[0]
    notes = [t for t in ax.texts if t.get_text().startswith("GENE")]
    assert len(notes) >= 8  # most of the 10 asked for found a free place
    boxes = [Text.get_window_extent(t, renderer) for t in notes]  # the text, not its line
    for i, a in enumerate(boxes):
        assert ax.get_window_extent().contains(a.x0, a.y0)
        for b in boxes[i + 1 :]:
            assert not a.overlaps(b), (a, b)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[:3] == ["not called (283)", "depleted (14)", "enriched (3)"]
    assert "lfsr below 1/401 draws" in legend
    assert (tmp_path / "v.png").stat().st_size > 1000
