"""The documentation's links work from where each page lives."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT

PAGES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
PAGES += [
    REPO_ROOT / "benchmarks" / "README.md",
    REPO_ROOT / "examples" / "extended_video" / "README.md",
]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO_ROOT)))
def test_relative_links__resolve_from_the_page(page: Path) -> None:
    targets = [target for target in LINK.findall(page.read_text()) if "://" not in target]
    broken = [target for target in targets if not (page.parent / target).exists()]
    assert broken == []


def test_migrations_page__no_leftover_draft() -> None:
    text = (REPO_ROOT / "docs" / "migrations.md").read_text()
    assert "## README section" not in text
    assert "aana heads" in text and "aana migrate --sql" in text
