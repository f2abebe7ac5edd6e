"""Gradients of a scalar metric with respect to standard activations, and attribution patching.

``metric`` receives the model's logits ``(batch, seq, vocab)`` and must return a scalar, e.g.
``lambda logits: logits[:, -1, paris] - logits[:, -1, london]`` summed over the batch. Gradients
are taken with one ``torch.autograd.grad`` call inside the trace (so the order in which backward
reaches the values does not matter) and come back under the same keys as :func:`run_with_cache`
(``"layers_output.3"``).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence, Union

import torch

from .cache import check_names, plan, served
from .errors import InputError, UnknownNameError
from .runtime.arguments import Layers, as_layers, as_prompts
from .runtime.names import GRADIENT_VALUES

Metric = Callable[[torch.Tensor], torch.Tensor]
# GRADIENT_VALUES: values whose gradient can be taken (what lies on the residual path and its
# branches), from the standard-name table.


def _scalar(value: Any) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.numel() != 1:
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise InputError(f"metric must return a scalar tensor, got {shape}: reduce it (e.g. .sum() or .mean())")
    return value.reshape(())


def _names(model: Any, names: Sequence[str]) -> list[str]:
    names = check_names(model, names)
    for name in names:
        if name not in GRADIENT_VALUES:
            raise UnknownNameError(f"gradients of {name!r} are not supported; choose from {', '.join(GRADIENT_VALUES)}")
    return plan(model, names)


def gradients(
    model: Any,
    prompts: Union[str, Sequence[str]],
    metric: Metric,
    names: Sequence[str] = ("layers_output",),
    layers: Layers = None,
    remote: bool = False,
) -> dict[str, torch.Tensor]:
    """``d metric / d value`` for each standard value in ``names`` on ``layers`` (default all).

    Returns ``{"name.layer": tensor}`` shaped like the value (``(batch, seq, hidden)``), plus
    ``"metric"``: the metric's value.
    """
    values, grads, metric_value = _trace(model, as_prompts(prompts), metric, names, layers, remote, keep_values=False)
    return {**grads, "metric": metric_value}


def _trace(model: Any, prompts: list[str], metric: Metric, names: Sequence[str], layers: Layers, remote: bool, keep_values: bool) -> tuple:
    per_layer = _names(model, names)
    chosen = sorted(set(as_layers(model, layers)))
    keys: list[str] = []
    live: list[Any] = []
    grads: list[Any] = []
    values: list[Any] = []
    metric_out: list[Any] = []
    pairs = served(model, per_layer, chosen, strict=True)  # an unserved value raises before the forward
    with torch.enable_grad(), model.trace(prompts, remote=remote):
        for name, layer in pairs:
            port = getattr(model, name).port(layer)
            keys.append(f"{name}.{layer}")
            live.append(port.graph_value())
            if keep_values:
                values.append(port.get().detach().save())
        value = _scalar(metric(model.logits))
        metric_out.append(value.detach().save())  # type: ignore[attr-defined]  # NNsight mounts .save() on every value
        # One autograd call for every value: no dependence on the order backward visits them.
        found = torch.autograd.grad(value, [tensor for tensor, _ in live], allow_unused=True)
        for (tensor, to_standard), grad in zip(live, found):
            grads.append(to_standard(torch.zeros_like(tensor) if grad is None else grad).detach().save())
    return dict(zip(keys, values)), dict(zip(keys, grads)), metric_out[0]


def attribution_patching(
    model: Any,
    clean_prompts: Union[str, Sequence[str]],
    corrupted_prompts: Union[str, Sequence[str]],
    metric: Metric,
    names: Sequence[str] = ("layers_output",),
    layers: Layers = None,
    remote: bool = False,
) -> dict[str, torch.Tensor]:
    """Attribution patching: ``(clean - corrupted) . d metric / d value`` at the corrupted run.

    The first-order estimate of how much the metric on the corrupted prompts moves when one
    value (one layer, one position) is patched in from the clean prompts. Clean and corrupted
    prompts must tokenize to the same length.

    Returns:
        ``{name: (num_layers, batch, seq)}`` estimates, layers in ascending order.
    """
    clean, corrupted = as_prompts(clean_prompts, "clean_prompts"), as_prompts(corrupted_prompts, "corrupted_prompts")
    lengths = [model.tokenizer(p, return_tensors="pt")["input_ids"].shape[-1] for p in (clean + corrupted)]
    if len(clean) != len(corrupted) or len(set(lengths)) != 1:
        raise InputError(
            "clean and corrupted prompts must pair up one to one and tokenize to the same length "
            f"(got {len(clean)} clean, {len(corrupted)} corrupted, token lengths {sorted(set(lengths))})"
        )
    from .cache import run_with_cache

    clean_cache = run_with_cache(model, clean, names=list(names), layers=layers, remote=remote)
    corrupted_values, grads, _ = _trace(model, corrupted, metric, names, layers, remote, keep_values=True)
    result = {}
    for name in names:
        per_layer = [
            ((clean_cache[key] - corrupted_values[key]) * grads[key]).sum(-1)
            for key in corrupted_values
            if key.split(".")[0] == name
        ]
        result[name] = torch.stack(per_layer, 0)
    return result


__all__ = ["GRADIENT_VALUES", "attribution_patching", "gradients"]
