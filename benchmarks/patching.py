"""Batched activation patching against one trace per patch: the same sweeps both ways, in one run,
reported as medians and the batched sweep's time as a ratio of the loop's.

    python benchmarks/patching.py [--repeats 3] [--checkpoints tiny-llama,tiny-gpt2,llama-12]
                                  [--sweeps resid_pre,attn_head_out_all_pos] [--batch-size 16]

The loop is the plain way to write a sweep: one forward over the clean prompts keeps the values,
then one trace per patch assigns the clean value at one (layer, position[, head]) and reads the
metric. The batched sweep is :func:`nnspec.patching.get_act_patch`, which repeats the corrupted
prompts along the batch dimension so that one forward applies ``--batch-size`` patches. Both run
on the same checkpoint, prompts and metric; their answers are compared first (largest absolute
difference printed), then they take turns ``--repeats`` times so that drift in the machine's speed
hits both alike. ``tiny-*`` are the test checkpoints of the bundled specs (3 layers, 64 wide);
``llama-12`` is the comparison benchmark's Llama-style checkpoint (12 layers, 768 wide, random
weights), built under ``--cache`` on first use.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import torch  # noqa: E402
from workloads import token_batch  # noqa: E402

TINY = {"tiny-llama": "llama", "tiny-gpt2": "gpt2"}
MID = ("llama-12",)
SEQ, BATCH = 8, 2


def checkpoint_path(name: str, cache: Optional[Path]) -> Path:
    from nnspec.runtime.registry import adapter_by_name
    from nnspec.verification import tiny

    if name in TINY:
        return tiny.checkpoint(adapter_by_name(TINY[name]).spec)
    from checkpoints import build

    return build(name, cache or tiny.cache_root() / "bench")


def metric(logits: torch.Tensor) -> torch.Tensor:
    """A logit difference at the last position, summed over the prompts."""
    return (logits[:, -1, 7] - logits[:, -1, 9]).sum()


def one_trace_per_patch(model: Any, sweep: str, corrupted: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """The plain loop: a clean forward keeping every layer's value, then a trace per patch."""
    from nnspec.patching import SWEEPS

    spec = SWEEPS[sweep]
    accessor = getattr(model, spec.value)
    layers = range(model.num_layers)
    kept: list[Any] = []
    with torch.no_grad(), model.trace(clean):
        for i in layers:
            kept.append(accessor[i].save())
    positions = range(SEQ) if spec.by_position else [None]
    heads = range(getattr(model, spec.heads)[0]) if spec.by_head else [None]
    out = []
    for i in layers:
        for p in positions:
            for h in heads:
                with torch.no_grad(), model.trace(corrupted):
                    value = accessor[i]
                    patched = value.clone()
                    index: list[Any] = [slice(None)] * value.ndim
                    if p is not None:
                        index[spec.seq_axis] = p
                    if h is not None:
                        index[spec.head_axis] = h
                    patched[tuple(index)] = kept[i][tuple(index)]
                    accessor[i] = patched
                    logits = model.logits.save()
                out.append(metric(logits).item())
    sizes = [model.num_layers] + ([SEQ] if spec.by_position else []) + ([len(heads)] if spec.by_head else [])
    return torch.tensor(out).reshape(sizes)


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--checkpoints", default="tiny-llama,tiny-gpt2", help=f"of {', '.join([*TINY, *MID])}")
    parser.add_argument("--sweeps", default="resid_pre,attn_out,attn_head_out_all_pos,attn_head_out_by_pos")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--cache", type=Path, default=None, help="folder of built checkpoints (default: $NNSPEC_CACHE/bench)")
    args = parser.parse_args(argv)

    from nnspec import StandardizedTransformer
    from nnspec.patching import SWEEPS, get_act_patch

    names = [n.strip() for n in args.checkpoints.split(",") if n.strip()]
    sweeps = [s.strip() for s in args.sweeps.split(",") if s.strip()]
    for name in names:
        if name not in TINY and name not in MID:
            parser.error(f"--checkpoints: unknown {name!r}; known: {', '.join([*TINY, *MID])}")
    for sweep in sweeps:
        if sweep not in SWEEPS:
            parser.error(f"--sweeps: unknown {sweep!r}; known: {', '.join(SWEEPS)}")
    torch.set_num_threads(1)
    clean, corrupted = token_batch(BATCH, SEQ, seed=1)["input_ids"], token_batch(BATCH, SEQ, seed=2)["input_ids"]
    print(f"{BATCH} prompts x {SEQ} tokens, batch size {args.batch_size} patches per forward, median of {args.repeats}")
    print(f"{'checkpoint':<12} {'sweep':<24} {'patches':>7} {'loop s':>9} {'batched s':>9} {'ratio':>7} {'speed-up':>8} {'max diff':>9}")
    for name in names:
        model = StandardizedTransformer(str(checkpoint_path(name, args.cache)), dtype=torch.float32)
        for sweep in sweeps:
            loop = lambda: one_trace_per_patch(model, sweep, corrupted, clean)  # noqa: E731
            batched = lambda: get_act_patch(model, sweep, corrupted, clean, metric, batch_size=args.batch_size)  # noqa: E731
            want, got = loop(), batched()  # warm both up, and compare their answers
            diff = (want - got).abs().max().item()
            times: dict[str, list[float]] = {"loop": [], "batched": []}
            for r in range(args.repeats):
                for key in (("loop", "batched") if r % 2 == 0 else ("batched", "loop")):
                    times[key].append(timed(loop if key == "loop" else batched))
            slow, fast = statistics.median(times["loop"]), statistics.median(times["batched"])
            print(
                f"{name:<12} {sweep:<24} {want.numel():>7} {slow:>9.3f} {fast:>9.3f} {fast / slow:>6.3f}x "
                f"{slow / fast:>7.1f}x {diff:>9.1e}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
