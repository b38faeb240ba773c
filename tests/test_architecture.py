"""The package's structure: no import cycles, one owner per concept (issue 13)."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from screenformula.errors import FitError
from screenformula.inference import registry
from screenformula.spec.names import term_names
from screenformula.spec.priors import DEFAULT_PRIORS, Prior
from screenformula.spec.settings import ModelSettings

ROOT = Path(__file__).resolve().parents[1]


def test_no_import_cycles_counting_imports_inside_functions():
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "import_cycles.py")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout
    assert result.stdout.strip().endswith("0 import cycle(s)")


def test_the_cycle_finder_finds_a_cycle():
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        finder = importlib.import_module("import_cycles")
    finally:
        sys.path.pop(0)
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert finder.cycles(edges) == [["a", "b", "c"]]


def test_every_registered_method_has_a_runner():
    names = registry.method_names()
    assert {"nuts", "advi", "approx"} <= set(names)
    assert [m.name for m in registry.available_methods()] == [m.name for m in registry.METHODS]
    assert registry.get_method("approx").name == "advi"
    assert registry.get_method("advi").approximate and not registry.get_method("nuts").approximate
    with pytest.raises(FitError, match="unknown method 'gibbs': choose one of nuts, two-stage"):
        registry.get_method("gibbs")


def test_settings_round_trip_and_read_like_a_dict():
    settings = ModelSettings(
        "count ~ 1 + treatment + (1 | gene)",
        priors={"b": Prior("Normal", mu=0, sigma=2), "cor": 2.0},
        reference={"treatment": "DMSO"},
    )
    again = ModelSettings.from_dict(settings.to_dict())
    assert again == settings
    assert again["formula"] == settings.formula and again.get("nope", 1) == 1
    assert again.replace(pool=None).pool is None and again.pool == "auto"
    assert Prior.from_dict(Prior("Gamma", alpha=1, beta=2).to_dict()) == Prior(
        "Gamma", alpha=1.0, beta=2.0
    )


def test_posterior_names_have_one_owner():
    names = term_names("gene", "gene")
    assert (names.effects, names.sd, names.cor, names.chol, names.raw) == (
        "r_gene",
        "sd_gene",
        "cor_gene",
        "L_gene",
        "z_gene",
    )
    assert names.sd_of("Intercept") == "sd_gene__Intercept"
    assert names.raw_centered(["treatment[drug]"]) == "t_gene__treatment[drug]"
    assert term_names("batch", "sample").level_dim == "batch_level"
    assert DEFAULT_PRIORS["b"] == Prior("StudentT", nu=5, mu=0, sigma=1)
