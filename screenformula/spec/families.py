"""Response families, as a table of data (as Bambi keeps them)."""

from __future__ import annotations

from dataclasses import dataclass

from screenformula.errors import FormulaError


@dataclass(frozen=True)
class Family:
    """A count family: its name, link, dispersion parameter and brms spelling."""

    name: str
    link: str
    dispersion: str | None
    brms: str
    pymc: str


FAMILIES: dict[str, Family] = {
    "negativebinomial": Family(
        name="negativebinomial",
        link="log",
        dispersion="phi",  # Var = mu + mu^2 / phi (brms: shape, Bambi: alpha)
        brms="negbinomial()",
        pymc="NegativeBinomial",
    ),
    "poisson": Family(
        name="poisson", link="log", dispersion=None, brms="poisson()", pymc="Poisson"
    ),
}

ALIASES = {
    "negbinomial": "negativebinomial",
    "nb": "negativebinomial",
    "negative_binomial": "negativebinomial",
}


def get_family(name: str) -> Family:
    """Look a family up by name or alias, with a clear error otherwise."""
    key = ALIASES.get(str(name).lower(), str(name).lower())
    if key not in FAMILIES:
        raise FormulaError(f"unknown family {name!r}: choose one of {', '.join(FAMILIES)}")
    return FAMILIES[key]
