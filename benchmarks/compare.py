"""nnspec against plain transformers, bare NNsight and nnterp: the same workloads on the same
checkpoints, interleaved in one run, reported as medians and ratios; writes the results page.

    python benchmarks/compare.py [--repeats 5] [--checkpoints gpt2-small,llama-12,llama-7b-meta]
                                 [--workloads load,trace_1x8,...] [--no-peer] [--page docs/benchmarks.md]

Each candidate runs in its own worker process: plain transformers, bare NNsight and nnspec in this
environment; nnterp and its NNsight in an isolated environment built on first use from
``benchmarks/peer-requirements.txt`` (nnterp needs an older NNsight). For every workload, each
candidate first runs once for its answer (compared with the floor's, so the timings compare the
same work), then the candidates take turns ``--repeats`` times, in a rotating order, so drift in
the machine's speed hits all of them alike. Peak resident memory is read per workload in the
worker (the kernel's peak counter is reset just before the workload starts).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from candidates import CANDIDATES  # noqa: E402
from workloads import BY_NAME, CHECKPOINTS, WORKLOADS, Checkpoint, Workload  # noqa: E402

SCHEMA = 1
#: The short forward a memory measurement runs first.
WARM_UP = "trace_1x8"
DEFAULT_JSON = HERE / "results" / "latest.json"
DEFAULT_PAGE = ROOT / "docs" / "benchmarks.md"


class WorkerError(RuntimeError):
    """A worker answered a request with an error (its message names the exception)."""


class Worker:
    """A candidate's process and its JSON-lines conversation."""

    def __init__(self, name: str, python: Path, log: Path, script: Optional[Path] = None) -> None:
        self.name, self.python = name, python
        env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
        self.log = log
        self.process = subprocess.Popen(
            [str(python), str(script or HERE / "worker.py"), name],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log.open("w"), text=True, env=env, cwd=ROOT,
        )
        self._read()

    def _read(self) -> dict[str, Any]:
        line = self.process.stdout.readline()
        if not line:
            raise WorkerError(f"worker {self.name} exited (code {self.process.wait()}); see {self.log}")
        return json.loads(line)

    def ask(self, op: str, **fields: Any) -> dict[str, Any]:
        self.process.stdin.write(json.dumps({"op": op, **fields}) + "\n")
        self.process.stdin.flush()
        answer = self._read()
        if "error" in answer:
            raise WorkerError(answer["error"])
        return answer

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait(timeout=60)


