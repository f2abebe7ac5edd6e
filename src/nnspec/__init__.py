"""nnspec: one standard interface for interpretability on every HuggingFace causal LM.

``StandardizedTransformer(model)`` loads any served architecture with NNsight and exposes
``layers_output[i]``, ``attentions_output[i]``, ``mlps_output[i]``, ``logits``,
``project_on_vocab`` and the rest, with the same meaning on every architecture.
"""

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
from .runtime.adapter import Adapter
from .runtime.model import StandardizedTransformer

__version__ = "0.1.0"

__all__ = [
    "Adapter",
    "CapabilityUnavailableError",
    "ConformanceError",
    "LayerIndexError",
    "ModelStructureError",
    "NnspecError",
    "ShapeMismatchError",
    "SpecError",
    "StandardizedTransformer",
    "UnsupportedArchitectureError",
]
