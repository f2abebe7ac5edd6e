"""Batched activation collection over many prompts (a list, any iterable, or a dataset column).

Only the requested layers and positions leave each forward, moved to the CPU batch by batch, so
memory is bounded by the result plus one batch. Positions count within each prompt's own tokens
(left padding is accounted for); the forward stops after the last layer needed.
"""

from __future__ import annotations

import os
from itertools import islice
from typing import Any, Iterable, Iterator, Optional, Sequence, Sized, Union

import torch

from .errors import InputError, InputTypeError, did_you_mean
from .runtime.arguments import Layers, as_layers
from .runtime.batching import Positions, columns, encode
from .runtime.names import COLLECTED_VALUES
from .runtime.stopping import free_stopped_forward

#: Per-layer values that can be collected (from the standard-name table).
VALUES = COLLECTED_VALUES


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


def iter_batches(
    model: Any,
    prompts: Union[Sequence[str], Iterable[Any]],
    layers: Layers = None,
    positions: Positions = -1,
    batch_size: int = 32,
    value: str = "layers_output",
    column: Optional[str] = None,
    remote: bool = False,
    dtype: Optional[torch.dtype] = None,
) -> Iterator[torch.Tensor]:
    """The per-batch step of :func:`collect_activations`: one forward per ``batch_size`` prompts.

    The arguments are checked when this is called, before any forward; the forwards run as the
    iterator is consumed. Inside each forward only the chosen positions are kept (the full
    ``(batch, seq, hidden)`` values are never saved), the forward stops after the last layer
    needed, and what the stopped forward leaves behind is freed before the batch is yielded, so
    memory is bounded by one forward plus the rows already taken.

    Yields:
        per batch, ``(num_layers, batch, hidden)`` for an int position, else
        ``(num_layers, batch, num_positions, hidden)``, on the CPU, in ``dtype`` when given.
    """
    if value not in VALUES:
        raise InputError(f"value={value!r} is not collectable{did_you_mean(value, VALUES)}; choose from {', '.join(VALUES)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int):
        raise InputTypeError(f"batch_size must be an int, got {type(batch_size).__name__} {batch_size!r}")
    if batch_size < 1:
        raise InputError(f"batch_size must be at least 1, got {batch_size}")
    if dtype is not None and not isinstance(dtype, torch.dtype):
        raise InputTypeError(f"dtype must be a torch.dtype such as torch.float16, got {type(dtype).__name__} {dtype!r}")
    chosen = as_layers(model, layers)
    order = sorted(set(chosen))
    accessor = getattr(model, value)
    for layer in order:  # a value a chosen layer lacks raises its reason before any forward
        if not accessor.serves(layer):
            accessor[layer]
    if isinstance(prompts, Sized) and len(prompts) == 0:
        raise InputError("prompts is empty: give at least one prompt")
    index = torch.as_tensor(positions, dtype=torch.long)
    return _forwards(model, accessor, _batches(prompts, batch_size, column), chosen, order, index, remote, dtype)


def _forwards(model: Any, accessor: Any, batches: Iterator[list[str]], chosen: list[int], order: list[int],
              index: torch.Tensor, remote: bool, dtype: Optional[torch.dtype]) -> Iterator[torch.Tensor]:
    for batch in batches:
        mask = encode(model, batch)["attention_mask"]
        per_row = index if index.ndim == 0 else index.expand(len(batch), -1)
        cols = columns(mask, per_row, "positions")
        rows = torch.arange(len(batch)) if index.ndim == 0 else torch.arange(len(batch))[:, None]
        saved: list[Any] = []
        with torch.no_grad():
            with model.trace(batch, remote=remote) as tracer:
                for layer in order:
                    # advanced indexing copies the chosen rows, so the saved value does not
                    # keep the layer's whole (batch, seq, hidden) output alive
                    saved.append(accessor[layer][rows, cols].cpu().save())
                tracer.stop()
        free_stopped_forward()
        stacked = torch.stack([saved[order.index(layer)] for layer in chosen], 0)
        del saved
        yield stacked if dtype is None else stacked.to(dtype)


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
    out: Optional[Union[str, "os.PathLike[str]"]] = None,
    shard_size: int = 4096,
) -> Any:
    """Collect ``value[layer]`` (default ``layers_output``) at token ``positions`` of every prompt.

    Args:
        prompts: strings, or rows of a dataset with ``column`` naming the text field.
        positions: an int (``-1``: last real token) or a list of ints, within each prompt's tokens.
        value: one of :data:`VALUES`.
        progress: show a tqdm progress bar.
        dtype: cast on the CPU (e.g. ``torch.float16`` to halve memory).
        out: a folder: stream the rows to disk in shards of ``shard_size`` prompts instead of
            returning them (resumable; see :mod:`nnspec.activation_store`).

    Returns:
        ``(num_layers, num_prompts, hidden)`` for an int position, else
        ``(num_layers, num_prompts, num_positions, hidden)``, on the CPU; with ``out``, an
        :class:`~nnspec.activation_store.ActivationStore` whose rows are those tensors' columns.
    """
    if out is not None:
        from .activation_store import write_store

        return write_store(model, prompts, out, layers, positions, batch_size, value, column, remote, progress, dtype, shard_size)
    from tqdm.auto import tqdm

    batches = iter_batches(model, prompts, layers, positions, batch_size, value, column, remote, dtype)
    total = len(prompts) if isinstance(prompts, Sized) else None
    bar = tqdm(total=total, desc=f"collecting {value}", unit="prompt", disable=not progress)
    # With a known count the result is allocated once and filled batch by batch: concatenating
    # the batches at the end would hold every row twice.
    result: Optional[torch.Tensor] = None
    parts: list[torch.Tensor] = []
    filled = 0
    for part in batches:
        count = part.shape[1]
        if total is not None:
            if result is None:
                result = part.new_empty((part.shape[0], total, *part.shape[2:]))
            if filled + count > total:
                raise InputError(f"prompts gave more than len(prompts) = {total} items; give a list of prompts")
            result[:, filled : filled + count] = part
        else:
            parts.append(part)
        filled += count
        bar.update(count)
    bar.close()
    if filled == 0:
        raise InputError("prompts is empty: give at least one prompt")
    if result is not None:
        return result if filled == total else result[:, :filled].clone()
    return torch.cat(parts, 1)
