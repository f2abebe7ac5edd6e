"""Token positions in left-padded batches, shared by the interventions and collection helpers.

Causal models are left-padded by NNsight, so a prompt's real tokens sit at the right edge of the
batch. A position is given relative to the prompt's own tokens (``-1`` the last, ``0`` the first)
and converted here to a column of the padded batch.
"""

from __future__ import annotations

from typing import Any, Sequence, Union

import torch

from ..errors import InputError, PositionError

Positions = Union[int, Sequence[int], torch.Tensor]


def encode(model: Any, prompts: list[str]) -> dict[str, torch.Tensor]:
    """Tokenize ``prompts`` exactly as a trace over them does (left padding, special tokens)."""
    return model.tokenizer(prompts, return_tensors="pt", padding=True)


def positions_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids of a left-padded batch: 0 at each prompt's first real token, ``(batch, seq)``."""
    return (attention_mask.cumsum(-1) - 1).clamp(min=0)


def real_lengths(attention_mask: torch.Tensor) -> torch.Tensor:
    """Number of real tokens per row, ``(batch,)``."""
    return attention_mask.sum(-1)


def columns(attention_mask: torch.Tensor, index: Positions, label: str = "index") -> torch.Tensor:
    """Padded-batch columns for per-prompt token indices, ``(batch,)`` or ``(batch, n)``.

    ``index`` is one int for every prompt, one per prompt, or ``(batch, n)``; negatives count from
    each prompt's last real token. Raises ``IndexError`` naming ``label`` when out of range.
    """
    width = attention_mask.shape[-1]
    lengths = real_lengths(attention_mask)
    idx = torch.as_tensor(index, dtype=torch.long)
    expand = idx.ndim == 0
    if expand:
        idx = idx.expand(len(lengths))
    per_row = lengths.view(-1, *([1] * (idx.ndim - 1))).expand_as(idx) if idx.ndim > 1 else lengths
    if idx.shape[0] != len(lengths):
        raise InputError(f"{label}: {idx.shape[0]} indices for {len(lengths)} prompts")
    bad = (idx >= per_row) | (idx < -per_row)
    if bad.any():
        row = int(bad.nonzero()[0][0])
        raise PositionError(
            f"{label}={idx.flatten()[row].item() if expand else idx[row].tolist()} is out of range for prompt {row}, "
            f"which has {int(lengths[row])} tokens"
        )
    start = width - per_row
    return torch.where(idx >= 0, start + idx, width + idx)
