"""Code blocks of the README and docs/ that tests execute as written: each block follows an HTML comment
marker (`<!-- name -->`) in exactly one file, so a block can move between the guide and docs/ freely."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def doc_snippet(marker: str, lang: str = "python") -> str:
    """The code of the `lang` block right after `<!-- marker -->` in README.md or docs/*.md (exactly one)."""
    pattern = re.compile(rf"<!-- {re.escape(marker)} -->\s*```{lang}\n(.*?)```", re.S)
    found = [(path, m.group(1)) for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
             for m in pattern.finditer(path.read_text())]
    assert len(found) == 1, f"<!-- {marker} --> {lang} block: {len(found)} found in README.md and docs/ ({[str(p) for p, _ in found]})"
    return found[0][1]
