"""What every candidate runs: checkpoints, inputs and the workloads, identical in every environment.

This module needs only torch and transformers, so the peer's environment (another NNsight) imports
it too. Inputs are built deterministically from seeds and fixed text, so every worker process sees
the same tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

#: Prompts of varied lengths (a left-padded batch of 8).
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

#: Source prompts of the patchscope lens; the target is the usual identity prompt.
PATCHSCOPE_SOURCES = PROMPTS[:2]
PATCHSCOPE_TARGET = "cat -> cat\n1135 -> 1135\nhello -> hello\n?"

SUBJECTS = ["river", "the old clock", "a red bicycle", "my neighbour", "the parliament", "Paris", "winter", "a violin"]
VERBS = ["reminds me of", "was built near", "sounds like", "is larger than", "belongs to", "was painted by", "leads to", "hides"]
COLLECT_BATCH = 32


def collection_prompts(count: int = 256) -> list[str]:
    """``count`` distinct prompts of 4 to 12 words for batched activation collection."""
    out = []
    for i in range(count):
        subject, verb, other = SUBJECTS[i % 8], VERBS[(i // 8) % 8], SUBJECTS[(i // 64 + i) % 8]
        out.append(f"{subject.capitalize()} {verb} {other}" + " and then" * (i % 3))
    return out


def token_batch(batch: int, length: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random token ids ``(batch, length)`` in a range every checkpoint's vocabulary covers, no padding."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(10, 256, (batch, length), generator=generator)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


@dataclass(frozen=True)
class Checkpoint:
    """A benchmark checkpoint: a name, the bundled spec that serves it and what it is used for."""

    name: str
    arch: str
    description: str
    weights: bool = True


CHECKPOINTS = [
    Checkpoint("gpt2-small", "gpt2", "GPT-2-small-sized (12 layers, 768 wide, 50257 vocab, 124M parameters), random weights"),
    Checkpoint("llama-12", "llama", "Llama-style (12 layers, 768 wide, MLP 2048, 32000 vocab, 110M parameters), random weights"),
    Checkpoint("llama-7b-meta", "llama", "Llama-2-7B configuration, no weights (loaded on the meta device)", weights=False),
]


@dataclass(frozen=True)
class Workload:
    """One timed task. ``target`` is ``(kind, value)``: ``("floor", 1.1)`` means at most 1.1x the
    floor, ``("nnsight", 1.5)`` at most 1.5x bare NNsight, ``("faster", 3)`` at least 3x faster than
    the peer. ``memory`` asks for peak RSS too, and ``memory_target`` bounds nnspec's rise above
    the loaded model as a multiple of the floor's; ``runs`` scales the number of timed runs (quick
    workloads get more, the slowest fewer)."""

    name: str
    title: str
    description: str
    baseline: str
    target: Optional[tuple[str, float]] = None
    memory: bool = False
    memory_target: Optional[float] = None
    weights: bool = True
    compare: bool = True
    runs: float = 1.0

    def repeats(self, base: int) -> int:
        """Timed runs per candidate for ``base`` requested repeats (at least 3)."""
        return max(3, round(base * self.runs))


WORKLOADS = [
    Workload("load", "load", "construct the model object from the checkpoint folder (each library's default: lazy where it is)",
             baseline="nnsight", target=("nnsight", 1.5), weights=False, compare=False, runs=3),
    Workload("trace_1x8", "residual, 1 x 8", "one forward reading every layer's output, batch 1 x 8 tokens",
             baseline="transformers", target=("floor", 1.1), runs=4),
    Workload("trace_8x128", "residual, 8 x 128", "one forward reading every layer's output, batch 8 x 128 tokens",
             baseline="transformers", target=("floor", 1.1)),
    Workload("logit_lens", "logit lens", "next-token probabilities of every layer's last-token state, 8 left-padded prompts",
             baseline="transformers", target=("floor", 1.1), runs=2),
    Workload("patchscope", "patchscope lens", "patch each layer's last-token state of 2 prompts into the identity prompt, every layer",
             baseline="transformers", target=("faster", 3.0)),
    Workload("collect", "collect 256", "last-token output of every layer for 256 prompts, batches of 32",
             baseline="transformers", target=("floor", 1.1), memory=True, memory_target=1.2, runs=0.5),
    Workload("run_with_cache", "run_with_cache", "cache every layer's output for 8 left-padded prompts in one forward",
             baseline="transformers", target=("floor", 1.1), memory=True, memory_target=1.2, runs=2),
    Workload("validate", "validate", "check the loaded model's standard names (each library's own check)",
             baseline="transformers", compare=False, runs=0.5),
]

BY_NAME = {w.name: w for w in WORKLOADS}


def stack_layers(values: list[torch.Tensor]) -> torch.Tensor:
    """Per-layer tensors stacked on a new first axis, ``(layers, ...)``."""
    return torch.stack([v.detach().float().cpu() for v in values], 0)
