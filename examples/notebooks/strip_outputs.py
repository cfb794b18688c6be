"""Strip the tutorial notebooks' outputs before committing them.

Clears every code cell's outputs and execution count, empties the cells' metadata and
keeps only the kernel spec and language name in the notebook's metadata, so that a
notebook saved from Jupyter diffs only where its source changed. ``tests/test_notebooks.py``
fails on a notebook with outputs.

Usage::

    python examples/notebooks/strip_outputs.py            # every notebook in this folder
    python examples/notebooks/strip_outputs.py A.ipynb    # the ones named
    python examples/notebooks/strip_outputs.py --check    # exit 1 if any would change
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}


def strip(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """``nb`` without outputs, execution counts or metadata beyond the kernel's (in place)."""
    for cell in nb.cells:
        cell.metadata = nbformat.NotebookNode()
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    nb.metadata = nbformat.NotebookNode(
        kernelspec=nbformat.NotebookNode(KERNELSPEC),
        language_info=nbformat.NotebookNode(name="python"),
    )
    return nb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, help="default: *.ipynb beside this script")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if dirty")
    args = parser.parse_args(argv)
    dirty = []
    for path in args.paths or sorted(HERE.glob("*.ipynb")):
        before = path.read_text(encoding="utf-8")
        nb = strip(nbformat.reads(before, as_version=4))
        after = nbformat.writes(nb)
        after += "" if after.endswith("\n") else "\n"
        if after != before:
            dirty.append(path)
            if not args.check:
                path.write_text(after, encoding="utf-8")
    verb = "would strip" if args.check else "stripped"
    for path in dirty:
        print(f"{verb} {path}")
    return 1 if args.check and dirty else 0


if __name__ == "__main__":
    sys.exit(main())
