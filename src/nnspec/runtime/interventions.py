"""Interventions with the usual research recipes built in: logit lens, patchscopes, steering.

Every helper takes ``remote=`` and passes it to NNsight, so the same call runs on NDIF.
Probabilities come back on the CPU as float32.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

import torch

from ..errors import InputError, InputTypeError, ShapeMismatchError
from .accessors import layer_index
from .batching import columns, encode, positions_from_mask

Layers = Union[int, Sequence[int], None]


def as_prompts(prompts: Union[str, Sequence[str]], label: str = "prompts") -> list[str]:
    """``prompts`` as a non-empty list of strings."""
    if isinstance(prompts, str):
        return [prompts]
    listed = list(prompts)
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


@torch.no_grad()
def last_token_states(model: Any, prompts: list[str], layers: list[int], remote: bool = False) -> torch.Tensor:
    """``layers_output[layer]`` at each prompt's last token, ``(len(layers), batch, hidden)``.

    Layers may come in any order (and repeat); they are read in forward order.
    """
    order = sorted(set(layers))
    states: list[Any] = []
    with model.trace(prompts, remote=remote) as tracer:
        for layer in order:
            states.append(model.layers_output[layer][:, -1].save())
        tracer.stop()  # the remaining layers and the unembedding are not needed
    return torch.stack([states[order.index(layer)] for layer in layers], 0)


@torch.no_grad()
def logit_lens(model: Any, prompts: Union[str, Sequence[str]], remote: bool = False, layers: Layers = None) -> torch.Tensor:
    """Next-token probabilities read from every layer's residual stream at the last token.

    Each layer's ``layers_output`` goes through :meth:`project_on_vocab` (final norm, unembedding
    and the model's final logit transforms), then softmax. One forward for all prompts.

    Returns:
        ``(num_prompts, num_layers, vocab)`` float32 probabilities on the CPU.
    """
    prompts = as_prompts(prompts)
    chosen = as_layers(model, layers)
    if remote:
        order = sorted(set(chosen))
        probs: list[Any] = []
        with model.trace(prompts, remote=True):
            for layer in order:
                probs.append(model.project_on_vocab(model.layers_output[layer][:, -1]).softmax(-1).float().cpu().save())
        return torch.stack([probs[order.index(layer)] for layer in chosen], 1)
    hidden = last_token_states(model, prompts, chosen).transpose(0, 1)  # (batch, layers, hidden)
    return model.project_on_vocab(hidden).softmax(-1).float().cpu()


@dataclass
class TargetPrompt:
    """A prompt to patch into, and the token index (of its own tokens) that receives the latent."""

    prompt: str
    index_to_patch: int


@dataclass
class TargetPromptBatch:
    """Several target prompts with one patch index each (``index_to_patch`` is ``(n,)``)."""

    prompts: list[str]
    index_to_patch: torch.Tensor

    @classmethod
    def from_target_prompts(cls, targets: Sequence[TargetPrompt]) -> "TargetPromptBatch":
        targets = list(targets)
        if not targets:
            raise InputError("target_patch_prompts is empty")
        return cls([t.prompt for t in targets], torch.tensor([int(t.index_to_patch) for t in targets]))

    @classmethod
    def from_target_prompt(cls, target: TargetPrompt, batch_size: int) -> "TargetPromptBatch":
        return cls.from_target_prompts([target] * batch_size)

    @classmethod
    def from_prompts(cls, prompts: Union[str, Sequence[str]], index_to_patch: Union[int, Sequence[int], torch.Tensor]) -> "TargetPromptBatch":
        prompts = as_prompts(prompts, "target prompts")
        index = torch.as_tensor(index_to_patch, dtype=torch.long)
        if index.ndim == 0:
            index = index.expand(len(prompts)).clone()
        if len(index) != len(prompts):
            raise InputError(f"{len(index)} patch indices for {len(prompts)} target prompts")
        return cls(prompts, index)

    @classmethod
    def auto(cls, target: Union[TargetPrompt, Sequence[TargetPrompt], "TargetPromptBatch"], batch_size: int) -> "TargetPromptBatch":
        """A batch from one target (repeated ``batch_size`` times), a list, or a batch."""
        if isinstance(target, TargetPromptBatch):
            return target
        if isinstance(target, TargetPrompt):
            return cls.from_target_prompt(target, batch_size)
        if isinstance(target, str):
            raise InputTypeError("a target prompt needs an index to patch: use TargetPrompt(prompt, index_to_patch)")
        return cls.from_target_prompts(target)

    def __len__(self) -> int:
        return len(self.prompts)

    def __iter__(self) -> Any:
        return (TargetPrompt(p, int(i)) for p, i in zip(self.prompts, self.index_to_patch))

    def __getitem__(self, i: int) -> TargetPrompt:
        return TargetPrompt(self.prompts[i], int(self.index_to_patch[i]))


def repeat_prompt(
    words: Optional[Sequence[str]] = None, rel: str = " ", sep: str = "\n", placeholder: str = "?", index_to_patch: int = -1
) -> TargetPrompt:
    """The identity patchscope target: ``"king king\\n1135 1135\\nhello hello\\n?"`` patched at ``?``."""
    words = list(words) if words is not None else ["king", "1135", "hello"]
    return TargetPrompt(sep.join(w + rel + w for w in words) + sep + placeholder, index_to_patch)


def _patch_layers(layer_to_patch: Layers, layers: Layers) -> Layers:
    if layer_to_patch is not None and layers is not None and layer_to_patch != layers:
        raise InputError("give the layers once: layers= and layer_to_patch= disagree")
    return layers if layers is not None else layer_to_patch


def _latents(model: Any, source_prompts: Any, latents: Optional[torch.Tensor], chosen: list[int], remote: bool) -> torch.Tensor:
    if (source_prompts is None) == (latents is None):
        raise InputError("give exactly one of source_prompts= and latents=")
    if latents is None:
        return last_token_states(model, as_prompts(source_prompts, "source_prompts"), chosen, remote)
    width = tuple(model.residual_shape)  # (hidden,), or several residual streams
    if (not isinstance(latents, torch.Tensor) or latents.ndim != 2 + len(width) or latents.shape[0] != len(chosen)
            or tuple(latents.shape[2:]) != width):
        shape = tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
        raise ShapeMismatchError(
            f"latents: expected (num_layers={len(chosen)}, num_sources, hidden={', '.join(map(str, width))}), got {shape}"
        )
    return latents


@torch.no_grad()
def patchscope_lens(
    model: Any,
    source_prompts: Union[str, Sequence[str], None] = None,
    target_patch_prompts: Union[TargetPrompt, Sequence[TargetPrompt], TargetPromptBatch, None] = None,
    layers: Layers = None,
    latents: Optional[torch.Tensor] = None,
    remote: bool = False,
    layer_to_patch: Layers = None,
    batch_size: Optional[int] = None,
) -> torch.Tensor:
    """Patchscope: decode each source's last-token state at a layer by patching it into a target prompt.

    For every layer ``l`` in ``layers`` (default all; ``layer_to_patch`` is an alias), the source's
    ``layers_output[l]`` at its last token (or ``latents[l_pos]``) replaces the target's
    ``layers_output[l]`` at ``index_to_patch``, and the target's next-token distribution is read.
    Source ``i`` pairs with target ``i`` (one :class:`TargetPrompt` is repeated; default
    :func:`repeat_prompt`). All layers run as one batch: each target is repeated once per layer and
    copy ``l`` is patched at layer ``l`` (``batch_size`` caps rows per forward); the target tokens
    before the patched position run once and are shared through the KV cache.

    Returns:
        ``(num_sources, num_layers, vocab)`` float32 probabilities on the CPU.
    """
    chosen = as_layers(model, _patch_layers(layer_to_patch, layers))
    states = _latents(model, source_prompts, latents, chosen, remote)  # (layers, sources, hidden)
    sources = states.shape[1]
    targets = TargetPromptBatch.auto(target_patch_prompts if target_patch_prompts is not None else repeat_prompt(), sources)
    if len(targets) != sources:
        raise InputError(f"{len(targets)} target prompts for {sources} sources: give one target or one per source")
    per_run = len(chosen) if batch_size is None else max(batch_size // sources, 1)
    out: list[torch.Tensor] = []
    for begin in range(0, len(chosen), per_run):
        block = slice(begin, min(begin + per_run, len(chosen)))
        out.append(_patch_run(model, targets, chosen[block], states[block], remote))
    return torch.cat(out, 1)


def _patch_run(model: Any, targets: TargetPromptBatch, layers: list[int], states: torch.Tensor, remote: bool) -> torch.Tensor:
    """One batched forward: target ``s`` is repeated once per layer, copy ``k`` patched at ``layers[k]``.

    Rows are source-major (row ``s * len(layers) + k``). The target tokens before the earliest
    patched position are the same in every copy (attention is causal), so they run once, un-batched,
    into a KV cache; the copies then run only from that position on, reusing it. Remote runs use
    one plain forward over all copies instead.
    """
    encoded = encode(model, targets.prompts)
    mask = encoded["attention_mask"]
    cols = columns(mask, targets.index_to_patch, "index_to_patch")
    copies = len(layers)
    start = int(cols.min())
    # Models that place learned positions in front of the input (CPM-Ant) rebuild them on every
    # forward, so a cache of the target's first columns does not line up: run the whole prompt.
    shareable = not remote and start > 0 and not getattr(model, "prefix_positions", 0)
    prefix = _prefix_cache(model, encoded, start, copies) if shareable else None
    if prefix is None:
        start = 0
    ids = encoded["input_ids"][:, start:].repeat_interleave(copies, 0)
    kwargs: dict[str, Any] = {"attention_mask": mask.repeat_interleave(copies, 0), "logits_to_keep": 1}
    if prefix is not None:
        kwargs[_cache_argument(model)] = prefix
        if _takes(model, "position_ids"):
            kwargs["position_ids"] = positions_from_mask(mask)[:, start:].repeat_interleave(copies, 0)
    patch_cols = (cols - start).repeat_interleave(copies, 0)
    sources = len(targets)
    order = sorted(range(copies), key=lambda k: layers[k])
    saved: list[Any] = []
    with model.trace(ids, remote=remote, **kwargs):
        for k in order:
            hidden = model.layers_output[layers[k]]
            rows = torch.arange(sources) * copies + k
            hidden[rows, patch_cols[rows]] = states[k].to(device=hidden.device, dtype=hidden.dtype)
        saved.append(model.next_token_probs.float().cpu().save())
    return saved[0].view(sources, copies, -1)


def _takes(model: Any, argument: str) -> bool:
    import inspect

    return argument in inspect.signature(type(model._module).forward).parameters


def _cache_argument(model: Any) -> str:
    """The forward argument taking a KV cache (``cache`` from transformers 5.24, else ``past_key_values``)."""
    return "cache" if _takes(model, "cache") else "past_key_values"


def _prefix_cache(model: Any, encoded: dict[str, torch.Tensor], end: int, copies: int) -> Any:
    """KV cache of the targets' first ``end`` columns, repeated ``copies`` times per row; ``None``
    when the model's cache is not a plain key/value cache."""
    if not model.dispatched:
        model.dispatch()
    device = model.device
    kwargs: dict[str, Any] = {
        "input_ids": encoded["input_ids"][:, :end].to(device),
        "attention_mask": encoded["attention_mask"][:, :end].to(device),
        "use_cache": True,
        "logits_to_keep": 1,
    }
    if _takes(model, "position_ids"):
        kwargs["position_ids"] = positions_from_mask(encoded["attention_mask"])[:, :end].to(device)
    output = model._module(**kwargs)
    cache = getattr(output, "cache", None) or getattr(output, "past_key_values", None)
    if cache is None:  # a model that keeps no cache (GPT-1): run the whole prompt
        return None
    # Only a plain key/value cache can be shared this way: recurrent or linear-attention state
    # (hybrid models) and model-specific caches run the whole prompt instead.
    layers = getattr(cache, "layers", None)
    if type(cache).__name__ != "DynamicCache" or not layers or any(
        type(layer).__name__ not in ("DynamicLayer", "DynamicSlidingWindowLayer") for layer in layers
    ):
        return None
    cache.batch_repeat_interleave(copies)
    return cache


