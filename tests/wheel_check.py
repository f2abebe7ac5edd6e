"""Run the notebooks against an installed nnspec wheel (``nox -s wheel``).

Executed by the interpreter of a fresh virtual environment that holds only the wheel, its
``display`` extra and a notebook runner: every notebook runs in a temporary folder outside the
source tree, so nothing resolves to the checkout's sources. Exits non-zero on the first error.

    python tests/wheel_check.py NOTEBOOK [NOTEBOOK ...]
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path


def run(path: Path) -> float:
    import nbformat
    from nbclient import NotebookClient

    with tempfile.TemporaryDirectory() as tmp:
        kernels = Path(tmp) / "jupyter" / "kernels" / "wheel"
        kernels.mkdir(parents=True)
        argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        (kernels / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "wheel", "language": "python"}))
        os.environ["JUPYTER_PATH"] = str(Path(tmp) / "jupyter")
        work = Path(tmp) / "work"
        work.mkdir()
        notebook = nbformat.read(path, as_version=4)
        start = time.perf_counter()
        NotebookClient(notebook, timeout=600, kernel_name="wheel", resources={"metadata": {"path": str(work)}}).execute()
        return time.perf_counter() - start


def main(paths: list[str]) -> int:
    import nnspec

    where = Path(nnspec.__file__).resolve()
    if "site-packages" not in where.parts:
        print(f"nnspec is imported from {where}, not from an installed wheel", file=sys.stderr)
        return 2
    print(f"nnspec {nnspec.__version__} from {where.parent}")
    for name in paths:
        seconds = run(Path(name).resolve())
        print(f"{Path(name).name}: ran in {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("MPLBACKEND", "Agg")
    raise SystemExit(main(sys.argv[1:]))
