"""The package cites only documents a user of it has: files in the repo (docs/, benchmark READMEs) and papers."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent
OUTSIDE = re.compile(r"\b(DESIGN\.md|DATA\.md|STYLE\.md|DESIGN:|shared/)")


def citing_files() -> list[str]:
    return sorted(
        str(path.relative_to(ROOT)) for path in (ROOT / "loptim").rglob("*.py") if OUTSIDE.search(path.read_text())
    )


def test_no_file_cites_a_document_outside_the_repo():
    assert citing_files() == []


def test_the_cited_docs_exist():
    for name in ("docs/design.md", "docs/data.md", "docs/generalist.md", "docs/lhopt.md"):
        assert (ROOT / name).is_file(), name
