"""Small helpers under nnterp's ``utils`` names (see :mod:`nnspec.runtime.traceutils`)."""

from .runtime.traceutils import (
    ArchitectureNotFound,
    DummyCache,
    TraceTensor,
    display_markdown,
    display_source,
    dummy_inputs,
    is_notebook,
    package_version,
    try_with_scan,
    unpack_tuple,
)

#: The installed NNsight / transformers versions.
NNSIGHT_VERSION: str = package_version("nnsight")
TRANSFORMERS_VERSION: str = package_version("transformers")

__all__ = [
    "ArchitectureNotFound",
    "DummyCache",
    "NNSIGHT_VERSION",
    "TRANSFORMERS_VERSION",
    "TraceTensor",
    "display_markdown",
    "display_source",
    "dummy_inputs",
    "is_notebook",
    "try_with_scan",
    "unpack_tuple",
]
