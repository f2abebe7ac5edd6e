"""Checks of the arguments every helper shares: prompts and layer selections."""

from __future__ import annotations

from typing import Any, Sequence, Union

import torch

from ..errors import InputError, InputTypeError
from .accessors import layer_index

Layers = Union[int, Sequence[int], None]


def as_prompts(prompts: Union[str, Sequence[str]], label: str = "prompts") -> list[str]:
    """``prompts`` as a non-empty list of strings."""
    if isinstance(prompts, str):
        return [prompts]
    try:
        listed = list(prompts)
    except TypeError:
        raise InputTypeError(f"{label} is a {type(prompts).__name__}: give a string or a list of strings") from None
    if not listed:
        raise InputError(f"{label} is empty: give at least one prompt")
    for i, prompt in enumerate(listed):
        if not isinstance(prompt, str):
            raise InputTypeError(f"{label}[{i}] is a {type(prompt).__name__}, not a string")
    return listed


def as_layers(model: Any, layers: Layers, label: str = "layers") -> list[int]:
    """``layers`` (an int, a list, or None for all) as checked layer numbers, in the given order."""
    if layers is None:
        return list(range(model.num_layers))
    if isinstance(layers, (list, tuple, range)) or (isinstance(layers, torch.Tensor) and layers.ndim == 1):
        chosen = list(layers)
    else:
        chosen = [layers]  # one layer (checked below, with its type named when it is not an integer)
    if not chosen:
        raise InputError(f"{label} is empty")
    return [layer_index(label, layer, model.num_layers) for layer in chosen]
