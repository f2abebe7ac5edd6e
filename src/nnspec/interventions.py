"""Interventions: ``logit_lens``, patchscopes, steering (same names and arguments as nnterp's module)."""

from .runtime.interventions import (
    TargetPrompt,
    TargetPromptBatch,
    it_repeat_prompt,
    logit_lens,
    patch_object_attn_lens,
    patchscope_generate,
    patchscope_lens,
    repeat_prompt,
    steer,
)

__all__ = [
    "TargetPrompt",
    "TargetPromptBatch",
    "it_repeat_prompt",
    "logit_lens",
    "patch_object_attn_lens",
    "patchscope_generate",
    "patchscope_lens",
    "repeat_prompt",
    "steer",
]
