"""Small simulated screens shared by the tests (spec, backend, inference, results, report)."""

from __future__ import annotations

import os
from pathlib import Path

# Under pytest-xdist (`make test`), each worker compiles PyTensor's C modules into its own
# folder (`compiledir`): PyTensor locks that folder while it compiles, which would make the
# workers wait for each other. The numba cache (`base_compiledir/numba`) stays shared: the
# samplers' and stage 2's numba code is the suite's costliest compile (about 200 s for the
# first model on a fresh machine, 40 s once its parts are cached), and numba writes its
# cache files atomically, so one worker's compile serves the other. Set before anything
# imports PyTensor; subprocesses inherit it.
if worker := os.environ.get("PYTEST_XDIST_WORKER"):
    base = Path(os.environ.get("SCREENFORMULA_TEST_COMPILEDIR", Path.home() / ".pytensor"))
    flags = os.environ.get("PYTENSOR_FLAGS", "")
    os.environ["PYTENSOR_FLAGS"] = ",".join(
        f for f in (flags, f"base_compiledir={base}", f"compiledir={base / f'xdist-{worker}'}") if f
    )

import pytest  # noqa: E402

import screenformula as sf  # noqa: E402


@pytest.fixture(scope="session")
def small_screen():
    """30 genes x 4 guides, one pool + 3 control + 3 treated samples."""
    return sf.simulate_screen(n_genes=30, random_seed=11)


@pytest.fixture(scope="session")
def grouped_screen():
    """Two treatments and gene groups, for the three-level formula."""
    return sf.simulate_screen(n_genes=24, treatments=("drugA", "drugB"), n_groups=4, random_seed=5)


# Under pytest-xdist the files go to the workers in collection order, one file at a time; a
# slow file collected last leaves one worker finishing it alone. The slowest files (seconds
# of one worker, a cold `make test` on 2 cores) go first, the rest keep their order.
SLOWEST_FIRST = (
    "tests/inference/test_two_stage.py",  # ~700 s
    "tests/backend/test_nb_kernel.py",
    "tests/cli/test_cli.py",
    "tests/test_tutorials_rest.py",
    "tests/cli/test_cli_scale.py",
    "tests/inference/test_guide_states.py",  # two two-stage fits and a CLI run, ~150 s
    "tests/inference/test_state_mixture.py",  # two two-stage fits, ~90 s
    "tests/results/test_guide_summary.py",
    "tests/test_tutorials.py",
    "tests/model/test_calibration.py",
    "tests/inference/test_approx.py",
    "tests/cli/test_cli_distributed.py",
    "tests/inference/test_stage1_early_stop.py",  # two stage-1 compiles, ~80 s in CI
    "tests/report/test_report.py",
    "tests/cli/test_cli_docs.py",
    "tests/backend/test_backend.py",
    "tests/test_demo.py",
    "tests/spec/test_dispersion_trend.py",
    "tests/inference/test_fit.py",
    "tests/model/test_recovery.py",
    "tests/model/test_pool_recovery.py",
    "tests/test_readme_python.py",
)


def pytest_collection_modifyitems(session, config, items):
    """Put `SLOWEST_FIRST`'s files first (in that order); a stable sort keeps the rest."""
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    root = Path(str(config.rootpath))

    def key(item):
        path = Path(str(item.path)).relative_to(root).as_posix()
        return rank.get(path, len(rank))

    items.sort(key=key)