@torch.no_grad()
def patchscope_generate(
    model: Any,
    prompts: Union[str, Sequence[str]],
    target_patch_prompt: TargetPrompt,
    max_length: int = 50,
    layers: Layers = None,
    remote: bool = False,
    max_batch_size: int = 32,
) -> dict[int, torch.Tensor]:
    """Generate from the target prompt with each source's last-token state patched in at each layer.

    The patch applies to the prompt's forward; generation then continues freely. Works for any list
    of layers (each layer reads and writes its own state). Layers are batched into generations of
    at most ``max_batch_size`` rows.

    Returns:
        ``{layer: token ids (num_prompts, prompt_len + new_tokens)}`` on the CPU, prompt included;
        ``max_length`` is the number of new tokens.
    """
    prompts = as_prompts(prompts)
    chosen = as_layers(model, layers)
    if not isinstance(target_patch_prompt, TargetPrompt):
        raise InputTypeError("target_patch_prompt must be a TargetPrompt(prompt, index_to_patch)")
    states = last_token_states(model, prompts, chosen, remote)
    n = len(prompts)
    per_run = max(max_batch_size // n, 1)
    result: dict[int, torch.Tensor] = {}
    for begin in range(0, len(chosen), per_run):
        block = list(range(begin, min(begin + per_run, len(chosen))))
        rows = [target_patch_prompt.prompt] * (n * len(block))
        mask = encode(model, rows)["attention_mask"]
        col = columns(mask, target_patch_prompt.index_to_patch, "index_to_patch")
        order = sorted(block, key=lambda b: chosen[b])
        saved: list[Any] = []
        with model.generate(rows, max_new_tokens=max_length, remote=remote) as tracer:
            for b in order:
                hidden = model.layers_output[chosen[b]]
                k = block.index(b)
                span = torch.arange(k * n, (k + 1) * n)
                hidden[span, col[span]] = states[b].to(device=hidden.device, dtype=hidden.dtype)
            saved.append(tracer.result.cpu().save())
        ids = saved[0]
        for k, b in enumerate(block):
            result[chosen[b]] = ids[k * n : (k + 1) * n]
    return result


def steer(
    model: Any,
    layers: Union[int, Sequence[int]],
    steering_vector: torch.Tensor,
    factor: float = 1,
    positions: Union[int, Sequence[int], torch.Tensor, None] = None,
    position: Union[int, None] = None,
) -> None:
    """Inside a trace: add ``factor * steering_vector`` to ``layers_output`` of ``layers`` at
    ``positions`` (default every position; ``position`` is an alias). Same as ``model.steer``."""
    if position is not None:
        if positions is not None:
            raise InputError("give positions= or position=, not both")
        positions = position
    model.steer(layers=layers, steering_vector=steering_vector, factor=factor, positions=positions)
