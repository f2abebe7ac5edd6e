"""One candidate in its own process, driven by ``compare.py`` over JSON lines.

    python benchmarks/worker.py CANDIDATE

Requests (one JSON object per line on stdin), each answered by one line on the protocol pipe:
``versions``; ``open`` {path, arch, paths}; ``prepare`` {workload, path} (builds the callable: answers
``na`` with a reason when the candidate has no counterpart); ``time`` (runs it once, answers
``seconds``); ``memory`` (runs it once, answers peak and starting RSS in bytes); ``result`` {file}
(runs it once and saves the canonical tensor); ``close``. Errors answer ``error`` with the
exception's type and message and leave the worker ready for the next request.

Everything the libraries print goes to stderr, so progress bars never corrupt the protocol.
"""

from __future__ import annotations

import gc
import importlib
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

from protocol import serve

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def measure_peak(run: Callable[[], Any]) -> dict[str, int]:
    """Resident memory before ``run`` and its peak during it, in bytes (Linux: the peak counter is
    reset through /proc/self/clear_refs, so earlier work does not count)."""
    gc.collect()
    before = _status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    run()
    return {"rss_before": before * 1024, "rss_peak": _status_kib("VmHWM") * 1024}


OPS = ("versions", "open", "prepare", "time", "memory", "result", "close")


class Worker:
    def __init__(self, candidate: str) -> None:
        import torch
        from candidates import CANDIDATES
        from transformers.utils import logging

        torch.set_num_threads(1)
        logging.set_verbosity_error()
        logging.disable_progress_bar()
        module = importlib.import_module(f"candidates.{CANDIDATES[candidate][0]}")
        self.candidate = module.CANDIDATE()
        self.run: Optional[Callable[[], Any]] = None
        self.workload = ""

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        from candidates.base import NotApplicable

        op = request["op"]
        if op not in OPS:
            raise ValueError(f"unknown request {op!r}; known: {', '.join(OPS)}")
        if op == "versions":
            return {"versions": self.candidate.versions()}
        if op == "open":
            self.candidate.open(request["path"], request["arch"], request["paths"])
            return {}
        if op == "prepare":
            self.candidate.path = request["path"]
            self.workload = request["workload"]
            try:
                self.run = self.candidate.task(self.workload)
            except NotApplicable as exc:
                self.run = None
                return {"na": str(exc)}
            return {}
        if op == "close":
            self.candidate.close()
            self.run = None
            gc.collect()
            return {}
        if self.run is None:
            raise RuntimeError(f"{op} before a workload was prepared")
        if op == "time":
            gc.collect()
            start = time.perf_counter()
            self.run()
            return {"seconds": time.perf_counter() - start}
        if op == "memory":
            return measure_peak(self.run)
        if op == "result":
            import torch

            torch.save(self.candidate.canonical(self.workload, self.run()), request["file"])
            return {}
        raise AssertionError(op)


def main() -> None:
    serve(lambda: Worker(sys.argv[1]).handle)


if __name__ == "__main__":
    main()
