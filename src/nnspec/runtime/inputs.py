"""What a trace receives: prompts and token ids checked before the forward, left padding, and
positions counted within each prompt's own tokens.

Every check here raises :class:`~nnspec.errors.InputError` naming the argument and the limit
before the model runs, instead of an index or reshape error from inside the model's code.
"""

from __future__ import annotations

import warnings
from typing import Any, Optional

import torch

from ..errors import InputError, NnspecWarning
from .configkeys import SIZE_KEYS


def check_invoke(inputs: tuple) -> None:
    """Refuse empty prompts, empty prompt lists and empty token-id tensors."""
    if not inputs:
        return
    data = inputs[0]
    if isinstance(data, str):
        if not data:
            raise InputError("prompt: an empty string has no tokens to run; give at least one character")
    elif isinstance(data, (list, tuple)):
        if len(data) == 0:
            raise InputError("prompts: the list is empty; give at least one prompt")
        empty = [i for i, item in enumerate(data) if isinstance(item, str) and not item]
        if empty:
            raise InputError(f"prompts[{empty[0]}]: an empty string has no tokens to run ({len(empty)} empty prompts)")
        if all(isinstance(item, (list, tuple)) for item in data) and any(len(item) == 0 for item in data):
            raise InputError("input_ids: a row of token ids is empty")
    elif isinstance(data, torch.Tensor) and not data.dtype.is_floating_point:
        if data.numel() == 0:
            raise InputError(f"input_ids: the tensor of shape {tuple(data.shape)} holds no tokens")


def position_limit(module: torch.nn.Module, config: Any) -> Optional[int]:
    """The longest input a learned position table allows (``None`` for rotary/ALiBi models).

    A model has a learned table when an embedding other than the token embedding has as many
    rows as a positions config value (OPT adds an offset of 2).
    """
    limits = {getattr(config, key) for key in SIZE_KEYS["positions"] if isinstance(getattr(config, key, None), int)}
    if not limits:
        return None
    # A transformers model's method; torch.nn.Module's attribute lookup types it as a tensor or module.
    get_embeddings = getattr(module, "get_input_embeddings", None)
    token = get_embeddings() if callable(get_embeddings) else None
    for child in module.modules():
        if isinstance(child, torch.nn.Embedding) and child is not token:
            for limit in limits:
                if limit <= child.num_embeddings <= limit + 2:
                    return limit
    return None


def check_encoding(encoding: dict, vocab_size: Optional[int], limit: Optional[int]) -> None:
    """Token ids inside the vocabulary, inputs no longer than the position table, every row with a
    real token."""
    ids = encoding.get("input_ids")
    if not isinstance(ids, torch.Tensor) or ids.numel() == 0:
        if isinstance(ids, torch.Tensor):
            raise InputError(f"input_ids: the batch of shape {tuple(ids.shape)} holds no tokens")
        return
    if vocab_size is not None:
        low, high = int(ids.min()), int(ids.max())
        if low < 0 or high >= vocab_size:
            bad = high if high >= vocab_size else low
            raise InputError(f"input_ids: token id {bad} is outside the vocabulary (valid: 0..{vocab_size - 1})")
    if limit is not None and ids.shape[-1] > limit:
        raise InputError(
            f"input of {ids.shape[-1]} tokens is longer than this model's {limit} learned positions; "
            f"shorten the prompt to at most {limit} tokens"
        )
    mask = encoding.get("attention_mask")
    if isinstance(mask, torch.Tensor) and mask.shape == ids.shape and bool((mask.sum(-1) == 0).any()):
        row = int((mask.sum(-1) == 0).nonzero()[0])
        raise InputError(f"prompt {row} of the batch has no real token (its attention mask is all zeros)")


_warned_right: set[int] = set()


def warn_right_padding(tokenizer: Any) -> None:
    """Warn once per tokenizer that nnspec pads on the left whatever ``padding_side`` says."""
    if id(tokenizer) not in _warned_right:
        _warned_right.add(id(tokenizer))
        warnings.warn(
            "tokenizer.padding_side is 'right', but nnspec pads its batches on the left so that the last "
            "column is every prompt's last token (next_token_probs, logit lens, patchscopes and positions "
            "rely on it); the setting is left as it is for your own tokenization",
            NnspecWarning,
            stacklevel=4,
        )


def invoke_mask(mask: Optional[torch.Tensor], batch: int, seq: int) -> torch.Tensor:
    """The attention mask of the current invoke's rows (all ones when the batch has none), so that
    positions count within each prompt's own tokens."""
    from nnsight.intervention.interleaver import Mediator

    if mask is None or mask.shape[-1] != seq:
        return torch.ones(batch, seq, dtype=torch.long)
    try:
        group = Mediator.current("positions").batch_group
    except (ValueError, AttributeError):
        group = None
    rows = mask if group is None else mask[group[0] : group[0] + group[1]]
    return rows if rows.shape[0] == batch else torch.ones(batch, seq, dtype=torch.long)


#: Keyword arguments NNsight's model class takes besides the transformers ones.
NNSIGHT_KWARGS = ("dispatch", "envoys", "meta_buffers", "peft", "processor", "image_processor", "feature_extractor", "config")


def _loading_kwargs() -> set[str]:
    """Keyword arguments ``from_pretrained`` understands in the installed transformers."""
    import inspect
    import re

    from transformers import PreTrainedModel

    method = PreTrainedModel.from_pretrained
    names = {n for n in inspect.signature(method).parameters if n not in ("kwargs", "model_args")}
    try:
        names |= set(re.findall(r'kwargs\.(?:pop|get)\(\s*"([A-Za-z_]+)"', inspect.getsource(method)))
    except (OSError, TypeError):  # pragma: no cover - source unavailable
        pass
    return names


def split_model_kwargs(kwargs: dict, config: Any) -> dict:
    """Take the config overrides out of ``kwargs`` (``output_attentions=True``...), as
    ``from_pretrained`` does, and return them; refuse a keyword argument neither transformers'
    loading, NNsight nor the config knows (the model would fail on it at the first forward)."""
    from .adapter import has_config

    known = _loading_kwargs() | set(NNSIGHT_KWARGS)
    overrides = {name: kwargs.pop(name) for name in list(kwargs) if name not in known and has_config(config, name)}
    for name in kwargs:
        if name not in known:
            from ..errors import did_you_mean

            raise InputError(
                f"StandardizedTransformer(..., {name}=...): not an argument of the model loader, NNsight or "
                f"{type(config).__name__}{did_you_mean(name, sorted(known))}"
            )
    return overrides
