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

#: The first transformers release whose loaders take ``dtype=``; earlier ones only know ``torch_dtype=``.
DTYPE_KEYWORD_SINCE = "4.56"


def takes_dtype_keyword() -> bool:
    """Whether the installed transformers' ``from_pretrained`` / ``from_config`` take ``dtype=``
    (4.56 and later) rather than only ``torch_dtype=``."""
    from packaging.version import Version

    from .adapter import installed_version

    installed = installed_version("transformers")
    return installed is None or Version(installed) >= Version(DTYPE_KEYWORD_SINCE)


def dtype_kwarg(dtype: Any) -> dict[str, Any]:
    """``{"dtype": dtype}``, or ``{"torch_dtype": dtype}`` for a transformers older than 4.56:
    the keyword argument that sets the weights' dtype when a model is built or loaded."""
    return {"dtype": dtype} if takes_dtype_keyword() else {"torch_dtype": dtype}


def normalize_dtype_kwargs(kwargs: dict[str, Any], where: str = "StandardizedTransformer") -> dict[str, Any]:
    """Rename a user's ``dtype=`` to ``torch_dtype=`` in ``kwargs`` (in place, and returned) when
    the installed transformers is older than 4.56, so ``dtype=`` works on every supported release.
    Passing both names is refused (:class:`~nnspec.errors.InputError`); on newer releases
    ``torch_dtype=`` is left for transformers to accept as before."""
    from ..errors import InputError

    if "dtype" in kwargs and "torch_dtype" in kwargs:
        raise InputError(
            f"{where}(dtype=..., torch_dtype=...): both name the weights' dtype; pass only dtype="
        )
    if "dtype" in kwargs and not takes_dtype_keyword():
        kwargs["torch_dtype"] = kwargs.pop("dtype")
    return kwargs


def auto_class(config: Any, spec: Optional[Any] = None) -> Any:
    """The transformers auto class that builds ``config``'s model as ``spec`` describes it.

    Args:
        config: the model's (whole) config.
        spec: the :class:`~nnspec.compiler.schema.Spec` serving it (None: decided by the config alone).
    """
    import transformers
    from transformers.models.auto import modeling_auto

    # The image-text-to-text auto class first shipped in transformers 4.46; before it a whole
    # vision-language model is built by the vision-to-seq auto class (below), every other model
    # by the causal-LM one.
    image_text = getattr(modeling_auto, "MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES", {})
    model_type = getattr(config, "model_type", None)
    whole = spec is not None and getattr(spec.modules, "language_model", None) is not None
    if model_type in image_text and (whole or model_type not in modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES):
        return transformers.AutoModelForImageTextToText
    # Before 4.46 a whole vision-language model the causal-LM auto class does not map (LLaVA,
    # PaliGemma in 4.45.2) is built by the vision-to-seq auto class, which maps it to the same class.
    vision_2_seq = getattr(modeling_auto, "MODEL_FOR_VISION_2_SEQ_MAPPING_NAMES", {})
    if (not image_text and whole and model_type in vision_2_seq
            and model_type not in modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES):
        return transformers.AutoModelForVision2Seq
    return transformers.AutoModelForCausalLM


def from_config(auto: Any, config: Any, **kwargs: Any) -> Any:
    """``auto.from_config(config, **kwargs)``, built from the text sub-config where the class ``auto``
    maps ``config`` to takes that sub-config's class (a composite checkpoint whose causal-LM class
    builds only the text model), as ``auto.from_pretrained`` does in every release. ``from_config``
    makes that swap itself only in later releases (5.10.4 does, 5.3.0 does not); before, the class
    got the whole config and failed on the first text key it read."""
    from transformers.models.auto.auto_factory import _get_model_class

    if builds_text_model(auto, config):
        kwargs.pop("trust_remote_code", None)  # a library class: the auto class drops it the same way
        return _get_model_class(config, auto._model_mapping)._from_config(config.get_text_config(), **kwargs)
    return auto.from_config(config, **kwargs)


def builds_text_model(auto: Any, config: Any) -> bool:
    """Whether the class ``auto`` maps ``config`` to takes only its text sub-config."""
    from transformers.models.auto.auto_factory import _get_model_class

    mapping = getattr(auto, "_model_mapping", None)
    sub_configs = getattr(config, "sub_configs", None) or {}
    text_class = sub_configs.get("text_config") if isinstance(sub_configs, dict) else None
    if mapping is None or text_class is None or type(config) not in mapping:
        return False
    return getattr(_get_model_class(config, mapping), "config_class", None) == text_class


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


def load_tokenizer(source: Any, trust_remote_code: bool = False, revision: Optional[str] = None, **kwargs: Any) -> Any:
    """The tokenizer of ``source`` (a hub id or a checkpoint directory), loaded explicitly.

    NNsight 0.8.1 decides which preprocessors to hand the text-generation pipeline from the
    pipeline class's ``_load_tokenizer`` flag, read off ``check_task(task)[1]["impl"]``; from
    transformers 5.x that entry is the class's dotted name (a string), so every flag reads False,
    no tokenizer source is passed, and the pipeline built around the meta model fails with
    "Impossible to guess which tokenizer to use". Passing the tokenizer object avoids that lookup.
    """
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(source), trust_remote_code=trust_remote_code, revision=revision, **kwargs)


def load_model(repo_id: Any, **kwargs: Any) -> Any:
    """A plain ``nnsight.LanguageModel`` of ``repo_id`` (a hub id or a local checkpoint directory).

    The tokenizer is loaded here and passed in (see :func:`load_tokenizer`), which is what makes
    ``LanguageModel(repo_id)`` work on NNsight 0.8.1 with transformers 5; ``tokenizer=`` replaces
    it. A vision-language checkpoint whose bundled spec describes the whole wrapper is built with
    the class that spec describes (as :func:`auto_class` picks), then wrapped. Other kwargs go to
    ``LanguageModel`` (``dtype``, ``device_map``, ``dispatch``, ``revision``, ``trust_remote_code``...).
    The weights load lazily on the first trace, as NNsight does, except for such a wrapper.
    """
    import warnings

    from transformers import AutoConfig

    from ..errors import InputError

    if repo_id is None or not str(repo_id).strip():
        raise InputError(f"load_model(repo_id): expected a hub id or a local checkpoint directory, got {repo_id!r}")
    repo_id = str(repo_id)
    normalize_dtype_kwargs(kwargs, "load_model")
    trust = bool(kwargs.get("trust_remote_code", False))
    revision = kwargs.get("revision")
    tokenizer = kwargs.pop("tokenizer", None)
    if tokenizer is None:
        tokenizer = load_tokenizer(repo_id, trust, revision, **(kwargs.pop("tokenizer_kwargs", None) or {}))
    config = AutoConfig.from_pretrained(repo_id, trust_remote_code=trust, revision=revision)
    from .registry import adapter_by_name, model_types

    served = model_types().get(getattr(config, "model_type", ""))
    spec = adapter_by_name(served).spec if served else None
    auto = auto_class(config, spec)
    from nnsight import LanguageModel

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="LanguageModel is deprecated")
        if auto.__name__ == "AutoModelForCausalLM":
            return LanguageModel(repo_id, tokenizer=tokenizer, **kwargs)
        model_kwargs = {k: kwargs.pop(k) for k in ("dtype", "torch_dtype", "device_map", "revision", "attn_implementation")
                        if k in kwargs}
        module = auto.from_pretrained(repo_id, trust_remote_code=trust, **model_kwargs)
        with pipeline_accepts(type(module).__name__):
            return LanguageModel(module, tokenizer=tokenizer, **kwargs)
