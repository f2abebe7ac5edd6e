"""Prompts with target tokens, and batched probability tracking over many prompts.

``get_first_tokens`` finds the first token of a word both as it starts a text and after a space,
by tokenizing it behind a newline and reading the token that starts at the word (character
offsets), which works for byte-level BPE and sentencepiece-style (``▁``) tokenizers alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence, Union

import torch

from ..errors import InputError, UnknownNameError, did_you_mean

Targets = Union[str, Sequence[str], dict[str, Union[str, Sequence[str]]]]
_ANCHOR = "\n"


class TargetTokenizationError(ValueError):
    """A target string has no token of its own (it is empty or only whitespace)."""


def _tokenizer(llm_or_tokenizer: Any) -> Any:
    return getattr(llm_or_tokenizer, "tokenizer", None) or llm_or_tokenizer


def _first_token(tokenizer: Any, text: str) -> Optional[int]:
    """The id of the first token of ``text`` when it follows other text; ``None`` for whitespace."""
    if getattr(tokenizer, "is_fast", False):
        encoded = tokenizer(_ANCHOR + text, add_special_tokens=False, return_offsets_mapping=True)
        for token, (start, end) in zip(encoded["input_ids"], encoded["offset_mapping"]):
            if end > len(_ANCHOR) and start >= len(_ANCHOR):
                return None if not tokenizer.decode([token]).strip() else token
            if end > len(_ANCHOR):  # merged with the anchor: fall back to a bare encoding
                break
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    ids = [i for i in ids if tokenizer.decode([i]).strip()]
    return ids[0] if ids else None


def get_first_tokens(words: Union[str, Sequence[str]], llm_or_tokenizer: Any) -> list[int]:
    """First-token ids of each word, without and with a leading space (duplicates dropped, in order).

    Raises:
        TargetTokenizationError: a word that tokenizes to nothing.
    """
    tokenizer = _tokenizer(llm_or_tokenizer)
    tokens: list[int] = []
    for word in [words] if isinstance(words, str) else list(words):
        found = [t for t in (_first_token(tokenizer, word.lstrip(" ")), _first_token(tokenizer, " " + word.lstrip(" "))) if t is not None]
        if not word.strip() or not found:
            raise TargetTokenizationError(f"target {word!r} tokenizes to nothing: give a non-empty word")
        tokens += [t for t in found if t not in tokens]
    return tokens


@dataclass
class Prompt:
    """A prompt and, per category, the token ids whose probabilities are tracked."""

    prompt: str
    target_tokens: dict[str, list[int]]
    target_strings: Optional[dict[str, Union[str, list[str]]]] = None

    @classmethod
    def from_strings(cls, prompt: str, target_strings: Targets, tokenizer: Any) -> "Prompt":
        """Build from target words: a string or list (category ``"target"``) or ``{category: words}``.

        ``tokenizer`` may be a model; each word contributes its first token with and without a
        leading space.
        """
        if not isinstance(target_strings, dict):
            target_strings = {"target": target_strings}
        if not target_strings:
            raise InputError("target_strings is empty: give at least one category")
        tokens = {category: get_first_tokens(words, tokenizer) for category, words in target_strings.items()}
        return cls(prompt, tokens, dict(target_strings))

    def has_no_collisions(self, ignore_targets: Union[str, Sequence[str], None] = None) -> bool:
        """Whether no token id belongs to two categories (except those ignored)."""
        ignored = {ignore_targets} if isinstance(ignore_targets, str) else set(ignore_targets or ())
        seen: set[int] = set()
        for category, tokens in self.target_tokens.items():
            if category in ignored:
                continue
            if seen & set(tokens):
                return False
            seen |= set(tokens)
        return True

    def get_target_probs(self, probs: torch.Tensor, layer: Optional[int] = None) -> dict[str, torch.Tensor]:
        """Per category, the summed probability of its tokens: ``(batch, layers)`` from
        ``probs (batch, layers, vocab)``, or ``(batch,)`` for one ``layer``."""
        chosen = probs if layer is None else probs[:, layer : layer + 1]
        out = {category: chosen[:, :, tokens].sum(-1).cpu() for category, tokens in self.target_tokens.items()}
        return out if layer is None else {k: v[:, 0] for k, v in out.items()}

    def run(self, model: Any, get_probs: Callable[..., torch.Tensor]) -> dict[str, torch.Tensor]:
        """``get_target_probs`` of ``get_probs(model, self.prompt)`` (which returns ``(1, layers, vocab)``)."""
        return self.get_target_probs(get_probs(model, self.prompt))


@torch.no_grad()
def next_token_probs(model: Any, prompts: Union[str, Sequence[str]], remote: bool = False) -> torch.Tensor:
    """Softmax of the last position's logits, ``(batch, vocab)`` float32 on the CPU."""
    from .interventions import as_prompts

    saved: list[Any] = []
    with model.trace(as_prompts(prompts), remote=remote):
        saved.append(model.next_token_probs.float().cpu().save())
    return saved[0]


@torch.no_grad()
def run_prompts(
    model: Any,
    prompts: Sequence[Prompt],
    batch_size: int = 32,
    get_probs_func: Optional[Callable[..., torch.Tensor]] = None,
    func_kwargs: Optional[dict[str, Any]] = None,
    remote: bool = False,
    tqdm: Any = None,
    categories: Optional[Sequence[str]] = None,
) -> dict[str, torch.Tensor]:
    """Track each category's probability over many prompts, ``batch_size`` prompts per forward.

    Without ``get_probs_func`` the next-token distribution is used and each category maps to a
    ``(num_prompts,)`` tensor. ``get_probs_func(model, prompts, remote=..., **func_kwargs)`` must
    return ``(batch, layers, vocab)`` (e.g. :func:`logit_lens`), giving ``(num_prompts, layers)``.
    ``categories`` restricts the output; ``tqdm`` is a progress-bar factory (e.g. ``tqdm.tqdm``).
    """
    prompts = list(prompts)
    if not prompts:
        raise InputError("run_prompts: prompts is empty")
    if batch_size < 1:
        raise InputError(f"run_prompts: batch_size must be at least 1, got {batch_size}")
    known = list(prompts[0].target_tokens)
    for i, prompt in enumerate(prompts):
        if set(prompt.target_tokens) != set(known):
            raise InputError(f"prompts[{i}] tracks categories {sorted(prompt.target_tokens)}, prompts[0] tracks {sorted(known)}")
    wanted = list(categories) if categories is not None else known
    for category in wanted:
        if category not in known:
            raise UnknownNameError(f"unknown category {category!r}{did_you_mean(category, known)}; categories: {', '.join(known)}")
    starts = range(0, len(prompts), batch_size)
    if tqdm is not None:
        starts = tqdm(starts, desc="prompts", total=len(starts))
    chunks: dict[str, list[torch.Tensor]] = {c: [] for c in wanted}
    for start in starts:
        batch = prompts[start : start + batch_size]
        texts = [p.prompt for p in batch]
        if get_probs_func is None:
            probs = next_token_probs(model, texts, remote=remote).unsqueeze(1)
        else:
            probs = get_probs_func(model, texts, remote=remote, **(func_kwargs or {}))
        for row, prompt in enumerate(batch):
            for category in wanted:
                chunks[category].append(probs[row, :, prompt.target_tokens[category]].sum(-1).float().cpu())
    out = {c: torch.stack(v) for c, v in chunks.items()}
    return {c: v[:, 0] for c, v in out.items()} if get_probs_func is None else out
