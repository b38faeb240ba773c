"""Names of the posterior variables and dimensions: the one place that spells them.

Group-level names belong to the term (`GroupTerm.effects_name` and its siblings, in
`screenformula.spec.terms`, built by `term_names` here); population-level and
dispersion names are the constants below. The backend names its PyMC variables with
these, and every reader of a posterior (contrasts, expected counts, the pool's
correlations, the test fakes) looks them up here.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "LOG_SCALE",
    "REPLICATE_DIM",
    "REPLICATE_SCALE",
    "scale_names",
    "B",
    "B_COEF_DIM",
    "B_POOL",
    "INTERCEPT",
    "OBSERVED",
    "OBSERVED_POOL",
    "PHI",
    "PHI_POOL",
    "PHI_RATE",
    "PHI_CLASS_DIM",
    "PHI_SD",
    "PHI_TREND_INTERCEPT",
    "PHI_TREND_SLOPE",
    "PHI_Z",
    "POOL_INTERCEPT",
    "POOL_SHIFT",
    "CHOL_PREFIX",
    "TermNames",
    "cor_label",
    "cor_pairs",
    "population_names",
    "term_names",
]

#: Population-level intercept (``prefix + INTERCEPT`` for the dispersion formula).
INTERCEPT = "Intercept"
#: Population-level slopes, a vector over `B_COEF_DIM`.
B = "b"
#: Coefficient of the centred log pool abundance (pool="covariate").
B_POOL = "b_pool"
#: Dimension of the population-level slopes.
B_COEF_DIM = "b_coef"
#: Negative-binomial dispersion: one value (``dispersion="shared"``) or one per guide.
PHI = "phi"
#: Rate of the per-guide dispersion's gamma prior.
PHI_RATE = "phi_rate"
#: dispersion="trend": per sample class, ``log phi[s, c] = phi_trend_Intercept[c] +
#: phi_trend_slope[c] * x[s] + sd_phi[c] * z_phi[s]`` (x: the guide's centred log abundance).
PHI_TREND_INTERCEPT = "phi_trend_Intercept"
PHI_TREND_SLOPE = "phi_trend_slope"
PHI_SD = "sd_phi"
PHI_Z = "z_phi"
#: Dimension of the dispersion's sample classes.
PHI_CLASS_DIM = "phi_class"
#: The pool's own dispersion, intercept and shift from the screen intercept (pool="joint").
PHI_POOL = "phi_pool"
POOL_INTERCEPT = "pool_Intercept"
POOL_SHIFT = "pool_shift"
#: replicate_scale="condition": ``log_scale__<condition>`` (over that condition's replicates,
#: dimension ``replicate__<condition>``) and every scaled replicate's factor
#: ``replicate_scale`` (dimension ``replicate``; every other screen sample's is 1, not
#: stored: R-hat of a constant divides 0 by 0). `scale_names` gives the per-condition names.
LOG_SCALE = "log_scale"
REPLICATE_SCALE = "replicate_scale"
REPLICATE_DIM = "replicate"
#: Prefix of a correlated term's LKJ Cholesky factor (`TermNames.chol`: ``L_<term>``).
CHOL_PREFIX = "L_"
#: Observed screen counts (guide x sample) and pool counts (guide x pool sample).
OBSERVED = "count"
OBSERVED_POOL = "pool_count"


@dataclass(frozen=True)
class PopulationNames:
    """Names of one linear predictor's population-level variables (``prefix`` + name)."""

    intercept: str
    b: str
    b_coef_dim: str


def population_names(prefix: str = "") -> PopulationNames:
    """Population-level names of the mean (``prefix=""``) or dispersion (``"alpha_"``)."""
    return PopulationNames(f"{prefix}{INTERCEPT}", f"{prefix}{B}", f"{prefix}{B_COEF_DIM}")


@dataclass(frozen=True)
class TermNames:
    """Every name a group term's variables and dimensions take.

    ``effects`` (``r_<term>``, levels x coefs) is what readers use; ``sd``, ``cor`` and
    ``chol`` the hyper-parameters (``cor`` holds the correlations as brms stores them, one
    entry per pair of coefficients along `cor_dim`, so no entry is constant; ``chol``, the
    LKJ Cholesky factor, is sampled but not kept in a fit's posterior); ``raw_centered`` /
    ``raw`` the sampled raw effects; ``df`` and ``mix`` the degrees of freedom and
    per-level gamma weights of Student-t effects (``gr(..., dist = "student")``).
    """

    term: str
    level_dim: str
    coef_dim: str
    effects: str
    sd: str
    cor: str
    chol: str
    raw: str
    df: str
    mix: str

    def sd_of(self, coef: str) -> str:
        """Name of the sd of one coefficient when priors differ (``sd_<term>__<coef>``)."""
        return f"{self.sd}__{coef}"

    @property
    def raw_t(self) -> str:
        """Raw Student-t slopes beside raw normal intercepts (``z_<term>_t``)."""
        return f"{self.raw}_t"

    def raw_centered(self, coefs: list[str] | tuple[str, ...]) -> str:
        """Name of the raw centred block of ``coefs`` (``t_<term>__<coef>__<coef>``)."""
        return f"t_{self.term}__{'__'.join(coefs)}"

    @property
    def cor_dim(self) -> str:
        """The dimension of the correlations: one entry per pair (`cor_pairs`)."""
        return f"{self.term}_cor"

    @property
    def cor_dims(self) -> tuple[str, str]:
        """The two dimensions of a full correlation matrix (fits saved before `cor_dim`)."""
        return self.coef_dim, self.coef_dim + "_"


def cor_pairs(n_coefs: int) -> list[tuple[int, int]]:
    """The pairs ``(i, j)``, ``i < j``, of ``n_coefs`` coefficients in brms's order.

    brms's ``cor(1,2), cor(1,3), cor(2,3), ...``: the order of the entries along
    `TermNames.cor_dim`.
    """
    return [(i, j) for i in range(n_coefs) for j in range(i + 1, n_coefs)]


def cor_label(a: str, b: str) -> str:
    """The coordinate of the correlation of coefficients ``a`` and ``b``: ``"a,b"``.

    As in brms's ``cor(a,b)``; not ``:``, which marks an interaction in a coefficient.
    """
    return f"{a},{b}"


def term_names(name: str, level: str) -> TermNames:
    """The names of term ``name`` whose levels are ``level`` (group/gene/sgrna/sample)."""
    return TermNames(
        term=name,
        level_dim=level if level != "sample" else f"{name}_level",
        coef_dim=f"{name}_coef",
        effects=f"r_{name}",
        sd=f"sd_{name}",
        cor=f"cor_{name}",
        chol=f"{CHOL_PREFIX}{name}",
        raw=f"z_{name}",
        df=f"df_{name}",
        mix=f"w_{name}",
    )


def scale_names(label: str) -> tuple[str, str]:
    """The variable and dimension names of one condition's log replicate scales."""
    return f"{LOG_SCALE}__{label}", f"replicate__{label}"
