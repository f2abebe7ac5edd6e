"""The spec of a plain HuggingFace model (or a plain NNsight wrapper of one).

nnterp's functional helpers take any NNsight model, not only a StandardizedTransformer. On a
plain model nnspec finds the bundled spec from the model's config (``config.model_type``, then
the text config's for a vision-language wrapper), checks it against the module tree (the same
structural check a StandardizedTransformer runs at load, no forward) and reads module paths
from it: nothing is guessed from lists of usual names.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any, Optional

import torch

from ..compiler.schema import ATTENTION_KINDS, Attention, Branch, Spec
from ..errors import CapabilityUnavailableError, InputTypeError, UnsupportedArchitectureError
from .adapter import Adapter, text_config
from .registry import adapter_for_model_type, model_types
from .structure import Structure, check_structure
from .unembed import final_module_paths


@dataclass(frozen=True)
class ModelFacts:
    """What the spec says about one loaded model, resolved for its config."""

    adapter: Adapter
    spec: Spec  # the effective spec (overrides applied)
    config: Any  # the text config the spec's keys read
    structure: Structure
    attention: tuple[Attention, ...]  # per layer
    mlp: tuple[Branch, ...]  # per layer
    final_modules: tuple[str, ...]  # ln_final and before_lm_head paths this model builds

    @property
    def num_layers(self) -> int:
        return self.structure.num_layers

    @property
    def backbone(self) -> Optional[str]:
        """The module holding the blocks (first component of ``modules.layers``; None when the
        blocks sit on the root)."""
        parts = self.spec.modules.layers.split(".")
        return parts[0] if len(parts) > 1 else None

    def attention_path(self, i: int) -> str:
        """Block-relative path of layer ``i``'s attention module; refused where it has none."""
        branch = self.attention[i]
        if branch.module is None or branch.kind not in ATTENTION_KINDS or self.spec.limits.attention_module:
            reason = self.spec.limits.attention_module or (
                f"its token mixer is kind {branch.kind!r}" if branch.module else "its block has no token mixer module"
            )
            raise CapabilityUnavailableError(
                f"layer {i} of this model has no attention module under the {self.adapter.name!r} spec: {reason}"
            )
        return branch.module

    def mlp_path(self, i: int) -> str:
        """Block-relative path of layer ``i``'s MLP module; refused where it has none."""
        branch = self.mlp[i]
        if branch.module is None or self.spec.limits.mlp_module:
            reason = self.spec.limits.mlp_module or "its block has no MLP module"
            raise CapabilityUnavailableError(
                f"layer {i} of this model has no MLP module under the {self.adapter.name!r} spec: {reason}"
            )
        return branch.module

    @property
    def ln_final_path(self) -> str:
        """Path of the final norm; refused where the model has none."""
        path = self.spec.modules.ln_final
        if path is None or path not in self.final_modules:
            why = "the spec declares none (modules.ln_final is empty)" if path is None else (
                f"this config builds no {path!r}"
            )
            raise CapabilityUnavailableError(
                f"this model has no final norm module under the {self.adapter.name!r} spec: {why}; the last block's "
                "output goes to the unembedding without one"
            )
        return path


def hf_module(model: Any) -> torch.nn.Module:
    """The HuggingFace module behind ``model`` (an NNsight wrapper or the module itself)."""
    module = getattr(model, "_module", model) if not isinstance(model, torch.nn.Module) else model
    if not isinstance(module, torch.nn.Module) or not hasattr(module, "config"):
        raise InputTypeError(
            f"expected an NNsight model wrapping a HuggingFace model (nnsight.LanguageModel, NNsight, "
            f"StandardizedTransformer) or a PreTrainedModel, got {type(model).__name__}"
        )
    return module


def _candidates(config: Any) -> list[str]:
    found = [getattr(config, "model_type", None), getattr(text_config(config), "model_type", None)]
    return [t for i, t in enumerate(found) if t and t not in found[:i]]


def _composites_of(text_type: str, served: dict[str, str]) -> list[str]:
    """Served model types whose (composite) config class holds a text config of ``text_type``: a
    text model built alone from such a checkpoint (Emu3's ``emu3_text_model``) carries only that."""
    from transformers import CONFIG_MAPPING

    found = []
    for model_type in sorted(served):
        try:
            config_class = CONFIG_MAPPING[model_type]
        except KeyError:
            continue
        text_class = (getattr(config_class, "sub_configs", None) or {}).get("text_config")
        if getattr(text_class, "model_type", None) == text_type:
            found.append(model_type)
    return found


def resolve_adapter_for_module(module: torch.nn.Module) -> Adapter:
    """The bundled adapter serving ``module``: by ``config.model_type``, else (a vision-language
    wrapper loaded as its text model) by the text config's model type, else by the served model
    type whose composite config holds a text config of this type; the first whose block list
    exists in the module tree."""
    config = module.config
    types = _candidates(config)
    served = model_types()
    usable = [t for t in types if t in served]
    if not usable and types:
        usable = [t for t in _composites_of(types[-1], served)
                  if adapter_for_model_type(t).spec.modules.language_model is None]
    if not usable:
        if types:
            adapter_for_model_type(types[0], type(module).__name__)  # raises with the served types
        raise UnsupportedArchitectureError(
            f"{type(module).__name__}'s config has no model_type, so no bundled spec can be found for it; build a "
            "StandardizedTransformer with spec='path/to/spec.toml'"
        )
    for model_type in usable:
        adapter = adapter_for_model_type(model_type, type(module).__name__)
        try:
            module.get_submodule(adapter.effective(text_config(config)).modules.layers)
        except AttributeError:
            continue
        return adapter
    return adapter_for_model_type(usable[0], type(module).__name__)


def facts_for_module(module: torch.nn.Module, adapter: Optional[Adapter] = None) -> ModelFacts:
    """Resolve and check ``adapter`` (default: the bundled one for the config) on ``module``.

    Raises:
        UnsupportedArchitectureError: no bundled spec serves the model's type (named).
        ModelStructureError: a spec path or config key is missing in this model.
    """
    adapter = adapter or resolve_adapter_for_module(module)
    config = text_config(module.config)
    spec = adapter.effective(config)
    structure = check_structure(module, config, spec, adapter.source)
    return ModelFacts(
        adapter=adapter,
        spec=spec,
        config=config,
        structure=structure,
        attention=tuple(record.attention for record in structure.layers),
        mlp=tuple(record.mlp for record in structure.layers),
        final_modules=tuple(final_module_paths(module, spec)),
    )


_FACTS: "weakref.WeakKeyDictionary[Any, ModelFacts]" = weakref.WeakKeyDictionary()


def facts_for(model: Any) -> ModelFacts:
    """:func:`facts_for_module` for an NNsight wrapper or a module, computed once per wrapper."""
    try:
        cached = _FACTS.get(model)
    except TypeError:  # not weak-referenceable / hashable: compute each time
        return facts_for_module(hf_module(model))
    if cached is None:
        cached = facts_for_module(hf_module(model))
        _FACTS[model] = cached
    return cached
