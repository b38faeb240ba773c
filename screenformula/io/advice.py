"""Data errors whose fix is a setting, worded for the interface the user is in.

`read_counts` and the size factors say ``use size_factors='total'``; the command line
says ``use --norm-method total`` for the same problem. An `AdvisedDataError` keeps its
message as a template with the fixes apart, so each interface can word them its own way
(`AdvisedDataError.worded`); ``str(err)`` is the Python wording.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from screenformula.errors import ScreenDataError

__all__ = ["AdvisedDataError", "Wording", "python_wording"]

#: How an interface words a fix: its name and suggested value (None: no value) -> text.
Wording = Mapping[str, Callable[[str | None], str]]

#: Fixes that are not a keyword of `read_counts`, worded for Python.
_PYTHON_SPECIAL: dict[str, Callable[[str | None], str]] = {
    "leave_out": lambda sample: (
        f"leave {sample!r} out (read with size_factors='none', then "
        "data.subset(samples=[...]).with_size_factors(...))"
    ),
    "controls": lambda _: "controls=... (a gene label, sgRNA ids or a file of them)",
}


def python_wording(fix: str, value: str | None) -> str:
    """A fix as Python code: ``size_factors='total'`` (``controls=...`` without a value)."""
    if fix in _PYTHON_SPECIAL:
        return _PYTHON_SPECIAL[fix](value)
    return f"{fix}=..." if value is None else f"{fix}={value!r}"


class AdvisedDataError(ScreenDataError):
    """A `ScreenDataError` whose message suggests settings the user can change.

    Parameters
    ----------
    where : str
        Literal start of the message (a file and line), or ``""``.
    template : str
        The rest of the message, with ``{fix}`` where each fix is named.
    fixes : mapping of str to str or None
        Fix name (a `read_counts` keyword such as ``size_factors``, or ``leave_out``)
        -> the suggested value (None: the setting itself, no value).
    """

    def __init__(self, where: str, template: str, fixes: Mapping[str, str | None]) -> None:
        self.where = where
        self.template = template
        self.fixes = dict(fixes)
        super().__init__(self.worded({}))

    def worded(self, wording: Wording) -> str:
        """The message with each fix worded by ``wording`` (Python's for the others)."""
        texts = {
            fix: wording[fix](value) if fix in wording else python_wording(fix, value)
            for fix, value in self.fixes.items()
        }
        text = self.template.format(**texts)
        return f"{self.where}: {text}" if self.where else text

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.where, self.template, self.fixes))
