"""Prompts with target tokens, and batched probability tracking over many prompts.

``get_first_tokens`` finds the first token of a word both as it starts a text and after a space,
by tokenizing it behind a newline and reading the token that starts at the word (character
offsets), which works for byte-level BPE and sentencepiece-style (``▁``) tokenizers alike.
The names and arguments are nnterp's (``nnterp.prompt_utils``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence, Union

import torch

from .errors import (
    InputError,
    InputTypeError,
    LayerIndexError,
    ShapeMismatchError,
    TokenizationError,
    UnknownNameError,
    did_you_mean,
)

Targets = Union[str, Sequence[str], dict[str, Union[str, Sequence[str]]]]
_ANCHOR = "\n"



# The name earlier nnspec versions used; the same class, so either name catches it.
TargetTokenizationError = TokenizationError


def tokenizer_of(llm_or_tokenizer: Any, label: str = "llm_or_tokenizer") -> Any:
    """The tokenizer of a model (anything with a ``.tokenizer``), or the tokenizer itself."""
    tokenizer = getattr(llm_or_tokenizer, "tokenizer", None) or llm_or_tokenizer
    if not callable(tokenizer) or not hasattr(tokenizer, "decode"):
        raise InputTypeError(
            f"{label} is a {type(llm_or_tokenizer).__name__}: give a model or a HuggingFace tokenizer"
        )
    return tokenizer


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


def _words(words: Any, label: str = "words") -> list[str]:
    listed = [words] if isinstance(words, str) else words
    if not isinstance(listed, (list, tuple)):
        raise InputTypeError(f"{label} is a {type(words).__name__}: give a string or a list of strings")
    for i, word in enumerate(listed):
        if not isinstance(word, str):
            raise InputTypeError(f"{label}[{i}] is a {type(word).__name__}, not a string")
    return list(listed)


def get_first_tokens(
    words: Union[str, Sequence[str]], llm_or_tokenizer: Any, use_hacky_implementation: bool = False
) -> list[int]:
    """First-token ids of each word, as it continues other text and after a space (duplicates
    dropped, in order of appearance).

    Leading spaces of a word are ignored (``" Paris"`` gives the same tokens as ``"Paris"``); a
    space variant that is only a space token is left out. ``llm_or_tokenizer`` is a model or a
    tokenizer. ``use_hacky_implementation=True`` gives, as nnterp's flag does, only the token that
    starts the word when it is glued to the text before it (no space variant).

    Raises:
        TokenizationError: a word that tokenizes to nothing (empty or only whitespace).
    """
    tokenizer = tokenizer_of(llm_or_tokenizer)
    tokens: list[int] = []
    for word in _words(words):
        bare = word.lstrip(" ")
        variants = (bare,) if use_hacky_implementation else (bare, " " + bare)
        found = [t for t in (_first_token(tokenizer, v) for v in variants) if t is not None]
        if not word.strip() or not found:
            raise TokenizationError(f"target {word!r} tokenizes to nothing: give a non-empty word")
        tokens += [t for t in found if t not in tokens]
    return tokens


@dataclass
class Prompt:
    """A prompt and, per category, the token ids whose probabilities are tracked.

    ``target_strings`` keeps the words the tokens came from (``None`` when built from ids).
    """

    prompt: str
    target_tokens: dict[str, list[int]]
    target_strings: Optional[dict[str, Union[str, list[str]]]] = None

    @classmethod
    def from_strings(cls, prompt: str, target_strings: Targets, tokenizer: Any) -> "Prompt":
        """Build from target words: a string or list (category ``"target"``) or ``{category: words}``.

        ``tokenizer`` may be a model; each word contributes its first token with and without a
        leading space (:func:`get_first_tokens`).
        """
        if not isinstance(prompt, str):
            raise InputTypeError(f"prompt is a {type(prompt).__name__}, not a string")
        if not isinstance(target_strings, dict):
            target_strings = {"target": target_strings}
        if not target_strings:
            raise InputError("target_strings is empty: give at least one category")
        tokens = {
            category: get_first_tokens(_words(words, f"target_strings[{category!r}]"), tokenizer)
            for category, words in target_strings.items()
        }
        kept = {category: words if isinstance(words, str) else list(words) for category, words in target_strings.items()}
        return cls(prompt, tokens, kept)

    def has_no_collisions(self, ignore_targets: Union[str, Sequence[str], None] = None) -> bool:
        """Whether no token id is tracked by two categories (categories in ``ignore_targets`` left out)."""
        ignored = {ignore_targets} if isinstance(ignore_targets, str) else set(ignore_targets or ())
        unknown = sorted(ignored - set(self.target_tokens))
        if unknown:
            raise UnknownNameError(
                f"ignore_targets: unknown category {unknown[0]!r}{did_you_mean(unknown[0], self.target_tokens)}; "
                f"categories: {', '.join(self.target_tokens)}"
            )
        seen: set[int] = set()
        for category, tokens in self.target_tokens.items():
            if category in ignored:
                continue
            if seen & set(tokens):
                return False
            seen |= set(tokens)
        return True

    def get_target_probs(self, probs: torch.Tensor, layer: Optional[int] = None) -> dict[str, torch.Tensor]:
        """Per category, the summed probability of its tokens, on the CPU.

        ``probs`` is ``(batch, layers, vocab)``; each category maps to ``(batch, layers)``, or to
        ``(batch,)`` for one ``layer`` (an index into the layer dimension; negatives count from the end).
        """
        if not isinstance(probs, torch.Tensor) or probs.ndim != 3:
            shape = tuple(probs.shape) if isinstance(probs, torch.Tensor) else type(probs).__name__
            raise ShapeMismatchError(f"probs: expected (batch, layers, vocab), got {shape}")
        vocab = probs.shape[-1]
        for category, tokens in self.target_tokens.items():
            if any(not -vocab <= int(t) < vocab for t in tokens):
                raise InputError(f"target_tokens[{category!r}] has ids outside the vocabulary of probs ({vocab})")
        if layer is not None:
            if isinstance(layer, bool) or not isinstance(layer, int) or not -probs.shape[1] <= layer < probs.shape[1]:
                raise LayerIndexError(f"layer={layer!r} is out of range for probs with {probs.shape[1]} layers")
        out = {category: probs[:, :, tokens].sum(-1).cpu() for category, tokens in self.target_tokens.items()}
        return out if layer is None else {k: v[:, layer] for k, v in out.items()}

    @torch.no_grad()
    def run(self, nn_model: Any, get_probs: Callable[..., torch.Tensor]) -> dict[str, torch.Tensor]:
        """:meth:`get_target_probs` of ``get_probs(nn_model, self.prompt)``, which must return
        ``(1, layers, vocab)`` (e.g. :func:`~nnspec.interventions.logit_lens`)."""
        return self.get_target_probs(get_probs(nn_model, self.prompt))


@torch.no_grad()
def next_token_probs(nn_model: Any, prompts: Union[str, Sequence[str]], remote: bool = False) -> torch.Tensor:
    """Softmax of the last position's logits, ``(batch, vocab)`` float32 on the CPU."""
    from .runtime.arguments import as_prompts

    saved: list[Any] = []
    with nn_model.trace(as_prompts(prompts), remote=remote):
        saved.append(nn_model.next_token_probs.float().cpu().save())
    return saved[0]


