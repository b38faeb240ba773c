"""Figures from result tables (matplotlib; no models needed)."""

from screenformula.plotting.brms import conditional_effects_plot, pp_check_plot
from screenformula.plotting.contrasts import (
    forest_plot,
    gene_panel,
    group_plot,
    rank_plot,
    volcano_plot,
)

__all__ = [
    "conditional_effects_plot",
    "forest_plot",
    "gene_panel",
    "group_plot",
    "pp_check_plot",
    "rank_plot",
    "volcano_plot",
]
