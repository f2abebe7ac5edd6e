"""Interventions: ``logit_lens``, patchscopes, steering (same names as nnterp's module)."""

from .runtime.interventions import (
    TargetPrompt,
    TargetPromptBatch,
    logit_lens,
    patchscope_generate,
    patchscope_lens,
    repeat_prompt,
    steer,
)

__all__ = ["TargetPrompt", "TargetPromptBatch", "logit_lens", "patchscope_generate", "patchscope_lens", "repeat_prompt", "steer"]
