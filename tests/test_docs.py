"""The documents the code cites live in the repository."""

from __future__ import annotations

import re

from _paths import ROOT


def test_model_spec_is_in_the_repository_and_cited_there():
    assert (ROOT / "docs" / "MODEL.md").is_file()
    assert (ROOT / "ARCHITECTURE.md").is_file()
    for path in [*(ROOT / "screenformula").rglob("*.py"), *(ROOT / "tutorials").glob("*.py")]:
        for line in path.read_text(encoding="utf-8").splitlines():
            for match in re.finditer(r"[\w./]*MODEL\.md", line):
                assert match.group(0).endswith("docs/MODEL.md"), f"{path}: {line.strip()}"


def test_every_subpackage_says_what_it_holds():
    for init in (ROOT / "screenformula").glob("*/__init__.py"):
        text = init.read_text(encoding="utf-8").lstrip()
        assert text.startswith('"""'), f"{init} has no docstring"
