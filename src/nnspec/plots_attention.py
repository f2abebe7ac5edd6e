"""Attention patterns of one prompt, drawn by circuitsvis (``pip install 'nnspec[display]'``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence, Union

import torch

from .display import _check_flag, _check_path, _check_prompt, _import, _Texts, visible_text
from .errors import CapabilityUnavailableError, InputError, InputTypeError
from .runtime.accessors import layer_index


def _heads(heads: Any, total: int) -> list[int]:
    if heads is None:
        return list(range(total))
    listed = [heads] if isinstance(heads, int) and not isinstance(heads, bool) else heads
    if not isinstance(listed, (list, tuple, range)) or not listed:
        raise InputTypeError(f"heads must be a head number or a non-empty list of them, got {heads!r}")
    out = []
    for head in listed:
        if isinstance(head, bool) or not isinstance(head, int):
            raise InputTypeError(f"heads: {head!r} is a {type(head).__name__}, not a head number")
        if not -total <= head < total:
            raise InputError(f"heads: head {head} does not exist; this layer has {total} heads (0..{total - 1})")
        out.append(head % total)
    return out


def _unavailable(model: Any, layer: int) -> Optional[str]:
    """Why layer ``layer``'s attention probabilities cannot be read, or None."""
    accessor = getattr(model, "attention_probabilities", None)
    if accessor is None:
        return "this model has no attention_probabilities accessor"
    kinds = getattr(model, "mixer_kinds", None)
    if kinds is not None and kinds[layer] != "softmax":
        return f"layer {layer}'s token mixer is {kinds[layer]!r}, not softmax attention"
    if getattr(accessor, "unavailable", None) is not None:
        return accessor.unavailable
    served = getattr(accessor, "_served", None)
    reason = served() if served is not None else None
    if reason is not None:
        return reason
    if not getattr(accessor, "enabled", True):
        return "attention_probabilities.disable() was called on this model"
    return None


@torch.no_grad()
def attention_pattern_view(
    model: Any,
    prompt: str,
    layer: int,
    heads: Union[int, Sequence[int], None] = None,
    html_path: Union[str, Path, None] = None,
    remote: bool = False,
) -> Any:
    """The attention pattern of every head (or ``heads``) of ``layer`` on one prompt, as a
    circuitsvis ``attention_heads`` view: one small query x key heatmap per head, any of them
    enlarged on click, the prompt's tokens (whitespace visible) on the axes.

    Reads ``model.attention_probabilities[layer]``, so the model must run eager attention
    (``StandardizedTransformer(..., enable_attention_probs=True)``); otherwise, or on a layer
    without softmax attention, :class:`~nnspec.errors.CapabilityUnavailableError` is raised
    before the model runs.

    Returns:
        circuitsvis's ``RenderedHTML``: a notebook displays it; ``.local_src`` is HTML with the
        viewer's JavaScript inlined (works offline), ``str(view)`` loads it from a CDN. The pattern
        shown is ``(len(heads), seq, seq)``. With ``html_path``, a standalone page (the inlined
        version) is written there.
    """
    attention = _import("circuitsvis.attention", "attention_pattern_view")
    _check_prompt(prompt)
    _check_flag(remote, "remote")
    out = _check_path(html_path, "html_path")
    i = layer_index("layer", layer, model.num_layers)
    reason = _unavailable(model, i)
    if reason is not None:
        raise CapabilityUnavailableError(f"attention_pattern_view(layer={layer}) reads attention_probabilities[{i}]: {reason}")
    per_layer = getattr(model, "num_heads_per_layer", None)
    total = per_layer[i] if per_layer is not None else model.num_heads
    chosen = _heads(heads, total)
    with model.trace(prompt, remote=remote):
        probs = model.attention_probabilities[i].save()
    pattern = probs[0, chosen].float().cpu()  # (heads, query, key)
    text = _Texts(model.tokenizer)
    ids = model.tokenizer(prompt, return_tensors="pt")["input_ids"][0].tolist()
    tokens = [visible_text(text(t)) for t in ids]
    view = attention.attention_heads(
        attention=pattern, tokens=tokens, attention_head_names=[f"L{i}H{h}" for h in chosen]
    )
    if out is not None:
        out.write_text(
            "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>attention, layer {i}</title></head><body>"
            f"<h3 style='font-family:sans-serif'>attention patterns, layer {i}</h3>{view.local_src}</body></html>",
            encoding="utf-8",
        )
    return view
