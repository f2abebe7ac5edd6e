"""Finding the adapter for a model: by ``config.model_type``, by spec name, or from a spec file."""

from __future__ import annotations

import importlib
from functools import cache
from pathlib import Path
from typing import Any, Union

from ..errors import InputTypeError, UnsupportedArchitectureError, did_you_mean
from .adapter import Adapter

SpecArgument = Union[str, Path, Adapter, type, None]


def _generated() -> Any:
    return importlib.import_module("nnspec.generated")


def spec_names() -> list[str]:
    """Names of the bundled specs."""
    return sorted(_generated().ADAPTERS)


def model_types() -> dict[str, str]:
    """``config.model_type`` -> bundled spec name."""
    return dict(_generated().MODEL_TYPES)


@cache
def adapter_by_name(name: str) -> Adapter:
    """The bundled adapter compiled from ``specs/<name>.toml``."""
    registry = _generated().ADAPTERS
    if name not in registry:
        raise UnsupportedArchitectureError(
            f"no bundled spec is named {name!r}{did_you_mean(name, registry)}; bundled specs: {', '.join(sorted(registry))}"
        )
    module, cls = registry[name]
    return getattr(importlib.import_module(f"nnspec.generated.{module}"), cls)()


def adapter_for_model_type(model_type: str, source: str = "the model") -> Adapter:
    """The bundled adapter serving ``model_type``.

    Raises:
        UnsupportedArchitectureError: no bundled spec serves it; the message says how to bring one.
    """
    types = _generated().MODEL_TYPES
    if model_type not in types:
        raise UnsupportedArchitectureError(
            f"{source} has config.model_type={model_type!r}, which no bundled spec serves"
            f"{did_you_mean(model_type, types)}. Write a spec for it (see docs/adding-an-architecture.md; "
            f"a spec can `extends` the closest bundled one) and pass it with "
            f"StandardizedTransformer(..., spec='path/to/{model_type}.toml'), or add it to "
            f"src/nnspec/specs/ and run `nnspec compile`. Served model types: {', '.join(sorted(types))}"
        )
    return adapter_by_name(types[model_type])


def resolve_adapter(spec: SpecArgument, model_type: str, source: str = "the model") -> Adapter:
    """The adapter for ``spec=``: an :class:`Adapter` (instance or class), a TOML path, a bundled
    spec name, or ``None`` to look ``model_type`` up in the registry."""
    if spec is None:
        return adapter_for_model_type(model_type, source)
    if isinstance(spec, Adapter):
        return spec
    if isinstance(spec, type) and issubclass(spec, Adapter):
        return spec()
    if isinstance(spec, Path) or (isinstance(spec, str) and (spec.endswith(".toml") or "/" in spec)):
        return Adapter.from_file(spec)
    if isinstance(spec, str):
        return adapter_by_name(spec)
    raise InputTypeError(f"spec= takes a spec file path, a bundled spec name or an Adapter, not {type(spec).__name__}")
