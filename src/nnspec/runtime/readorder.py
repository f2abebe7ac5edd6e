"""The read order inside one layer, the same on every architecture.

NNsight serves values in the order the model computes them. Architectures compute a layer's
values in different orders (Falcon binds the values before applying rotary to queries and keys;
BLOOM's attention contribution needs the residual the attention module receives, which comes
before anything inside the attention). nnspec documents one order, :data:`~nnspec.runtime.names.LAYER_ORDER`, and makes
it work everywhere: reading a value also fetches, first, the values documented after it that the
model computes before it, and keeps them for their own read in the same forward.
"""

from __future__ import annotations

from typing import Any

from ..errors import OutOfOrderReadError
from .names import LAYER_ORDER

try:  # NNsight's error when a value is requested after the model computed it
    from nnsight.intervention.interleaver import OutOfOrderError as _NNsightOutOfOrder
except ImportError:  # pragma: no cover - every supported NNsight has it
    _NNsightOutOfOrder = ()  # type: ignore[assignment,misc]


def worker_memo() -> dict:
    """Per-invoke scratch space: lives on the worker greenlet running the trace body."""
    from greenlet import getcurrent

    worker = getcurrent()
    memo = getattr(worker, "_nnspec_memo", None)
    if memo is None:
        memo = {}
        worker._nnspec_memo = memo
    return memo


def step() -> Any:
    """The forward this read belongs to: the pinned step of ``tracer.iter`` (0 in a plain trace),
    or ``None`` when the worker follows the model step by step (``tracer.all()``), where values
    kept for a later read could belong to another step and so are never kept."""
    from nnsight.intervention.interleaver import Mediator

    try:
        return Mediator.current("a standard value").iteration
    except (ValueError, AttributeError):
        return None


def guarded(label: str, action: Any) -> Any:
    """Run ``action`` (a port read or write); an NNsight out-of-order error becomes an
    :class:`OutOfOrderReadError` naming the standard values involved and the documented order."""
    memo = worker_memo()
    try:
        result = action()
    except _NNsightOutOfOrder as exc:
        if step() != 0:
            # Inside a `tracer.iter` / `tracer.all()` loop, NNsight ends a loop that asked for a
            # step the run never made (the end of a generation) by throwing this error into the
            # loop and warning; it recognises its own error object, so let it through unchanged.
            raise
        layer = label.rsplit("[", 1)[-1].rstrip("]") if label.endswith("]") else None
        if layer is not None and layer.isdigit() and int(layer) in memo.get("skipped", ()):
            raise OutOfOrderReadError(
                f"{label} cannot be read: layer {layer} is skipped in this trace (skip_layers), so its modules never run; "
                "read layers_input / layers_output of a skipped layer instead"
            ) from None
        before = memo.get("last_read")
        after = f", after {before}" if before else ""
        raise OutOfOrderReadError(
            f"{label} was requested{after}, but the model had already computed it ({exc}). Inside a trace, read "
            f"values in forward order: layers in increasing order and, within a layer, "
            f"{', '.join(LAYER_ORDER)}; writes follow the order the model computes values in."
        ) from None
    memo["last_read"] = label
    return result
