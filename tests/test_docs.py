"""The docs' method table and the registry must list the same methods."""

from __future__ import annotations

import re
from pathlib import Path

from camscope import get_method, list_methods

DOCS = Path(__file__).resolve().parents[1] / "docs" / "methods.md"


def documented_methods() -> list[str]:
    rows = re.findall(r"^\| `([^`]+)` \|", DOCS.read_text(encoding="utf-8"), flags=re.MULTILINE)
    return rows


def test_every_registered_method_has_one_docs_line() -> None:
    documented = documented_methods()
    assert sorted(documented) == sorted(list_methods())
    assert len(documented) == len(set(documented))


def test_docs_paper_column_matches_registry() -> None:
    for line in DOCS.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^\| `([^`]+)` \|", line)
        if match:
            assert get_method(match.group(1)).paper in line, match.group(1)
