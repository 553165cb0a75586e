"""docs/tutorial.ipynb runs from its first cell to its last, so the tutorial cannot rot.

The notebook is executed with nbclient in a fresh kernel of this interpreter, in a temporary
folder (everything it writes goes below it), and any cell error fails the test. It is stored
without outputs, so that its diffs stay readable.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parent.parent / "docs" / "tutorial.ipynb"

#: Per-cell limit. The notebook runs in ~10 s once the model's kernels are compiled; on a fresh
#: installation the first cells compile them (tens of seconds on a loaded 2-core machine).
CELL_TIMEOUT_S = 600

KERNEL = "mesaopt-tutorial"


def _kernel_of_this_interpreter(folder: Path) -> None:
    """Write a kernelspec that starts ipykernel with this test's Python.

    JUPYTER_PATH comes first in Jupyter's search path, so a ``python3`` kernel the user
    installed elsewhere cannot run the notebook against another environment.
    """
    spec = folder / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    kernel = {"argv": argv, "display_name": KERNEL, "language": "python"}
    (spec / "kernel.json").write_text(json.dumps(kernel), encoding="utf-8")


def test_the_notebook_is_stored_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code, "the tutorial has no code"
    assert all(not cell.outputs and cell.execution_count is None for cell in code)


def test_the_tutorial_runs_from_top_to_bottom(tmp_path, monkeypatch):
    jupyter = tmp_path / "jupyter"
    _kernel_of_this_interpreter(jupyter)
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter))
    work = tmp_path / "work"
    work.mkdir()
    notebook = nbformat.read(NOTEBOOK, as_version=4)

    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name=KERNEL,
        resources={"metadata": {"path": str(work)}},
    )
    client.execute()  # raises CellExecutionError, naming the cell, on any error

    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    assert any("image/png" in out.get("data", {}) for out in outputs), "no figure was drawn"
    assert (work / "tutorial-out" / "superoptimizer" / "steps.parquet").is_file()
    assert (work / "tutorial-out" / "capacity-sweep" / "sweep.json").is_file()
