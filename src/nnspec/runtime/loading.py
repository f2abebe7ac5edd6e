"""Which transformers class builds the model a spec describes.

A text model is built by transformers' causal-LM auto class. A vision-language checkpoint may be
built two ways: the whole model (vision tower, projector, language model), or, for some model
types, only its text model. A spec that states where the language model sits in the wrapper
(``modules.language_model``) describes the whole model, so the whole model is built: the class
transformers' image-text-to-text auto class picks for that model type where it has one (some
vision-language types are in no causal-LM mapping; others map to a text-only class there). Every
other spec describes what the causal-LM auto class builds.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Optional


def auto_class(config: Any, spec: Optional[Any] = None) -> Any:
    """The transformers auto class that builds ``config``'s model as ``spec`` describes it.

    Args:
        config: the model's (whole) config.
        spec: the :class:`~nnspec.compiler.schema.Spec` serving it (None: decided by the config alone).
    """
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES,
    )

    model_type = getattr(config, "model_type", None)
    whole = spec is not None and getattr(spec.modules, "language_model", None) is not None
    if model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES and (
        whole or model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    ):
        return AutoModelForImageTextToText
    return AutoModelForCausalLM


@contextlib.contextmanager
def pipeline_accepts(class_name: str) -> Iterator[None]:
    """Silence the text-generation pipeline's complaint that ``class_name`` is in no causal-LM
    mapping while a vision-language model is wrapped in it (text prompts go through its tokenizer
    as for any causal LM; the model's forward takes the same inputs)."""
    import logging

    prefix = f"The model '{class_name}' is not supported for"

    def keep(record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(prefix)

    logger = logging.getLogger("transformers.pipelines.base")
    logger.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)