def machine() -> dict[str, Any]:
    """What the page says about the machine the numbers come from."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem / 2**20, 1), "os": platform.platform(),
            "python": platform.python_version(), "threads": 1}


def max_abs_diff(files: dict[str, Path], baseline: str) -> dict[str, dict[str, Any]]:
    """Each candidate's answer against the baseline's: ``{candidate: {diff, matches}}``."""
    import torch

    from nnspec.verification.conformance import TOLERANCE

    if baseline not in files:
        return {}
    expected = torch.load(files[baseline]).detach()
    out = {}
    for name, path in files.items():
        actual = torch.load(path).detach()
        if tuple(actual.shape) != tuple(expected.shape):
            out[name] = {"diff": None, "matches": False, "shape": list(actual.shape)}
            continue
        diff = float((actual.float() - expected.float()).abs().max())
        out[name] = {"diff": diff, "matches": bool(torch.allclose(actual.float(), expected.float(), **TOLERANCE))}
    return out


def run_workload(workload: Workload, checkpoint: Checkpoint, path: Path, workers: dict[str, Worker],
                 broken: dict[str, str], repeats: int, scratch: Path, memory_count: int = 5,
                 memory_only: bool = False) -> dict[str, Any]:
    """Prepare, check answers, time interleaved and read memory (``memory_count`` fresh processes
    per candidate) for one workload on one checkpoint; ``memory_only`` reads memory alone."""
    cells: dict[str, dict[str, Any]] = {name: {} for name in workers}
    if memory_only:
        for name in workers:
            if name in broken:
                cells[name]["memory_error"] = broken[name]
                continue
            try:
                if "na" in workers[name].ask("prepare", workload=workload.name, path=str(path)):
                    continue  # no counterpart: nothing to measure
            except WorkerError as exc:
                cells[name]["memory_error"] = str(exc)
                continue
            try:
                cells[name]["memory"] = memory_samples(workers[name], workload, checkpoint, path, memory_count)
            except WorkerError as exc:
                cells[name]["memory_error"] = str(exc)
        return {"checkpoint": checkpoint.name, "arch": checkpoint.arch, "workload": workload.name, "candidates": cells}
    active = []
    for name, worker in workers.items():
        if name in broken:
            cells[name]["error"] = broken[name]
            continue
        try:
            answer = worker.ask("prepare", workload=workload.name, path=str(path))
        except WorkerError as exc:
            cells[name]["error"] = str(exc)
            continue
        if "na" in answer:
            cells[name]["na"] = answer["na"]
        else:
            active.append(name)

    def attempt(name: str, op: str, **fields: Any) -> Optional[dict[str, Any]]:
        try:
            return workers[name].ask(op, **fields)
        except WorkerError as exc:
            cells[name]["error"] = str(exc)
            active.remove(name)
            return None

    files = {}
    for name in list(active):
        if workload.compare:
            files[name] = scratch / f"{name}.pt"
            attempt(name, "result", file=str(files[name]))
        else:
            attempt(name, "time")  # warm-up
    for name, verdict in max_abs_diff({n: f for n, f in files.items() if n in active}, workload.baseline).items():
        cells[name].update(verdict)
    count = workload.repeats(repeats)
    for r in range(count):
        order = active[r % len(active):] + active[: r % len(active)] if active else []
        for name in order:
            answer = attempt(name, "time")
            if answer is not None:
                cells[name].setdefault("times", []).append(answer["seconds"])
    if workload.memory:
        for name in list(active):
            try:
                cells[name]["memory"] = memory_samples(workers[name], workload, checkpoint, path, memory_count)
            except WorkerError as exc:
                cells[name]["memory_error"] = str(exc)
    for cell in cells.values():
        if cell.get("times"):
            cell["median"] = statistics.median(cell["times"])
    return {"checkpoint": checkpoint.name, "arch": checkpoint.arch, "workload": workload.name, "repeats": count, "candidates": cells}


def open_fields(checkpoint: Checkpoint, path: Path) -> dict[str, Any]:
    """The ``open`` request for ``checkpoint``: its folder, spec name and the native module paths
    the spec states (the floor and bare NNsight address modules by them)."""
    from nnspec.runtime.registry import adapter_by_name

    modules = adapter_by_name(checkpoint.arch).spec.modules
    paths = {"layers": modules.layers, "final": [modules.ln_final, *modules.before_lm_head, modules.lm_head]}
    return {"path": str(path), "arch": checkpoint.arch, "paths": paths}


def fresh_memory(worker: Worker, workload: Workload, checkpoint: Checkpoint, path: Path) -> dict[str, Any]:
    """Peak RSS of ``workload`` in a new process of ``worker``'s candidate (a process that ran other
    workloads keeps their freed memory). One short forward runs first, so the weights are resident
    (loads map them lazily) and the measured rise is the workload's own. The workload then runs
    twice: ``rss_before``/``rss_peak`` are its first run (one-time costs included: the first trace
    of a block compiles it, the first call of an operation pages its code in), ``later_before``/
    ``later_peak`` the second."""
    fresh = Worker(worker.name, worker.python, worker.log.with_suffix(".memory.log"))
    try:
        fresh.ask("open", **open_fields(checkpoint, path))
        fresh.ask("prepare", workload=WARM_UP, path=str(path))
        fresh.ask("time")
        fresh.ask("prepare", workload=workload.name, path=str(path))
        first = fresh.ask("memory")
        later = fresh.ask("memory")
        return {**first, "later_before": later["rss_before"], "later_peak": later["rss_peak"]}
    finally:
        fresh.stop()


def memory_samples(worker: Worker, workload: Workload, checkpoint: Checkpoint, path: Path, count: int) -> dict[str, Any]:
    """``count`` :func:`fresh_memory` samples, each in its own process, and their medians:
    ``rise`` (first run, MiB above the loaded model), ``later_rise`` (second run) and ``rss_peak``
    (bytes). A rise of a few MiB varies by several MiB between identical processes (the allocator's
    arenas, code paged in), so one process is not a measurement."""
    if count < 1:
        raise ValueError(f"memory samples: expected at least 1, got {count}")
    samples = [fresh_memory(worker, workload, checkpoint, path) for _ in range(count)]
    return {
        "samples": samples,
        "rise": statistics.median((s["rss_peak"] - s["rss_before"]) / 2**20 for s in samples),
        "later_rise": statistics.median((s["later_peak"] - s["later_before"]) / 2**20 for s in samples),
        "rss_peak": statistics.median(s["rss_peak"] for s in samples),
    }


def start_workers(names: list[str], peer_python: Optional[Path], logs: Path) -> tuple[dict[str, Worker], dict[str, Any]]:
    workers, versions = {}, {}
    for name in names:
        module, env = CANDIDATES[name]
        python = Path(sys.executable) if env == "project" else peer_python
        if python is None:
            continue
        worker = Worker(name, python, logs / f"{name}.log")
        workers[name] = worker
        versions[name] = worker.ask("versions")["versions"]
    return workers, versions


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per candidate (load 3x as many; collect and validate half, at least 3)")
    parser.add_argument("--checkpoints", default=",".join(c.name for c in CHECKPOINTS))
    parser.add_argument("--workloads", default=",".join(w.name for w in WORKLOADS))
    parser.add_argument("--candidates", default=",".join(CANDIDATES))
    parser.add_argument("--memory-samples", type=int, default=5,
                        help="fresh processes per candidate for each memory figure (the median is reported)")
    parser.add_argument("--memory-only", action="store_true",
                        help="with --merge: measure only the memory of workloads that have it and update those figures "
                             "in rows already in --json (their times and answers stay)")
    parser.add_argument("--no-peer", action="store_true", help="skip the peer's environment and candidates")
    parser.add_argument("--cache", type=Path, default=None, help="checkpoint folder (default: $NNSPEC_CACHE/bench)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument("--page", type=Path, default=DEFAULT_PAGE)
    parser.add_argument("--render", action="store_true", help="only rewrite the page from --json")
    parser.add_argument("--merge", action="store_true",
                        help="replace only the rows (checkpoint, workload) this run redoes in --json and keep the others")
    args = parser.parse_args(argv)

    import page

    if args.render:
        args.page.write_text(page.render(json.loads(args.json.read_text())))
        print(f"wrote {args.page}")
        return 0
    if args.memory_samples < 1:
        parser.error(f"--memory-samples: expected at least 1, got {args.memory_samples}")
    if args.memory_only:
        _check_memory_only(parser, args)
    by_checkpoint = {c.name: c for c in CHECKPOINTS}
    checkpoints = [by_checkpoint[n] for n in _pick(args.checkpoints, by_checkpoint, "--checkpoints")]
    workloads = [BY_NAME[n] for n in _pick(args.workloads, BY_NAME, "--workloads")]
    names = _pick(args.candidates, CANDIDATES, "--candidates")

    import peer
    from checkpoints import build

    from nnspec.verification.tiny import cache_root

    peer_info: dict[str, Any] = {"requirements": (HERE / "peer-requirements.txt").read_text()}
    peer_python = None
    if args.no_peer:
        peer_info["status"] = "skipped (--no-peer)"
    else:
        try:
            peer_python = peer.ensure()
            peer_info["status"] = "ok"
        except peer.PeerUnavailable as exc:
            peer_info["status"] = f"unavailable: {exc}"
            print(f"peer environment unavailable, timing without it: {exc}", file=sys.stderr)
    cache = args.cache or cache_root() / "bench"
    started = datetime.datetime.now(datetime.timezone.utc)
    logs = cache / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="nnspec-bench-") as tmp:
        scratch = Path(tmp)
        workers, versions = start_workers(names, peer_python, logs)
        runs = []
        try:
            for checkpoint in checkpoints:
                path = build(checkpoint.name, cache)
                chosen = [w for w in workloads if (checkpoint.weights or not w.weights) and (w.memory or not args.memory_only)]
                broken: dict[str, str] = {}
                if any(w.weights for w in chosen) and not args.memory_only:
                    for name, worker in workers.items():
                        try:
                            worker.ask("open", **open_fields(checkpoint, path))
                        except WorkerError as exc:
                            broken[name] = f"load failed: {exc}"
                for workload in chosen:
                    print(f"{checkpoint.name}: {workload.name} ...", file=sys.stderr, flush=True)
                    run = run_workload(workload, checkpoint, path, workers, broken, args.repeats, scratch,
                                       args.memory_samples, args.memory_only)
                    runs.append(run)
                    print(page.summary_line(run), file=sys.stderr, flush=True)
                for worker in workers.values():
                    try:
                        worker.ask("close")
                    except WorkerError:
                        pass
        finally:
            for worker in workers.values():
                worker.stop()
    results = {
        "schema": SCHEMA, "started": started.isoformat(timespec="seconds"),
        "minutes": round((datetime.datetime.now(datetime.timezone.utc) - started).total_seconds() / 60, 1),
        "machine": machine(), "load_average": os.getloadavg(), "repeats": args.repeats,
        "memory_samples": args.memory_samples, "memory_only": args.memory_only,
        "command": "python benchmarks/compare.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "checkpoints": {c.name: c.description for c in checkpoints}, "versions": versions, "peer": peer_info, "runs": runs,
    }
    if args.merge and args.json.is_file():
        results = merge(json.loads(args.json.read_text()), results)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1) + "\n")
    args.page.parent.mkdir(parents=True, exist_ok=True)
    args.page.write_text(page.render(results))
    print(page.targets_text(results))
    print(f"wrote {args.json} and {args.page}")
    return 0


def merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``old`` with the rows ``new`` redid replaced in place (rows only ``new`` has are appended);
    the page states each merged run's command and time under ``merged``."""
    def key(run: dict[str, Any]) -> tuple[str, str]:
        return run["checkpoint"], run["workload"]

    redone = {key(run): run for run in new["runs"]}
    if new.get("memory_only"):
        runs = [_with_memory(run, redone.pop(key(run))) if key(run) in redone else run for run in old["runs"]]
        if redone:
            raise ValueError(f"memory-only rows have no row to update: {', '.join(' '.join(k) for k in redone)}")
    else:
        runs = [redone.pop(key(run), run) for run in old["runs"]] + list(redone.values())
    note = {k: new[k] for k in ("command", "started", "minutes", "repeats", "load_average")}
    note.update(memory_only=new.get("memory_only", False), memory_samples=new.get("memory_samples"))
    note["rows"] = [f"{run['checkpoint']} {run['workload']}{' (memory)' if new.get('memory_only') else ''}" for run in new["runs"]]
    return dict(old, runs=runs, checkpoints={**old["checkpoints"], **new["checkpoints"]},
                versions={**old["versions"], **new["versions"]}, merged=[*old.get("merged", []), note])


