"""One-page HTML reports of a fitted screen (self-contained: images embedded)."""

from screenformula.report.html import Section, write_report

__all__ = ["Section", "write_report"]
