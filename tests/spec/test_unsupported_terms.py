"""brms terms screenformula does not fit are refused by name (issue 16).

``s(x)`` used to fail as "unknown variable 'x'", which reads as a typo in the sample
sheet; the error now names the term and says it is not supported, in one line.
"""

from __future__ import annotations

import pytest

import screenformula as sf
from screenformula.errors import FormulaError
from screenformula.spec.formula import UNSUPPORTED_TERMS, parse_formula


@pytest.mark.parametrize(
    ("formula", "term"),
    [
        ("count ~ 1 + treatment + s(dose) + (1 | gene)", "s(dose)"),
        ("count ~ 1 + s(dose, k = 3)", "s(dose, k = 3)"),
        ("count ~ 1 + t2(dose, time)", "t2(dose, time)"),
        ("count ~ 1 + gp(dose)", "gp(dose)"),
        ("count ~ 1 + mo(dose)", "mo(dose)"),
        ("count ~ 1 + me(dose, sd_dose)", "me(dose, sd_dose)"),
        ("count ~ 1 + mi(dose)", "mi(dose)"),
        ("count ~ 1 + (1 + s(dose) | gene)", "s(dose)"),
        ("alpha ~ 1 + gp(dose)", "gp(dose)"),
    ],
)
def test_an_unsupported_term_is_named_in_one_line(formula, term):
    dispersion = formula.startswith("alpha")
    with pytest.raises(FormulaError) as info:
        parse_formula(formula, dispersion=dispersion)
    message = str(info.value)
    assert message.startswith(f"{term} is not supported by screenformula")
    assert "unknown variable" not in message and "\n" not in message


def test_names_that_only_end_like_a_special_term_still_parse():
    parsed = parse_formula("count ~ 1 + doses + (1 | gr(gene, dist = 'student'))")
    assert parsed.common == "1 + doses"
    assert {"s", "gp", "mo", "me", "mi", "t2"} <= set(UNSUPPORTED_TERMS)


def test_the_model_says_so_before_looking_at_the_data(small_screen):
    data, _ = small_screen
    with pytest.raises(FormulaError, match=r"^s\(x\) is not supported by screenformula"):
        sf.ScreenModel("count ~ 1 + treatment + s(x) + (1 | gene)", data)
