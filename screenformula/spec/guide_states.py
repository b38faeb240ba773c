"""Guide states: guides that work or fail (``ScreenModel(..., guide_states=...)``).

With ``guide_states="majority"`` each guide either works (its effect is its gene's plus
its own deviation) or fails (its effect is the screen's typical one plus its deviation),
and at most ``(k - 1) // 2`` of a gene's ``k`` guides may fail: a gene's effect is what
most of its guides show, so one outlying guide cannot carry it (JACKS's guide efficacy,
in two states). ``"any"`` lets each guide fail on its own; ``"none"`` (the default) has
every guide work. The states are summed out of each gene's posterior on an exact grid by
the two-stage engine (`screenformula.inference.two_stage.grid` for one treatment effect
per gene, `state_mixture` for several): this module says whether a model has the shape
they need.
"""

from __future__ import annotations

from typing import Any

from screenformula.errors import FormulaError

__all__ = ["GUIDE_STATES", "GridShape", "check_guide_states", "grid_shape"]

#: What ``guide_states`` takes.
GUIDE_STATES = ("none", "any", "majority")
#: Dispersion modes whose ``phi`` depends on the global parameters only.
GLOBAL_DISPERSIONS = ("trend", "shared")


class GridShape:
    """Where a model's treatment effects live: their columns and their terms' names.

    Attributes
    ----------
    coefs : tuple of str
        The population-level slopes (``treatment[treated]``; one per line in JACKS's
        design), in the design's column order.
    gene_term, guide_term : str
        The gene-level and guide-level terms' names.
    gene_slopes : list of int
        Each slope's index in the gene term.
    guide_coef : str
        The guide term's slope (the population slope itself, or a sheet column such as
        ``treated[yes]`` shared by every line).
    guide_slope : int
        Its index in the guide term.
    on_grid : bool
        One slope, shared by the guide term: each gene's posterior is computed on a grid
        (`inference.two_stage.grid`); else by a mixture of Laplace approximations, one per
        state vector (`inference.two_stage.state_mixture`).
    """

    def __init__(self, coefs: list[str], gene: Any, guide: Any) -> None:
        self.coefs = tuple(coefs)
        self.gene_term, self.guide_term = gene.name, guide.name
        self.gene_slopes = [list(gene.coef_names).index(c) for c in coefs]
        self.guide_coef = guide.coef_names[1]
        self.guide_slope = 1
        self.gene_df_name = gene.names.df if gene.has_df else None
        self.on_grid = len(coefs) == 1 and self.guide_coef == coefs[0]


def grid_shape(spec: Any) -> GridShape:
    """The `GridShape` of ``spec`` (a ModelSpec), or a `FormulaError` saying why it has none.

    Guide states need: a negative-binomial family; population-level slopes beside the
    intercept; one gene-level term ``(1 + x | gene)`` with exactly those slopes and one
    guide-level term with one slope, ``(1 + x | gene:sgrna)`` or JACKS's ``(1 + treated |
    gene:sgrna)``, and no other group term; a dispersion set by global parameters
    (``"trend"`` without a per-guide scatter, or ``"shared"``); no joint pool likelihood.
    Several slopes (one per line) need normal gene effects.
    """
    why = "guide_states needs "
    if spec.family.name != "negativebinomial":
        raise FormulaError(why + f"the negative-binomial family, not {spec.family.name}")
    names = list(spec.mean.common.names)  # the population-level slopes
    if not spec.mean.common.intercept or not names:
        raise FormulaError(
            why + "treatment effects beside an intercept, as count ~ 1 + treatment + "
            "(1 + treatment | gene) + (1 + treatment | gene:sgrna)"
        )
    genes = [t for t in spec.mean.groups if t.level == "gene"]
    guides = [t for t in spec.mean.groups if t.level == "sgrna"]
    others = [t for t in spec.mean.groups if t.level not in ("gene", "sgrna")]
    if len(genes) != 1 or len(guides) != 1 or others:
        raise FormulaError(
            why + "exactly one gene-level and one guide-level term, as (1 + treatment | gene) "
            "+ (1 + treatment | gene:sgrna)"
        )
    gene, guide = genes[0], guides[0]
    factor = names[0].split("[")[0]
    if tuple(gene.coef_names) != ("Intercept", *names):
        raise FormulaError(why + f"the gene-level term (1 + {factor} | gene)")
    if len(guide.coef_names) != 2 or guide.coef_names[0] != "Intercept":
        raise FormulaError(why + f"a guide-level term with one slope, (1 + {factor} | gene:sgrna)")
    if gene.dist == "student" or (len(names) > 1 and gene.dist != "gaussian"):
        raise FormulaError(
            why + 'normal gene effects (or "student_slopes" with one treatment effect), not '
            f"{gene.dist!r}"
        )
    disp = spec.dispersion
    if disp.mode not in GLOBAL_DISPERSIONS or getattr(disp, "guide_scatter", False):
        raise FormulaError(
            why + "a dispersion set by global parameters (dispersion='trend' without sd_phi, "
            f"or 'shared'), not {disp.mode!r}"
            + (" with a per-guide scatter" if getattr(disp, "guide_scatter", False) else "")
        )
    if spec.pool.mode == "joint":
        raise FormulaError(
            why + "the pool as an offset (pool='offset') or no pool sample, not pool='joint'"
        )
    return GridShape(names, gene, guide)


def check_guide_states(value: str, spec: Any) -> str:
    """``value`` checked against `GUIDE_STATES` and, unless ``"none"``, ``spec``'s shape."""
    if value not in GUIDE_STATES:
        raise FormulaError(f"guide_states must be one of {', '.join(GUIDE_STATES)}, not {value!r}")
    if value != "none":
        grid_shape(spec)
    return value
