"""Figures from result tables (matplotlib; no models needed)."""

from screenformula.plotting.contrasts import (
    forest_plot,
    gene_panel,
    group_plot,
    rank_plot,
    volcano_plot,
)

__all__ = ["forest_plot", "gene_panel", "group_plot", "rank_plot", "volcano_plot"]
