"""Priors, brms-style: set by class (``b``, ``sd``, ``cor``, ...), by term or by group.

A prior is a distribution name from PyMC with its parameters. ``bambi.Prior`` objects
are accepted as they are (anything with ``.name`` and ``.args``). No PyMC here: the
backend turns a `Prior` into a PyMC variable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from screenformula.errors import FormulaError

#: PyMC distributions allowed as priors, with the parameters each needs (a table of data).
DISTRIBUTIONS: dict[str, tuple[set[str], bool]] = {
    # name: (accepted parameters, positive support)
    "Normal": ({"mu", "sigma"}, False),
    "StudentT": ({"nu", "mu", "sigma"}, False),
    "Cauchy": ({"alpha", "beta"}, False),
    "Laplace": ({"mu", "b"}, False),
    "Logistic": ({"mu", "s"}, False),
    "HalfNormal": ({"sigma"}, True),
    "HalfStudentT": ({"nu", "sigma"}, True),
    "HalfCauchy": ({"beta"}, True),
    "Exponential": ({"lam", "scale"}, True),
    "Gamma": ({"alpha", "beta", "mu", "sigma"}, True),
    "InverseGamma": ({"alpha", "beta", "mu", "sigma"}, True),
    "LogNormal": ({"mu", "sigma"}, True),
    "Weibull": ({"alpha", "beta"}, True),
    "Uniform": ({"lower", "upper"}, False),
    "TruncatedNormal": ({"mu", "sigma", "lower", "upper"}, False),
    # brms's constant(): a fixed value, not a random variable (Student-t df only)
    "Constant": ({"value"}, True),
    # replicate_scale: the log scales of one condition's replicates, summing to zero
    "ZeroSumNormal": ({"sigma"}, False),
}
#: The one prior of ``log_scale`` (and only of it): replicate scales sum to zero on the log
#: scale within a condition, so the effect stays the replicates' geometric mean.
SCALE_PRIOR = "ZeroSumNormal"
#: Prior classes that take ``Constant``: a fixed Student-t df is a choice of model;
#: a fixed sd or slope would leave a hole where summaries expect draws.
CONSTANT_CLASSES = ("df",)


@dataclass(frozen=True)
class Prior:
    """A prior distribution: a PyMC distribution name and its parameters.

    Parameters
    ----------
    name : str
        A PyMC distribution name, e.g. ``"StudentT"``.
    **args
        Its parameters, e.g. ``nu=5, mu=0, sigma=1``.

    Examples
    --------
    >>> Prior("StudentT", nu=5, mu=0, sigma=1)
    StudentT(nu=5, mu=0, sigma=1)
    """

    name: str
    args: dict[str, Any] = field(default_factory=dict)

    def __init__(self, name: str, **args: Any) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "args", dict(args))

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={_fmt(v)}" for k, v in self.args.items())
        return f"{self.name}({inner})"

    def to_dict(self) -> dict[str, Any]:
        """Plain dict form (saved with a fit)."""
        return {"name": self.name, "args": {k: float(v) for k, v in self.args.items()}}

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> Prior:
        """Rebuild from `to_dict`, or from a ``{"name": ..., "args": {...}}`` config entry."""
        return cls(value["name"], **dict(value.get("args") or {}))


#: The default priors, by key (the one table that answers "what is the default for X?").
#: Slopes, group sds and the dispersion parameters; intercepts are centred on the data
#: (`centred_intercept`).
DEFAULT_PRIORS: dict[str, Prior] = {
    "b": Prior("StudentT", nu=5, mu=0, sigma=1),
    "sd": Prior("Exponential", lam=1),
    "phi": Prior("Gamma", alpha=0.01, beta=0.01),  # one shared dispersion (brms's default)
    "phi_rate": Prior("Gamma", alpha=1, beta=1),  # rate of the per-guide phi[s] ~ Gamma(1, .)
    "b_pool": Prior("StudentT", nu=5, mu=1, sigma=1),  # pool="covariate": about 1 expected
    "phi_pool": Prior("Gamma", alpha=2, beta=0.05),  # pool samples: near-Poisson, mean 40
    "alpha_Intercept": Prior("StudentT", nu=3, mu=0, sigma=2.5),  # log phi formula
    # dispersion="trend": log phi at the median abundance (phi ~ 20, from e^-1 to e^7 within
    # 2 sd), its slope in log abundance, and the sd of guides around the trend
    "phi_trend_Intercept": Prior("Normal", mu=3, sigma=2),
    "phi_trend_slope": Prior("Normal", mu=0, sigma=1),
    "sd_phi": Prior("HalfNormal", sigma=1),
    "df": Prior("Gamma", alpha=2, beta=0.1),  # Student-t varying effects (brms's default)
    # replicate_scale="condition": log effect scales of a condition's replicates (x0.6 to
    # x1.6 within one sd; every replicate of HAP1, JACKS and RT112 lies within 2 sd)
    "log_scale": Prior("ZeroSumNormal", sigma=0.5),
}
#: Default df of ``gr(..., dist = "student_slopes")`` terms: fixed at 3 (brms's constant(3)).
#: Estimated (``DEFAULT_PRIORS["df"]``, brms's Gamma(2, 0.1)), df ran below 1 genome-wide
#: with the slopes' sd near 0, where the two-stage engine's stage 1 cannot mix (HAP1);
#: fixed at 3, the panel's JACKS lines called as many essentials as MAGeCK or more
#: (benchmarks/results/panel.md, ``trend-t3scale``).
STUDENT_SLOPES_DF = Prior("Constant", value=3)
#: Default LKJ shape of correlated terms (the seed's choice; brms uses 1).
DEFAULT_LKJ_ETA = 3.0


def centred_intercept(center: float) -> Prior:
    """Student-t(3, ``center``, 2.5): an intercept centred where the data put it.

    ``center`` is the log median normalised count (the screen intercept), or the pool's
    offset from it (``pool_shift``).
    """
    return Prior("StudentT", nu=3, mu=round(center, 3), sigma=2.5)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def as_prior(value: Any, key: str, *, positive: bool = False) -> Prior:
    """Check a user prior and return it as a `Prior`.

    Parameters
    ----------
    value : Prior, bambi.Prior or (name, dict)
    key : str
        The prior's key in ``priors=``, used in messages.
    positive : bool
        True where the parameter must be positive (sds, dispersion).

    Raises
    ------
    FormulaError
        Naming ``key`` for an unknown distribution, a wrong parameter or a prior whose
        support does not fit (a Normal on an sd).
    """
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], dict):
        value = Prior(value[0], **value[1])
    name = getattr(value, "name", None)
    args = getattr(value, "args", None)
    if not isinstance(name, str) or not isinstance(args, dict):
        raise FormulaError(
            f"prior for {key!r} must be a screenformula.Prior or bambi.Prior, got {value!r}"
        )
    if name not in DISTRIBUTIONS:
        raise FormulaError(
            f"prior for {key!r}: unknown distribution {name!r} "
            f"(choose one of {', '.join(sorted(DISTRIBUTIONS))})"
        )
    accepted, positive_support = DISTRIBUTIONS[name]
    unknown = set(args) - accepted
    if unknown:
        raise FormulaError(
            f"prior for {key!r}: {name} has no parameter {sorted(unknown)[0]!r} "
            f"(it takes {', '.join(sorted(accepted))})"
        )
    clean: dict[str, float] = {}
    for arg, val in args.items():
        try:  # bambi stores parameters as 0-d arrays
            number = float(np.asarray(val).item()) if not isinstance(val, bool) else None
        except (TypeError, ValueError):
            number = None
        if number is None:
            raise FormulaError(f"prior for {key!r}: {name}({arg}=...) must be a number")
        val = clean[arg] = int(number) if number.is_integer() and isinstance(val, int) else number
        if arg in {"sigma", "beta", "lam", "nu", "scale", "s", "b"} and val <= 0:
            raise FormulaError(f"prior for {key!r}: {name}({arg}={val}) must be positive")
    if name == "Constant":
        if "value" not in clean:
            raise FormulaError(f"prior for {key!r}: Constant needs value=")
        if positive and clean["value"] <= 0:
            value = clean["value"]
            raise FormulaError(f"prior for {key!r}: Constant(value={value}) must be positive")
    if positive and not positive_support:
        raise FormulaError(
            f"prior for {key!r}: {name} allows negative values but {key!r} must be positive "
            "(use e.g. Exponential, HalfNormal, HalfStudentT or Gamma)"
        )
    return Prior(name, **clean)


def as_lkj_eta(value: Any, key: str) -> float:
    """An LKJ shape from a number or ``Prior("LKJ", eta=...)``."""
    if getattr(value, "name", None) == "LKJ":
        value = getattr(value, "args", {}).get("eta")
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        raise FormulaError(f"prior for {key!r}: the LKJ eta must be a positive number")
    return float(value)
