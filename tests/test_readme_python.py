"""The README's Python examples run as printed, and warn only about what a user can act on.

The blocks run in order in one namespace, in a folder holding ``counts.txt`` and
``samples.tsv`` written from a small simulated screen (control, drugA, drugB and a pool),
so ``sf.read_counts("counts.txt", samples="samples.tsv")`` reads real files. The only
edits are a short fit (a few draws instead of 4 x 1,000) and ``other_fit = fit``. The
Dask block needs a cluster: ``tests/cli/test_cli_distributed.py`` runs that one.

Every warning raised (Python's ``warnings`` and what reaches stderr) must be one a user
can act on: with this short fit, the convergence warning, which names the settings to
change. Anything else (a library's internal warning, a deprecation in our own code) fails.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings

import pytest
from _paths import ROOT

import screenformula as sf
from screenformula.results.fit import ConvergenceWarning

pytestmark = pytest.mark.slow

SHORT_FIT = "fit = model.fit(draws=60, tune=60, chains=2, random_seed=1)"


def readme_python_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return [part.split("```", 1)[0] for part in text.split("```python\n")[1:]]


def runnable(blocks: list[str]) -> list[str]:
    """The blocks this test runs, with the short fit swapped in (checked to be there)."""
    kept = [b for b in blocks if "Client(" not in b]  # the Dask block: a cluster test
    assert len(kept) == len(blocks) - 1
    long_fit = "fit = model.fit(draws=1000, tune=1000, chains=4, random_seed=1)"
    assert sum(long_fit in b for b in kept) == 1, "the README's fit line changed"
    return [b.replace(long_fit, SHORT_FIT) for b in kept]


def write_screen(folder) -> None:
    data, _ = sf.simulate_screen(n_genes=12, treatments=("drugA", "drugB"), random_seed=3)
    data.counts_frame().to_csv(folder / "counts.txt", sep="\t", index=False)
    data.samples.to_csv(folder / "samples.tsv", sep="\t")


def test_readme_python_examples_run_and_warn_only_what_a_user_can_act_on(tmp_path):
    blocks = runnable(readme_python_blocks())
    write_screen(tmp_path)
    namespace: dict = {"__name__": "readme"}
    stderr = io.StringIO()
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        with (
            warnings.catch_warnings(record=True) as caught,
            contextlib.redirect_stderr(stderr),
            contextlib.redirect_stdout(io.StringIO()),
        ):
            warnings.simplefilter("always")
            for i, block in enumerate(blocks):
                if i == 1:
                    namespace["other_fit"] = namespace["fit"]
                    namespace["az"] = __import__("arviz")
                exec(compile(block, f"README python block {i + 1}", "exec"), namespace)
    finally:
        os.chdir(cwd)

    res = namespace["res"]
    assert len(res.genes) == 2 * 12 and {"lfsr", "qvalue", "hit"} <= set(res.genes.columns)
    assert (tmp_path / "out" / "prefix.drugA_vs_control.gene_summary.txt").exists()
    assert (tmp_path / "fit.nc").exists()
    unactionable = {
        f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})"
        for w in caught
        if not issubclass(w.category, ConvergenceWarning) and not actionable_elsewhere(w)
    }
    # az.summary(fit.idata) included: the posterior holds no entry constant across draws
    # (correlations as pairs, no Cholesky factors), on which R-hat / MCSE divide 0 by 0
    assert not unactionable, "\n".join(sorted(unactionable))
    convergence = [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]
    assert convergence, "2 x 60 draws should not pass the convergence checks"
    assert all("draws" in m for m in convergence)  # says what to change
    printed = [line for line in stderr.getvalue().splitlines() if line.strip()]
    assert not [line for line in printed if "arning" in line], printed


def actionable_elsewhere(w: warnings.WarningMessage) -> bool:
    """ArviZ's LOO warning names its remedy (a more robust model; more draws help too)."""
    return "Estimated shape parameter of Pareto distribution" in str(w.message)
