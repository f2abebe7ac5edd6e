"""Where a model's weights go when the caller does not say: the default ``device_map``.

nnterp loads every model with ``device_map="auto"``. nnspec does the same where that places the
model on an accelerator: when ``accelerate`` is installed (``pip install 'nnspec[accelerate]'``)
and a CUDA or MPS device is visible. Elsewhere (a CPU-only machine, or no ``accelerate``) the
model loads as ``transformers`` loads it, on the CPU in one piece, so that nothing needs
``accelerate``. An explicit ``device_map=`` (``None`` included) always wins.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Optional

import torch


def accelerator_available() -> bool:
    """Whether a CUDA (or ROCm) GPU or an Apple MPS device is visible to torch."""
    if torch.cuda.is_available():
        return True
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def accelerate_installed() -> bool:
    """Whether the ``accelerate`` package can be imported (``device_map="auto"`` needs it)."""
    return importlib.util.find_spec("accelerate") is not None


def default_device_map(model: Any) -> Optional[str]:
    """The ``device_map`` used when none is given: ``"auto"`` for a hub id or checkpoint path when
    ``accelerate`` is installed and an accelerator is visible, else ``None`` (load normally).

    A model object that is already loaded is never moved (``None``)."""
    if isinstance(model, torch.nn.Module):
        return None
    if accelerate_installed() and accelerator_available():
        return "auto"
    return None


def apply_default_device_map(model: Any, kwargs: dict[str, Any]) -> None:
    """Set ``kwargs["device_map"]`` to :func:`default_device_map` unless the caller gave one."""
    if "device_map" in kwargs:
        return
    chosen = default_device_map(model)
    if chosen is not None:
        from ..logging import logger

        logger.info("loading %s with device_map=%r (accelerate and a GPU or MPS device are present); "
                    "pass device_map=None to load it on the CPU", model, chosen)
        kwargs["device_map"] = chosen
