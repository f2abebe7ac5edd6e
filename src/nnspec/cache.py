"""The standard activation cache (``model.run_with_cache``)."""

from .runtime.cache import DEFAULT_NAMES, LAYER_VALUES, MODEL_VALUES, ActivationCache, run_with_cache

__all__ = ["ActivationCache", "DEFAULT_NAMES", "LAYER_VALUES", "MODEL_VALUES", "run_with_cache"]