def _with_memory(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Row ``old`` with the memory figures of ``new`` (a memory-only run of the same row)."""
    cells = {}
    for name, cell in old["candidates"].items():
        kept = {k: v for k, v in cell.items() if k not in ("memory", "memory_error")}
        cells[name] = {**kept, **{k: v for k, v in new["candidates"].get(name, {}).items() if k in ("memory", "memory_error")}}
    return dict(old, candidates=cells)


def _check_memory_only(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """``--memory-only`` updates rows that exist: it needs ``--merge``, an existing ``--json``, and
    workloads that measure memory (checked before anything runs)."""
    if not args.merge:
        parser.error("--memory-only updates the memory figures of rows already in --json: add --merge")
    if not args.json.is_file():
        parser.error(f"--memory-only: {args.json} does not exist; run the full comparison first")
    without = [n for n in args.workloads.split(",") if n in BY_NAME and not BY_NAME[n].memory]
    if without:
        parser.error(f"--memory-only: {', '.join(without)} measure no memory; workloads that do: "
                     f"{', '.join(w.name for w in WORKLOADS if w.memory)}")


def _pick(text: str, known: dict[str, Any], option: str) -> list[str]:
    """The comma-separated names in ``text``, each checked against ``known`` (exit naming ``option``)."""
    import difflib

    out = []
    for name in [n.strip() for n in text.split(",") if n.strip()]:
        if name not in known:
            close = difflib.get_close_matches(name, list(known), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise SystemExit(f"{option}: unknown name {name!r}{hint} (known: {', '.join(known)})")
        out.append(name)
    return out


if __name__ == "__main__":
    sys.exit(main())
