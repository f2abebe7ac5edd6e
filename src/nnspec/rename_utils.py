"""nnterp's renaming names, answered from nnspec's specs (see :mod:`nnspec.runtime.renameconfig`).

The name tables (``LAYER_NAMES``, ``ATTENTION_NAMES``...) list the module paths the bundled specs
use for each role, computed on first access; ``IGNORE_MLP_MODELS`` is the tuple of transformers
classes whose spec has no MLP module (for ``isinstance``).
"""

from typing import TYPE_CHECKING, Any

from .runtime.renameconfig import (
    AttnProbFunction,
    IgnoreType,
    IOType,
    RenameConfig,
    RenamingError,
    check_io,
    check_model_renaming,
    default_attn_head_config_keys,
    default_hidden_size_config_keys,
    default_vocab_size_config_keys,
    expand_path_with_model,
    get_hidden_size,
    get_ignores,
    get_num_attention_heads,
    get_rename_dict,
    get_vocab_size,
    text_config,
)

if TYPE_CHECKING:
    # What the names computed on first use below are, for type checkers and editors.
    from .runtime.accessors import AttentionProbabilitiesAccessor
    from .runtime.accessors import ValueAccessor as LayerAccessor

    MODEL_NAMES: list[str]
    LAYER_NAMES: list[str]
    ATTENTION_NAMES: list[str]
    MLP_NAMES: list[str]
    LN_NAMES: list[str]
    LM_HEAD_NAMES: list[str]
    EMBED_TOKENS_NAMES: list[str]
    IGNORE_MLP_MODELS: tuple[type, ...]

_TABLES = ("MODEL_NAMES", "LAYER_NAMES", "ATTENTION_NAMES", "MLP_NAMES", "LN_NAMES", "LM_HEAD_NAMES", "EMBED_TOKENS_NAMES")


def __getattr__(name: str) -> Any:
    # Computed from the bundled specs on first use (IGNORE_MLP_MODELS imports transformers classes).
    from .runtime import renameconfig

    if name in _TABLES:
        return list(renameconfig.name_tables()[name])
    if name == "IGNORE_MLP_MODELS":
        return renameconfig.ignore_mlp_models()
    if name in ("LayerAccessor", "AttentionProbabilitiesAccessor"):
        # nnspec's per-layer value accessors (``model.layers_output``, ``model.attention_probabilities``).
        from .runtime import accessors

        return accessors.ValueAccessor if name == "LayerAccessor" else accessors.AttentionProbabilitiesAccessor
    raise AttributeError(f"module 'nnspec.rename_utils' has no attribute {name!r}")


__all__ = [
    "ATTENTION_NAMES",
    "AttentionProbabilitiesAccessor",
    "LayerAccessor",
    "AttnProbFunction",
    "EMBED_TOKENS_NAMES",
    "IGNORE_MLP_MODELS",
    "IOType",
    "IgnoreType",
    "LAYER_NAMES",
    "LM_HEAD_NAMES",
    "LN_NAMES",
    "MLP_NAMES",
    "MODEL_NAMES",
    "RenameConfig",
    "RenamingError",
    "check_io",
    "check_model_renaming",
    "default_attn_head_config_keys",
    "default_hidden_size_config_keys",
    "default_vocab_size_config_keys",
    "expand_path_with_model",
    "get_hidden_size",
    "get_ignores",
    "get_num_attention_heads",
    "get_rename_dict",
    "get_vocab_size",
    "text_config",
]
