"""The notebooks in notebooks/ run end to end, and are committed without outputs.

Each notebook is one test (so pytest-xdist spreads them over workers), executed in a fresh Jupyter
kernel of this interpreter with nbclient, in a temporary working folder. The notebooks check their
own results against plain transformers or hand computations, so a notebook that runs is a notebook
whose claims hold. `pytest --nbmake notebooks/` runs them the same way.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
#: Each notebook runs in well under this on one CPU thread; the limit is per cell.
CELL_TIMEOUT_S = 300


def test_there_are_notebooks() -> None:
    assert {p.name for p in NOTEBOOKS} >= {"tour.ipynb", "circuit_analysis.ipynb", "spec_walkthrough.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_has_no_outputs(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    for n, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, (
                f"{path.name}: cell {n} holds outputs or an execution count; clear all outputs before "
                "committing (in Jupyter: Edit > Clear Outputs of All Cells)"
            )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_listed_in_the_docs(path: Path) -> None:
    assert f"notebooks/{path.name}" in (ROOT / "docs" / "notebooks.md").read_text(encoding="utf-8")


def _kernel(folder: Path) -> str:
    """A kernel spec running this interpreter (so the notebooks see this environment's nnspec,
    whatever other `python3` kernels the machine has); returns its name."""
    spec = folder / "kernels" / "nnspec-tests"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "nnspec tests", "language": "python"}))
    return spec.name


@pytest.mark.long
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The kernel inherits this environment: one thread, as the notebooks promise to be quick on.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    kernel = _kernel(tmp_path / "jupyter")
    work = tmp_path / "work"
    work.mkdir()
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name=kernel,
        resources={"metadata": {"path": str(work)}},
    )
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    print(f"{path.name}: {seconds:.1f} s")
    errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    # Nothing was written next to the notebooks (plots and specs go to temporary folders).
    assert sorted(p.name for p in path.parent.iterdir() if not p.name.startswith(".")) == sorted(
        p.name for p in NOTEBOOKS
    )
