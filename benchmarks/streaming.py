"""Streaming activation collection to disk against the in-memory collection, with a killed run resumed.

    python benchmarks/streaming.py [--prompts 20000] [--spec gpt2] [--batch-size 64] [--shard-size 1024]
                                   [--positions 0,1,2,3,-1] [--keep FOLDER]

Four child processes, each loading the tiny offline checkpoint of ``--spec`` once:

1. in memory: ``collect_activations(model, prompts)``;
2. streamed: ``collect_activations(model, prompts, out=A)``, uninterrupted;
3. streamed into B, killed with SIGKILL once the manifest shows half the prompts written;
4. the same call into B again: it resumes after B's last finished shard.

Each child reads its resident memory (RSS) when the collection has taken 10%, 50% and 100% of the
prompts, and times the collection alone (not the model load). The report gives the memory growth of
both paths, the streamed throughput as a ratio of the in-memory one, and whether B's shards equal A's
byte for byte and A equals the in-memory tensor.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

MB = 1 << 20


def prompts(count: int) -> list[str]:
    """Short deterministic prompts of 6 to 9 tokens."""
    words = ["river", "mountain", "city", "garden", "window", "engine", "letter", "forest", "bridge", "planet"]
    return [f"item {i}: the {words[i % 10]} is" + " very" * (i % 3) for i in range(count)]


def rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def sampled(items: list[str], marks: dict[str, int]) -> Iterator[str]:
    """``items`` in order, noting the RSS each time another tenth of them has been taken."""
    points = {len(items) * k // 10: f"{10 * k}%" for k in range(1, 10)}
    for i, item in enumerate(items):
        if i in points:
            marks[points[i]] = rss()
        yield item


def child(args: argparse.Namespace) -> None:
    import torch

    from nnspec import StandardizedTransformer
    from nnspec.nnsight_utils import collect_activations
    from nnspec.runtime.registry import adapter_by_name
    from nnspec.verification import tiny

    torch.set_num_threads(1)
    model = StandardizedTransformer(str(tiny.checkpoint(adapter_by_name(args.spec).spec)))
    positions = [int(p) for p in args.positions.split(",")]
    items = prompts(args.prompts)
    collect_activations(model, items[:8], positions=positions, batch_size=8, progress=False)  # warm up
    marks: dict[str, int] = {"start": rss()}
    kwargs: dict[str, Any] = dict(positions=positions, batch_size=args.batch_size, progress=False)
    if args.child != "memory":
        kwargs.update(out=args.out, shard_size=args.shard_size)
    began = time.perf_counter()
    result = collect_activations(model, sampled(items, marks), **kwargs)
    seconds = time.perf_counter() - began
    marks["100%"] = rss()
    if args.child == "memory":
        torch.save(result, Path(args.out) / "memory.pt")
        result_bytes = result.numel() * result.element_size()
    else:
        result_bytes = sum(s["bytes"] for s in result.manifest["shards"])
    print(json.dumps({"seconds": seconds, "rss": marks, "result_bytes": result_bytes}), flush=True)


def run_child(mode: str, out: Path, args: argparse.Namespace, kill_at: int = 0) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", mode, "--out", str(out), "--prompts", str(args.prompts),
               "--spec", args.spec, "--batch-size", str(args.batch_size), "--shard-size", str(args.shard_size),
               "--positions", args.positions]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    if kill_at:
        manifest = out / "manifest.json"
        while process.poll() is None:
            try:
                if json.loads(manifest.read_text())["rows"] >= kill_at:
                    process.send_signal(signal.SIGKILL)
                    break
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.05)
        process.wait()
        rows = json.loads(manifest.read_text())["rows"]
        return {"killed": process.returncode == -signal.SIGKILL, "rows": rows}
    stdout, _ = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"child {mode} failed with status {process.returncode}")
    return json.loads(stdout.strip().splitlines()[-1])


def growth(report: dict[str, Any]) -> str:
    marks = report["rss"]
    steps = " ".join(f"{marks[f'{10 * k}%'] / MB:.0f}" for k in range(1, 11))
    return (f"start {marks['start'] / MB:.0f} MB; at 10%, 20% ... 100%: {steps} MB; "
            f"10% {marks['10%'] / MB:.0f}, 50% {marks['50%'] / MB:.0f}, 100% {marks['100%'] / MB:.0f} MB; "
            f"growth 10%->100%: {(marks['100%'] - marks['10%']) / MB:+.1f} MB")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prompts", type=int, default=20000)
    p.add_argument("--spec", default="gpt2", help="bundled spec whose tiny checkpoint runs (default gpt2)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--shard-size", type=int, default=1024)
    p.add_argument("--positions", default="0,1,2,3,-1", help="token positions kept per prompt (default 0,1,2,3,-1)")
    p.add_argument("--keep", metavar="FOLDER", help="write the stores here and keep them (default: a temporary folder)")
    p.add_argument("--json", type=Path, default=Path(__file__).resolve().parent / "results" / "streaming.json",
                   help="where the figures go (the benchmarks page renders them; default results/streaming.json)")
    p.add_argument("--child", choices=["memory", "stream"], help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return
    import torch

    from nnspec.activation_store import ActivationStore

    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="nnspec-streaming-"))
    root.mkdir(parents=True, exist_ok=True)
    whole, killed = root / "uninterrupted", root / "resumed"
    try:
        print(f"{args.prompts} prompts, tiny {args.spec}, batch {args.batch_size}, shards of {args.shard_size}, "
              f"positions {args.positions}")
        memory = run_child("memory", root, args)
        print(f"in memory : {memory['seconds']:6.1f} s  {args.prompts / memory['seconds']:7.0f} prompts/s   "
              f"result {memory['result_bytes'] / MB:.1f} MB")
        print(f"  RSS {growth(memory)}")
        stream = run_child("stream", whole, args)
        print(f"streamed  : {stream['seconds']:6.1f} s  {args.prompts / stream['seconds']:7.0f} prompts/s   "
              f"shards {stream['result_bytes'] / MB:.1f} MB")
        print(f"  RSS {growth(stream)}")
        print(f"throughput streamed / in memory: {memory['seconds'] / stream['seconds']:.2f}")
        cut = run_child("stream", killed, args, kill_at=args.prompts // 2)
        print(f"killed with SIGKILL: {cut['killed']}, {cut['rows']} rows in finished shards")
        resumed = run_child("stream", killed, args)
        print(f"resumed   : {resumed['seconds']:6.1f} s for the remaining {args.prompts - cut['rows']} prompts")
        a, b = ActivationStore(whole), ActivationStore(killed)
        shards = sorted(p.name for p in whole.glob("shard-*"))
        same = shards == sorted(p.name for p in killed.glob("shard-*")) and all(
            (whole / name).read_bytes() == (killed / name).read_bytes() for name in shards)
        print(f"resumed shards equal the uninterrupted ones byte for byte: {same} ({len(shards)} shards, "
              f"manifests' shard lists equal: {a.manifest['shards'] == b.manifest['shards']})")
        reference = torch.load(root / "memory.pt")
        streamed = a.tensor()
        equal = torch.equal(streamed, reference)
        record = {
            "prompts": args.prompts, "spec": args.spec, "batch_size": args.batch_size, "shard_size": args.shard_size,
            "positions": args.positions, "started": started, "load_average": os.getloadavg()[0],
            "memory": memory, "stream": stream, "killed_rows": cut["rows"], "resumed": resumed,
            "shards": len(shards), "resumed_equal": same, "store_equals_memory": equal,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        print(f"uninterrupted store equals the in-memory tensor: {equal} "
              f"(largest difference {(streamed - reference).abs().max().item():.2e}; exact when the shard size "
              "is a multiple of the batch size)")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
