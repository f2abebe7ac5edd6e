"""Finding a model's structure by running it: modules, tuple elements and residual structure.

Every fact is established by a plain-torch forward with hooks and then tested: a contribution
hypothesis is kept only when ``block input + attention + MLP == block output`` holds on every layer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from ..errors import ScaffoldError
from ..verification.conformance import TOLERANCE

ATTENTION_NAME = re.compile(r"attn|attention|self_attn|mixer|token_mixer|temporal", re.I)
MLP_NAME = re.compile(r"mlp|ffn|feed_?forward|moe|experts|channel_mixer|sparse_moe|block_sparse", re.I)
NORM_NAME = re.compile(r"norm|ln", re.I)



@dataclass
class Call:
    """One module call seen during the probe forward."""

    path: str
    module: torch.nn.Module
    order: int
    args: tuple
    kwargs: dict
    output: Any
    snapshot: Any  # a clone of the output taken when the call returned (detects in-place edits)


@dataclass
class Probe:
    """Everything recorded by one hooked forward of a model."""

    calls: dict[str, Call]
    order: list[str]
    hidden_states: tuple
    logits: torch.Tensor
    input_ids: torch.Tensor


@dataclass
class Facts:
    """What discovery established, in spec vocabulary."""

    model_type: str
    embed_tokens: str
    layers: str
    ln_final: str
    lm_head: str
    before_lm_head: list[str] = field(default_factory=list)
    layer_returns: str = "tensor"
    attention: dict[str, Any] = field(default_factory=dict)
    mlp: dict[str, Any] = field(default_factory=dict)
    residual: str = "sequential"
    logit_transforms: list[dict[str, str]] = field(default_factory=list)
    config_keys: dict[str, Optional[str]] = field(default_factory=dict)
    limits: dict[str, str] = field(default_factory=dict)
    score_softcap: Optional[str] = None
    notes: list[str] = field(default_factory=list)


def _clone(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, tuple):
        return tuple(_clone(v) for v in value)
    return value


def _first(value: Any) -> Optional[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, tuple) and value and isinstance(value[0], torch.Tensor):
        return value[0]
    return None


def probe(model: torch.nn.Module, input_ids: torch.Tensor, hooks: Optional[dict[str, Any]] = None) -> Probe:
    """Run ``model`` once, recording every module's first call (inputs, output, snapshot)."""
    calls: dict[str, Call] = {}
    order: list[str] = []
    handles = []
    for path, module in model.named_modules():
        def record(mod: Any, args: tuple, kwargs: dict, output: Any, path: str = path) -> None:
            if path not in calls:
                calls[path] = Call(path, mod, len(order), args, kwargs, output, _clone(output))
                order.append(path)
        handles.append(module.register_forward_hook(record, with_kwargs=True))
    for path, hook in (hooks or {}).items():
        handles.append(model.get_submodule(path).register_forward_hook(hook))
    try:
        with torch.no_grad():
            out = model(input_ids, output_hidden_states=True)
    finally:
        for handle in handles:
            handle.remove()
    return Probe(calls, order, out.hidden_states, out.logits, input_ids)


def path_of(model: torch.nn.Module, target: Optional[torch.nn.Module]) -> Optional[str]:
    if target is None:
        return None
    return next((p for p, m in model.named_modules() if m is target), None)


def find_layers(model: torch.nn.Module, num_layers: int, near: str) -> str:
    """The ModuleList of blocks: length ``num_layers``, closest to the embedding's path."""
    candidates = [p for p, m in model.named_modules() if isinstance(m, torch.nn.ModuleList) and len(m) == num_layers]
    if not candidates:
        lists = [f"{p} ({len(m)})" for p, m in model.named_modules() if isinstance(m, torch.nn.ModuleList)]
        raise ScaffoldError(
            f"no list of {num_layers} blocks (config's layer count) in {type(model).__name__}; module lists: {', '.join(lists) or 'none'}"
        )
    prefix = near.rsplit(".", 1)[0]
    return sorted(candidates, key=lambda p: (not p.startswith(prefix), p.count("."), p))[0]


def _close(a: Optional[torch.Tensor], b: Optional[torch.Tensor]) -> bool:
    return a is not None and b is not None and a.shape == b.shape and torch.allclose(a.float(), b.float(), **TOLERANCE)
