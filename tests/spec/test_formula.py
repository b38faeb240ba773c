from __future__ import annotations

import pytest

from screenformula.errors import FormulaError
from screenformula.spec.formula import parse_formula


def test_split_correlated_and_independent_blocks():
    p = parse_formula(
        "count ~ 1 + treatment + (1 + treatment | gene) + (1 + treatment || gene:sgrna)"
    )
    assert p.response == "count"
    assert p.common == "1 + treatment"
    assert [(g.expr, g.factor, g.correlated) for g in p.groups] == [
        ("1 + treatment", ("gene",), True),
        ("1 + treatment", ("gene", "sgrna"), False),
    ]
    assert p.variables == {"treatment", "gene", "sgrna"}


def test_nesting_expands_like_brms():
    p = parse_formula("count ~ treatment + (1 + treatment | group/gene/sgrna)")
    assert [g.factor for g in p.groups] == [
        ("group",),
        ("group", "gene"),
        ("group", "gene", "sgrna"),
    ]
    assert all(g.correlated for g in p.groups)


def test_minus_one_and_offset_kept_in_common_part():
    p = parse_formula("count ~ treatment - 1 + offset(log(x)) + (1 | gene)")
    assert p.common == "treatment - 1 + offset(log(x))"
    assert p.variables == {"treatment", "x", "gene"}


def test_dispersion_formula_response():
    assert parse_formula("alpha ~ 1 + (1 | sgrna)", dispersion=True).response == "alpha"
    with pytest.raises(FormulaError, match="dispersion formula must start with one of"):
        parse_formula("count ~ 1", dispersion=True)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("count 1 + treatment", "exactly one '~'"),
        ("count ~ 1 + (1 | gene", "unbalanced '\\('"),
        ("count ~ 1 + 1 | gene)", "unbalanced '\\)'"),
        ("count ~ 1 + ( | gene)", "has no effects before"),
        ("count ~ 1 + (1 | )", "has no grouping factor"),
        ("count ~ 1 + (1 | gene-x)", "cannot read"),
        ("a b ~ 1", "must be a single name"),
    ],
)
def test_bad_formulas_get_one_line_errors(text, message):
    with pytest.raises(FormulaError, match=message) as err:
        parse_formula(text)
    assert "\n" not in str(err.value)
