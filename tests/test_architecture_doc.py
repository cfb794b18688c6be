"""docs/architecture.md names every module of the package (its "Every module" table), so
that a newcomer finds any concept from the document, and the document cannot drift from
the tree unnoticed."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pullback_geom"


def _row(path: Path) -> str:
    """The table row a module needs: its path and its docstring's first paragraph."""
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    first = " ".join(doc.strip().split("\n\n")[0].split())
    return f"| `{path.relative_to(PACKAGE).as_posix()}` | {first} |"


def test_architecture_names_every_module():
    text = (ROOT / "docs" / "architecture.md").read_text()
    missing = [
        _row(p)
        for p in sorted(PACKAGE.rglob("*.py"))
        if f"| `{p.relative_to(PACKAGE).as_posix()}` |" not in text
    ]
    assert not missing, "add to docs/architecture.md's module table:\n" + "\n".join(missing)


def test_architecture_names_no_module_that_is_gone():
    text = (ROOT / "docs" / "architecture.md").read_text()
    table = text[text.index("## Every module") :]
    named = [line.split("`")[1] for line in table.splitlines() if line.startswith("| `")]
    gone = [name for name in named if not (PACKAGE / name).exists()]
    assert not gone, f"docs/architecture.md lists modules that do not exist: {gone}"
