"""Small helpers nnterp users import from ``nnterp.utils`` (public as :mod:`nnspec.utils`)."""

from __future__ import annotations

import logging
import sys
from typing import Any, Callable, Union

import torch

try:  # the tensor stand-in NNsight hands out while a trace is being built
    from nnsight.tracing.hint import Object as _TraceObject
except ImportError:  # pragma: no cover - other NNsight layouts
    _TraceObject = torch.Tensor  # type: ignore[misc, assignment]

#: A value read inside a trace: a tensor (NNsight 0.8 runs the trace body on real values), or
#: NNsight's stand-in while a trace is only being built.
TraceTensor = Union[torch.Tensor, _TraceObject]

logger = logging.getLogger("nnspec")


def package_version(name: str) -> str:
    """The installed version of ``name`` ("" when it is not installed)."""
    from .runtime.adapter import installed_version

    return installed_version(name) or ""


class ArchitectureNotFound:
    """Stand-in for a transformers model class the installed version does not have (``isinstance``
    with it is always False)."""


def is_notebook() -> bool:
    """Whether the code runs in a Jupyter kernel."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
        return shell is not None and "IPKernelApp" in shell.config
    except Exception:  # noqa: BLE001 - any failure means "not a notebook"
        return False


def display_markdown(text: str) -> None:
    """Render ``text`` as Markdown in a notebook (needs IPython)."""
    from IPython.display import Markdown, display

    display(Markdown(text))


def display_source(source: str) -> None:
    """Render Python ``source`` as a highlighted code block in a notebook."""
    display_markdown(f"```py\n{source}\n```")


class DummyCache:
    """A cache stand-in for code that calls ``to_legacy_cache()`` on a model's returned cache."""

    def to_legacy_cache(self) -> None:
        return None


def dummy_inputs() -> dict[str, torch.Tensor]:
    """A three-token input, ``{"input_ids": (1, 3)}``, for checks that only need some forward."""
    return {"input_ids": torch.tensor([[0, 1, 1]])}


def try_with_scan(
    model: Any,
    function: Callable[[], Any],
    error_to_throw: Exception,
    allow_dispatch: bool,
    warn_if_scan_fails: bool = True,
    errors_to_raise: Union[tuple[type[BaseException], ...], type[BaseException], None] = None,
) -> bool:
    """Run ``function`` inside ``model.scan(dummy_inputs())`` (fake tensors, no weights loaded);
    where that fails, inside ``model.trace(dummy_inputs())`` when ``allow_dispatch`` or the model is
    already loaded.

    Returns True when the scan served, False when the trace did. Errors of ``errors_to_raise``
    propagate as they are; any other failure of both raises ``error_to_throw``.
    """
    try:
        with model.scan(dummy_inputs(), use_cache=False) as tracer:
            function()
            tracer.stop()
        return True
    except Exception as scan_error:  # noqa: BLE001 - fall back to a real trace
        if errors_to_raise is not None and isinstance(scan_error, errors_to_raise):
            raise
        if not allow_dispatch and not getattr(model, "dispatched", True):
            raise error_to_throw from scan_error
        if warn_if_scan_fails:
            logger.warning("scan() failed (%s); running a trace instead, which loads the weights", scan_error)
        try:
            with model.trace(dummy_inputs()) as tracer:
                function()
                tracer.stop()
        except Exception as trace_error:  # noqa: BLE001
            if errors_to_raise is not None and isinstance(trace_error, errors_to_raise):
                raise
            raise error_to_throw from trace_error
        return False


def unpack_tuple(tensor_or_tuple: Any) -> Any:
    """The first element of a tuple (a module's hidden state), or the value itself."""
    return tensor_or_tuple[0] if isinstance(tensor_or_tuple, tuple) else tensor_or_tuple


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
