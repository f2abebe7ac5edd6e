"""nnspec: one standard interface for interpretability on every HuggingFace causal LM.

``StandardizedTransformer(model)`` loads any served architecture with NNsight and exposes
``layers_output[i]``, ``attentions_output[i]``, ``mlps_output[i]``, ``logits``,
``project_on_vocab`` and the rest, with the same meaning on every architecture.
"""

from typing import TYPE_CHECKING, Any

from .errors import (
    CapabilityUnavailableError,
    ConformanceError,
    LayerIndexError,
    ModelStructureError,
    NnspecError,
    ShapeMismatchError,
    SpecError,
    UnsupportedArchitectureError,
)

if TYPE_CHECKING:
    # What the lazy names below are, for type checkers and editors (nothing is imported at run time).
    from .nnsight_utils import ModuleAccessor
    from .runtime.adapter import Adapter
    from .runtime.renameconfig import get_rename_dict
    from .standardized_transformer import StandardizedTransformer


if not TYPE_CHECKING:  # hidden from type checkers, so that a misspelt name is an error there

    def __getattr__(name: str) -> Any:
        # The runtime imports torch and NNsight: load it on first use, so that the spec compiler and
        # the command line start without them.
        if name == "StandardizedTransformer":
            from .standardized_transformer import StandardizedTransformer

            return StandardizedTransformer
        if name == "Adapter":
            from .runtime.adapter import Adapter

            return Adapter
        if name == "ModuleAccessor":  # nnterp's top-level names
            from .nnsight_utils import ModuleAccessor

            return ModuleAccessor
        if name == "get_rename_dict":
            from .runtime.renameconfig import get_rename_dict

            return get_rename_dict
        raise AttributeError(f"module 'nnspec' has no attribute {name!r}")


from ._version import __version__  # noqa: E402  (the one version source)

__all__ = [
    "Adapter",
    "CapabilityUnavailableError",
    "ConformanceError",
    "LayerIndexError",
    "ModelStructureError",
    "ModuleAccessor",
    "NnspecError",
    "ShapeMismatchError",
    "SpecError",
    "StandardizedTransformer",
    "UnsupportedArchitectureError",
    "__version__",
    "get_rename_dict",
]
