"""Errors raised for bad user input: one clear line, no deep traceback."""


class ScreenFormulaError(ValueError):
    """Base class for every user-facing error of screenformula."""


class ScreenDataError(ScreenFormulaError):
    """A count table, sample sheet, gene-group or control list is invalid."""


class FormulaError(ScreenFormulaError):
    """A formula names an unknown variable, an unsupported term or a bad prior."""


class FitError(ScreenFormulaError):
    """A fit cannot be run, saved or loaded as asked."""
