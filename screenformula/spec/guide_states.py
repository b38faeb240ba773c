"""Guide states: guides that work or fail (``ScreenModel(..., guide_states=...)``).

With ``guide_states="majority"`` each guide either works (its effect is its gene's plus
its own deviation) or fails (its effect is the screen's typical one plus its deviation),
and at most ``(k - 1) // 2`` of a gene's ``k`` guides may fail: a gene's effect is what
most of its guides show, so one outlying guide cannot carry it (JACKS's guide efficacy,
in two states). ``"any"`` lets each guide fail on its own; ``"none"`` (the default) has
every guide work. The states are summed out of each gene's posterior on an exact grid by
the two-stage engine (`screenformula.inference.two_stage.grid`), which needs one
treatment effect per gene: this module says whether a model has that shape.
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
    """Where a model's one treatment effect lives: its column and its terms' names.

    Attributes
    ----------
    coef : str
        The treatment coefficient (``treatment[treated]``).
    column : int
        Its column in the population-level design (and in ``b``).
    gene_term, guide_term : str
        The gene-level and guide-level terms' names.
    gene_slope, guide_slope : int
        The coefficient's index in each term.
    """

    def __init__(self, coef: str, column: int, gene: Any, guide: Any) -> None:
        self.coef, self.column = coef, column
        self.gene_term, self.guide_term = gene.name, guide.name
        self.gene_slope = list(gene.coef_names).index(coef)
        self.guide_slope = list(guide.coef_names).index(coef)
        self.gene_df_name = gene.names.df if gene.has_df else None
        self.gene_dist = gene.dist


def grid_shape(spec: Any) -> GridShape:
    """The `GridShape` of ``spec`` (a ModelSpec), or a `FormulaError` saying why it has none.

    Guide states need: a negative-binomial family; one population-level slope beside the
    intercept; one gene-level term ``(1 + x | gene)`` and one guide-level term
    ``(1 + x | gene:sgrna)``, and no other group term; a dispersion
    set by global parameters (``"trend"`` without a per-guide scatter, or ``"shared"``);
    no joint pool likelihood.
    """
    why = "guide_states needs "
    if spec.family.name != "negativebinomial":
        raise FormulaError(why + f"the negative-binomial family, not {spec.family.name}")
    names = list(spec.mean.common.names)  # the population-level slopes
    slopes = [n for n in names if n != "Intercept"]
    if not spec.mean.common.intercept or len(slopes) != 1 or len(names) != 1:
        raise FormulaError(
            why + "one treatment effect beside the intercept, as count ~ 1 + treatment + "
            f"(1 + treatment | gene) + (1 + treatment | gene:sgrna); the formula has {names}"
        )
    coef = slopes[0]
    genes = [t for t in spec.mean.groups if t.level == "gene"]
    guides = [t for t in spec.mean.groups if t.level == "sgrna"]
    others = [t for t in spec.mean.groups if t.level not in ("gene", "sgrna")]
    if len(genes) != 1 or len(guides) != 1 or others:
        raise FormulaError(
            why + "exactly one gene-level and one guide-level term, as (1 + treatment | gene) "
            "+ (1 + treatment | gene:sgrna)"
        )
    gene, guide = genes[0], guides[0]
    if tuple(gene.coef_names) != ("Intercept", coef):
        raise FormulaError(why + f"the gene-level term (1 + {coef.split('[')[0]} | gene)")
    if tuple(guide.coef_names) != ("Intercept", coef):
        raise FormulaError(why + f"the guide-level term (1 + {coef.split('[')[0]} | gene:sgrna)")
    if gene.dist == "student":
        raise FormulaError(why + 'normal or "student_slopes" gene effects, not "student"')
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
    return GridShape(coef, names.index(coef), gene, guide)


def check_guide_states(value: str, spec: Any) -> str:
    """``value`` checked against `GUIDE_STATES` and, unless ``"none"``, ``spec``'s shape."""
    if value not in GUIDE_STATES:
        raise FormulaError(f"guide_states must be one of {', '.join(GUIDE_STATES)}, not {value!r}")
    if value != "none":
        grid_shape(spec)
    return value
