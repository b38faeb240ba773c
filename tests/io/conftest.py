"""Shared fixtures for the io tests: tiny files on disk and the one-line error check."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _paths import SHARED_DATA

from screenformula.errors import ScreenDataError

DATA = SHARED_DATA


@pytest.fixture
def data_dir() -> Path:
    """The real public screens (see its README.md); skip when not present."""
    if not (DATA / "mageck-leukemia" / "sample.txt").is_file():
        pytest.skip(f"real screen data not found under {DATA} (set SCREENFORMULA_DATA)")
    return DATA


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write ``text`` to ``tmp_path / name`` and return the path."""

    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return _write


@pytest.fixture
def expect_error() -> Callable[..., str]:
    """Run ``call``; it must raise ScreenDataError matching ``match`` on ONE line."""

    def _check(call: Callable[[], Any], match: str) -> str:
        with pytest.raises(ScreenDataError, match=match) as info:
            call()
        message = str(info.value)
        assert "\n" not in message, f"error is not one line: {message!r}"
        assert message == message.strip()
        return message

    return _check
