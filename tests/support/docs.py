"""Names the documentation lists in a Markdown table, for tests that keep a table and the code
that it describes the same."""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["table_names"]


def table_names(document: Path, heading: str, name: str = r"\w+") -> set[str]:
    """Every `` `name` `` in the first column of the rows of the table under ``## heading``."""
    text = document.read_text(encoding="utf-8")
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    pattern = re.compile(rf"`({name})`")
    return {
        found
        for row in section.splitlines()
        if row.startswith("| `")
        for found in pattern.findall(row.split(" | ", 1)[0])
    }
