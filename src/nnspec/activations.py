"""Batched activation collection over many prompts (a list, any iterable, or a dataset column).

Only the requested layers and positions leave each forward, moved to the CPU batch by batch, so
memory is bounded by the result plus one batch. Positions count within each prompt's own tokens
(left padding is accounted for); the forward stops after the last layer needed.
"""

from __future__ import annotations

from itertools import islice
from typing import Any, Iterable, Iterator, Optional, Sequence, Sized, Union

import torch

from .errors import InputError, InputTypeError, did_you_mean
from .interventions import Layers, as_layers
from .runtime.batching import Positions, columns, encode

#: Per-layer values that can be collected.
VALUES = (
    "layers_input", "layers_output", "attentions_input", "attentions_output", "mixers_input", "mixers_output",
    "mlps_input", "mlps_output",
)


def _batches(prompts: Iterable[Any], size: int, column: Optional[str]) -> Iterator[list[str]]:
    iterator = iter(prompts)
    while True:
        chunk = list(islice(iterator, size))
        if not chunk:
            return
        if column is not None:
            chunk = [row[column] for row in chunk]
        for i, prompt in enumerate(chunk):
            if not isinstance(prompt, str):
                raise InputTypeError(f"prompt {i} of a batch is a {type(prompt).__name__}, not a string (use column= for datasets)")
        yield chunk


@torch.no_grad()
def collect_activations(
    model: Any,
    prompts: Union[Sequence[str], Iterable[Any]],
    layers: Layers = None,
    positions: Positions = -1,
    batch_size: int = 32,
    value: str = "layers_output",
    column: Optional[str] = None,
    remote: bool = False,
    progress: bool = True,
    dtype: Optional[torch.dtype] = None,
) -> torch.Tensor:
    """Collect ``value[layer]`` (default ``layers_output``) at token ``positions`` of every prompt.

    Args:
        prompts: strings, or rows of a dataset with ``column`` naming the text field.
        positions: an int (``-1``: last real token) or a list of ints, within each prompt's tokens.
        value: one of :data:`VALUES`.
        progress: show a tqdm progress bar.
        dtype: cast on the CPU (e.g. ``torch.float16`` to halve memory).

    Returns:
        ``(num_layers, num_prompts, hidden)`` for an int position, else
        ``(num_layers, num_prompts, num_positions, hidden)``, on the CPU.
    """
    from tqdm.auto import tqdm

    if value not in VALUES:
        raise InputError(f"value={value!r} is not collectable{did_you_mean(value, VALUES)}; choose from {', '.join(VALUES)}")
    if batch_size < 1:
        raise InputError(f"batch_size must be at least 1, got {batch_size}")
    chosen = as_layers(model, layers)
    order = sorted(set(chosen))
    accessor = getattr(model, value)
    for layer in order:  # a value a chosen layer lacks raises its reason before any forward
        if not accessor.serves(layer):
            accessor[layer]
    total = len(prompts) if isinstance(prompts, Sized) else None
    if total == 0:
        raise InputError("prompts is empty: give at least one prompt")
    bar = tqdm(total=total, desc=f"collecting {value}", unit="prompt", disable=not progress)
    parts: list[torch.Tensor] = []
    for batch in _batches(prompts, batch_size, column):
        mask = encode(model, batch)["attention_mask"]
        index = torch.as_tensor(positions, dtype=torch.long)
        per_row = index if index.ndim == 0 else index.expand(len(batch), -1)
        cols = columns(mask, per_row, "positions")
        rows = torch.arange(len(batch)) if index.ndim == 0 else torch.arange(len(batch))[:, None]
        saved: list[Any] = []
        with model.trace(batch, remote=remote) as tracer:
            for layer in order:
                saved.append(accessor[layer][rows, cols].cpu().save())
            tracer.stop()
        stacked = torch.stack([saved[order.index(layer)] for layer in chosen], 0)
        parts.append(stacked if dtype is None else stacked.to(dtype))
        bar.update(len(batch))
    bar.close()
    if not parts:
        raise InputError("prompts is empty: give at least one prompt")
    return torch.cat(parts, 1)
