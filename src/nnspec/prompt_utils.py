"""Prompts with tracked target tokens (same names as nnterp's module)."""

from .runtime.prompts import Prompt, TargetTokenizationError, get_first_tokens, next_token_probs, run_prompts

__all__ = ["Prompt", "TargetTokenizationError", "get_first_tokens", "next_token_probs", "run_prompts"]
