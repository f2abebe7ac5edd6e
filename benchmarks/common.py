"""Shared helpers for the benchmarks: checkpoints built offline, interleaved timing, ratios."""

from __future__ import annotations

import argparse
import os
import tempfile
import statistics
import time
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("OMP_NUM_THREADS", "1")


#: Prompts of varied lengths, repeated to fill a batch.
PROMPTS = [
    "The Eiffel Tower is in the city of",
    "The capital of France is",
    "Once upon a time there was a small model that lived on a laptop",
    "Mechanistic interpretability studies the residual stream",
    "Hello world, how are you today?",
    "Cats, dogs, birds and fish are animals",
    "The quick brown fox jumps over the lazy dog",
    "Numbers: 0 1 2 3 4 5 6 7 8 9",
]


def setup(doc: str, **extra: int) -> tuple[argparse.Namespace, str]:
    """Parse ``--repeats``, ``--dir`` and ``extra`` int options; one thread, quiet loads; returns
    the arguments and the GPT-2-small-sized checkpoint path."""
    import torch
    from transformers.utils import logging

    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--dir", default=str(Path(tempfile.gettempdir()) / "nnspec-bench" / "gpt2-small"))
    for name, default in extra.items():
        parser.add_argument(f"--{name}", type=int, default=default)
    args = parser.parse_args()
    logging.disable_progress_bar()
    torch.set_num_threads(1)
    return args, str(gpt2_small(Path(args.dir)))


def model_pair(path: str, batch: int) -> tuple:
    """nnspec (weights loaded) and plain transformers on ``path``, a batch of ``batch`` prompts,
    its left-padded encoding and mask-derived position ids (what a trace feeds the model)."""
    from transformers import AutoModelForCausalLM

    from nnspec import StandardizedTransformer
    from nnspec.runtime.batching import positions_from_mask

    model = StandardizedTransformer(path, dispatch=True)
    hf = AutoModelForCausalLM.from_pretrained(path)
    prompts = (PROMPTS * (batch // len(PROMPTS) + 1))[:batch]
    encoded = model.tokenizer(prompts, return_tensors="pt", padding=True)
    return model, hf, prompts, encoded, positions_from_mask(encoded["attention_mask"])


def gpt2_small(directory: Path) -> Path:
    """A GPT-2-small-sized (12 layers, 768 wide, 50257 vocab) random checkpoint, built once."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from nnspec.runtime import tiny

    if (directory / "config.json").is_file():
        return directory
    config = AutoConfig.for_model("gpt2", n_layer=12, n_embd=768, n_head=12, vocab_size=50257)
    AutoModelForCausalLM.from_config(config).save_pretrained(directory)
    tiny.tokenizer("byte_level").save_pretrained(directory)
    return directory


def interleaved(candidates: dict[str, Callable[[], Any]], repeats: int, warmup: int = 2) -> dict[str, list[float]]:
    """Time each candidate ``repeats`` times, alternating between them so drift hits all alike."""
    for _ in range(warmup):
        for run in candidates.values():
            run()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, run in candidates.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return times


def report(title: str, times: dict[str, list[float]], baseline: str, target: float | None = None) -> float:
    """Print medians and ratios against ``baseline``; returns the worst ratio."""
    base = statistics.median(times[baseline])
    print(f"\n{title}")
    print(f"  {'candidate':28s} {'median':>10s} {'ratio':>7s}")
    worst = 0.0
    for name, values in times.items():
        median = statistics.median(values)
        ratio = median / base
        if name != baseline:
            worst = max(worst, ratio)
        print(f"  {name:28s} {median * 1000:8.1f}ms {ratio:6.2f}x")
    if target is not None:
        verdict = "meets" if worst <= target else "MISSES"
        print(f"  target <= {target:.2f}x: {verdict} ({worst:.2f}x)")
    return worst
