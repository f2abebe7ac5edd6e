"""A standard activation cache: every requested value under its standard name, in one forward.

Keys are ``"{name}.{layer}"`` for per-layer values (``"layers_output.3"``) and the bare name for
model-level ones (``"token_embeddings"``, ``"logits"``). Values are plain tensors (never the
tuples modules return), read through the same ports as the accessors, so they mean the same.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import torch

from ..errors import InputError, UnknownNameError, did_you_mean
from .interventions import Layers, as_layers, as_prompts
from .readorder import LAYER_ORDER

#: Per-layer values, in the documented read order (the same on every architecture).
LAYER_VALUES = LAYER_ORDER
MODEL_VALUES = ("token_embeddings", "logits")
#: What ``run_with_cache`` collects when no names are given, on the layers that have each value
#: (``mixers_*`` only where the token mixer is not attention: on attention layers they equal
#: ``attentions_*``).
DEFAULT_NAMES = (
    "layers_input", "attentions_input", "attentions_output", "mixers_input", "mixers_output",
    "mlps_input", "mlps_output", "layers_output",
)


class ActivationCache(dict):
    """``{standard key: tensor}`` with helpers that stack layers and decompose the residual stream."""

    def __init__(self, data: dict[str, torch.Tensor], layers: list[int], num_layers: int) -> None:
        super().__init__(data)
        self.layers = layers
        self.num_layers = num_layers

    def __getitem__(self, key: Union[str, tuple]) -> torch.Tensor:
        """``cache["layers_output.3"]``, or ``cache["layers_output", 3]``."""
        if isinstance(key, tuple):
            if len(key) != 2 or not isinstance(key[0], str) or isinstance(key[1], bool) or not isinstance(key[1], int):
                raise UnknownNameError(f"cache[{key!r}]: a tuple key is (standard name, layer), e.g. cache['layers_output', 3]")
            key = f"{key[0]}.{key[1] % self.num_layers if key[1] < 0 else key[1]}"
        if not isinstance(key, str):
            raise UnknownNameError(f"cache[{key!r}]: keys are strings like 'layers_output.3'")
        try:
            return super().__getitem__(key)
        except KeyError:
            raise UnknownNameError(f"{key!r} is not in this cache{did_you_mean(key, self.keys())}") from None

    def stack(self, name: str) -> torch.Tensor:
        """``name`` of every cached layer stacked first: ``(layers, batch, ...)``."""
        return torch.stack([self[f"{name}.{layer}"] for layer in self.layers], 0)

    def accumulated_resid(self) -> torch.Tensor:
        """The residual stream before block 0 and after every block: ``(num_layers + 1, batch, seq, hidden)``.
        Needs ``layers_input`` and ``layers_output`` of every layer."""
        self._need_all_layers("accumulated_resid")
        return torch.stack([self["layers_input.0"]] + [self[f"layers_output.{i}"] for i in range(self.num_layers)], 0)

    def decompose_resid(self) -> tuple[torch.Tensor, list[str]]:
        """The final residual stream as a sum of parts: ``(parts, batch, seq, hidden)`` (the embedding,
        then each layer's token-mixer and MLP contributions, those it has: ``1 + 2 * num_layers``
        parts on a transformer) and their labels (``"attention.3"``, ``"mixer.3"`` where the mixer
        is not attention, ``"mlp.3"``). The parts sum to ``layers_output[num_layers - 1]``."""
        self._need_all_layers("decompose_resid")
        parts, labels = [self["layers_input.0"]], ["embed"]
        for i in range(self.num_layers):
            for name, label in (("attentions_output", "attention"), ("mixers_output", "mixer"), ("mlps_output", "mlp")):
                if f"{name}.{i}" in self and not (label == "mixer" and f"attentions_output.{i}" in self):
                    parts.append(self[f"{name}.{i}"])
                    labels.append(f"{label}.{i}")
        return torch.stack(parts, 0), labels

    def _need_all_layers(self, what: str) -> None:
        if self.layers != list(range(self.num_layers)):
            raise InputError(f"{what} needs every layer in the cache; this one holds layers {self.layers}")


def _check_names(model: Any, names: Sequence[str]) -> list[str]:
    valid = LAYER_VALUES + MODEL_VALUES
    for name in names:
        if name not in valid:
            base = name.split(".")[0]
            hint = f" (give {base!r} and choose layers with layers=)" if base in valid else did_you_mean(name, valid)
            raise UnknownNameError(f"{name!r} is not a cacheable value{hint}; names: {', '.join(valid)}")
    return list(names)


def served(model: Any, names: Sequence[str], layers: Sequence[int], strict: bool) -> list[tuple[str, int]]:
    """``(name, layer)`` pairs to read, layer by layer in the documented order. ``strict``: a name
    the model does not serve on a chosen layer raises its reason before anything runs; otherwise
    (default names) such pairs are left out, and ``mixers_*`` are kept only where the mixer is not
    attention (elsewhere they repeat ``attentions_*``)."""
    pairs = []
    for layer in layers:
        for name in names:
            accessor = getattr(model, name)
            if not accessor.serves(layer):
                if strict:
                    accessor[layer]  # raises CapabilityUnavailableError with the reason
                continue
            if not strict and name.startswith("mixers_") and model.attentions_output.serves(layer):
                continue
            pairs.append((name, layer))
    return pairs


def plan(model: Any, names: Sequence[str]) -> list[str]:
    """Per-layer names in the documented read order (the runtime fetches early what a model
    computes out of that order)."""
    return [n for n in LAYER_ORDER if n in names]


@torch.no_grad()
def run_with_cache(
    model: Any,
    prompts: Union[str, Sequence[str]],
    names: Optional[Sequence[str]] = None,
    layers: Layers = None,
    to_cpu: bool = False,
    remote: bool = False,
) -> ActivationCache:
    """One forward over ``prompts`` caching ``names`` (default :data:`DEFAULT_NAMES`) on ``layers``
    (default all). Raises ``KeyError`` with the closest valid names for an unknown name."""
    prompts = as_prompts(prompts)
    chosen = sorted(set(as_layers(model, layers)))
    wanted = _check_names(model, names if names is not None else DEFAULT_NAMES)
    per_layer = plan(model, wanted)
    pairs = served(model, per_layer, chosen, strict=names is not None)
    keys: list[str] = []
    saved: list[Any] = []

    def keep(key: str, value: torch.Tensor) -> None:
        keys.append(key)
        saved.append((value.cpu() if to_cpu else value).save())

    with model.trace(prompts, remote=remote) as tracer:
        if "token_embeddings" in wanted:
            keep("token_embeddings", model.token_embeddings)
        for name, layer in pairs:
            keep(f"{name}.{layer}", getattr(model, name)[layer])
        if "logits" in wanted:
            keep("logits", model.logits)
        else:
            tracer.stop()  # nothing later is read: skip the remaining layers and the unembedding
    return ActivationCache(dict(zip(keys, saved)), chosen, model.num_layers)