def next_token_probs_unsqueeze(
    nn_model: Any, prompt: Union[str, Sequence[str]], remote: bool = False, **_kwargs: Any
) -> torch.Tensor:
    """:func:`next_token_probs` with a layer dimension of one, ``(batch, 1, vocab)``: a
    ``get_probs_func`` for :func:`run_prompts`. Other keyword arguments are ignored."""
    return next_token_probs(nn_model, prompt, remote=remote).unsqueeze(1)


@torch.no_grad()
def run_prompts(
    nn_model: Any,
    prompts: Sequence[Prompt],
    batch_size: int = 32,
    get_probs_func: Optional[Callable[..., torch.Tensor]] = None,
    func_kwargs: Optional[dict[str, Any]] = None,
    remote: bool = False,
    tqdm: Any = None,
    categories: Optional[Sequence[str]] = None,
) -> dict[str, torch.Tensor]:
    """Track each category's probability over many prompts, ``batch_size`` prompts per call.

    Without ``get_probs_func`` the next-token distribution is used and each category maps to a
    ``(num_prompts,)`` tensor. ``get_probs_func(nn_model, prompts, remote=..., **func_kwargs)``
    must return ``(batch, layers, vocab)`` (e.g. :func:`logit_lens`,
    :func:`next_token_probs_unsqueeze`), giving ``(num_prompts, layers)``. ``categories``
    restricts the output; ``tqdm`` is a progress-bar factory (e.g. ``tqdm.auto.tqdm``), none by default.
    """
    prompts = list(prompts)
    if not prompts:
        raise InputError("run_prompts: prompts is empty")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"run_prompts: batch_size must be an integer of at least 1, got {batch_size!r}")
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, Prompt):
            raise InputTypeError(f"run_prompts: prompts[{i}] is a {type(prompt).__name__}, not a Prompt (Prompt.from_strings)")
    if get_probs_func is not None and not callable(get_probs_func):
        raise InputTypeError(f"run_prompts: get_probs_func is a {type(get_probs_func).__name__}, not a function")
    if func_kwargs is not None and not isinstance(func_kwargs, dict):
        raise InputTypeError(f"run_prompts: func_kwargs is a {type(func_kwargs).__name__}, not a dict")
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
            probs = next_token_probs(nn_model, texts, remote=remote).unsqueeze(1)
        else:
            probs = get_probs_func(nn_model, texts, remote=remote, **(func_kwargs or {}))
            if not isinstance(probs, torch.Tensor) or probs.ndim != 3 or probs.shape[0] != len(batch):
                shape = tuple(probs.shape) if isinstance(probs, torch.Tensor) else type(probs).__name__
                raise ShapeMismatchError(
                    f"run_prompts: get_probs_func returned {shape} for {len(batch)} prompts; expected (batch, layers, vocab)"
                )
        for row, prompt in enumerate(batch):
            for category in wanted:
                chunks[category].append(probs[row, :, prompt.target_tokens[category]].sum(-1).float().cpu())
    out = {c: torch.stack(v) for c, v in chunks.items()}
    return {c: v[:, 0] for c, v in out.items()} if get_probs_func is None else out


__all__ = [
    "Prompt",
    "TargetTokenizationError",
    "TokenizationError",
    "get_first_tokens",
    "next_token_probs",
    "next_token_probs_unsqueeze",
    "run_prompts",
]
