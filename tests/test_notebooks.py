"""The tutorial notebooks of examples/notebooks: each runs from top to bottom in a fresh
kernel, and each is committed without outputs.

Every ``*.ipynb`` in the folder is collected, so a new notebook is tested without editing
this file. The kernel runs in a temporary folder with matplotlib's Agg backend, no GPU,
no progress bars and a data folder that does not exist (the notebooks use only the
bundled models); it takes about 10-15 s per notebook on 2 CPU cores.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "examples" / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))
IDS = [p.name for p in PATHS]


def test_the_tutorial_notebooks_exist():
    assert len(PATHS) >= 3, f"expected the tutorial notebooks in {NOTEBOOKS}"


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_committed_without_outputs(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert nb["nbformat"] == 4
    assert nb["metadata"].get("kernelspec", {}).get("name") == "python3"
    extra = sorted(set(nb["metadata"]) - {"kernelspec", "language_info"})
    assert not extra, f"{path.name}: metadata {extra}; run examples/notebooks/strip_outputs.py"
    dirty = [
        i
        for i, cell in enumerate(nb["cells"])
        if cell["cell_type"] == "code" and (cell["outputs"] or cell["execution_count"] is not None)
    ]
    assert not dirty, (
        f"{path.name}: cells {dirty} have outputs or execution counts; strip them with "
        "'python examples/notebooks/strip_outputs.py' before committing"
    )


@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_runs_top_to_bottom(path, tmp_path):
    # The dev extra installs them: a missing one is a failure, not a skip.
    import ipykernel  # noqa: F401  (the kernel nbclient starts)
    import nbclient
    import nbformat

    nb = nbformat.read(path, as_version=4)
    env = {
        **os.environ,
        "MPLBACKEND": "Agg",
        "CUDA_VISIBLE_DEVICES": "",
        "GEOMSTATS_BACKEND": "pytorch",
        "PULLBACK_GEOM_QUIET": "1",
        "PULLBACK_GEOM_DATA": str(tmp_path / "no-data"),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    client = nbclient.NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute(env=env)  # raises CellExecutionError, with the cell and traceback
    errors = [
        out
        for cell in nb.cells
        for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]
    assert not errors
