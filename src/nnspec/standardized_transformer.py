"""The standardized model class, under the module name nnterp users import it from."""

from .runtime.model import StandardizedTransformer

__all__ = ["StandardizedTransformer"]
