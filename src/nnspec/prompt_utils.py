"""Prompts with tracked target tokens (same names and arguments as nnterp's module)."""

from .runtime.prompts import (
    Prompt,
    TargetTokenizationError,
    TokenizationError,
    get_first_tokens,
    next_token_probs,
    next_token_probs_unsqueeze,
    run_prompts,
)

__all__ = [
    "Prompt",
    "TargetTokenizationError",
    "TokenizationError",
    "get_first_tokens",
    "next_token_probs",
    "next_token_probs_unsqueeze",
    "run_prompts",
]
