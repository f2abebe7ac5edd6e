"""What the model applies after its last block, as one function: the final modules the spec lists
(final norm, modules before ``lm_head``), ``lm_head``, then the final logit transforms.

``StandardizedTransformer.project_on_vocab`` and :func:`nnspec.nnsight_utils.project_on_vocab`
on a plain NNsight model both go through :func:`unembed`, so the two agree by construction.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from ..compiler.schema import Spec
from .adapter import read_config
from .structure import module_absent


def final_module_paths(root: torch.nn.Module, spec: Spec) -> list[str]:
    """The spec's final modules (``ln_final`` then ``before_lm_head``) this model builds: an
    optional one the config does not build (its attribute is None) is left out."""
    modules = spec.modules
    return [p for p in modules.final() if not (p in modules.optional and module_absent(root, p))]


def apply_logit_transforms(logits: torch.Tensor, spec: Spec, config: Any) -> torch.Tensor:
    """The spec's final logit transforms (``logits.transforms``: multiply, divide, softcap) in order;
    a transform whose config value is None is skipped, as the model skips it."""
    for transform in spec.logits.transforms:
        value = read_config(config, transform.key)
        if value is None:
            continue
        if transform.op == "multiply":
            logits = logits * value
        elif transform.op == "divide":
            logits = logits / value
        else:
            logits = torch.tanh(logits / value) * value
    return logits


def unembed(
    hidden: torch.Tensor,
    final_modules: Sequence[Callable[[Any], Any]],
    lm_head: Callable[[Any], Any],
    spec: Spec,
    config: Any,
) -> torch.Tensor:
    """``hidden`` ``(..., hidden)`` through ``final_modules`` in order, ``lm_head`` and the spec's
    logit transforms, ``(..., vocab)``. ``final_modules`` / ``lm_head`` are callables (NNsight
    envoys or modules); ``config`` is the text config the transforms read."""
    x = hidden
    for module in final_modules:
        x = module(x)
    return apply_logit_transforms(lm_head(x), spec, config)
