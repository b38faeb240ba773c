"""Reading, validating, normalising and filtering screen count data."""

from __future__ import annotations

from screenformula.io.counts import read_counts
from screenformula.io.filtering import filter_sgrnas
from screenformula.io.sample_sheet import check_conditions, read_gene_groups, read_sample_sheet
from screenformula.io.screen_data import ScreenData

__all__ = [
    "ScreenData",
    "check_conditions",
    "filter_sgrnas",
    "read_counts",
    "read_gene_groups",
    "read_sample_sheet",
]
