"""Ports: how one standard value is read and written inside a trace.

A port turns a module's raw NNsight value (tuple or tensor, flattened or not, with or without
the residual already added) into the standard tensor, and turns a standard tensor given to a
setter back into the raw value the model expects. Every getter returns ``(batch, seq, hidden)``
for residual-stream values; every setter checks the shape it is given.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence, Union

import torch

from ..errors import InputError, ModelStructureError, OutOfOrderReadError, ShapeMismatchError
from .readorder import step
from .readorder import worker_memo as _worker_memo

Element = Union[int, Sequence[int]]  # an index, or a path of indices into nested tuples


def _path(element: Element) -> tuple[int, ...]:
    return (element,) if isinstance(element, int) else tuple(element)


def pick(raw: Any, element: Element, where: Optional[str] = None) -> torch.Tensor:
    """The hidden state inside a module output that may be a tuple (``element`` may be a path,
    ``[0, 0]``: element 0 of the tuple at element 0; an output that is already a tensor is the
    hidden state); with ``where`` (the spec file and key that chose ``element``), anything but a
    tensor there raises :class:`ModelStructureError` naming what the module returned."""
    value, container, index = raw, raw, 0
    for index in _path(element):
        if not isinstance(value, (tuple, list)) or index >= len(value):
            break
        container, value = value, value[index]
    if where is not None and not isinstance(value, torch.Tensor):
        found = (
            f"a {type(container).__name__} of {len(container)} (element types: {', '.join(type(v).__name__ for v in container)})"
            if isinstance(container, (tuple, list)) else type(container).__name__
        )
        raise ModelStructureError(f"{where}: the module returned {found}, so element {index} is not a hidden-state tensor")
    return value


def replace(raw: Any, element: Element, value: Any) -> Any:
    """``raw`` with its hidden state replaced (same container types: tuples, or lists as some
    older modules return; ``element`` may be a path into nested tuples)."""
    first, *rest = _path(element)
    if rest and isinstance(raw, (tuple, list)):
        value = replace(raw[first], rest, value)
    if isinstance(raw, tuple):
        return raw[:first] + (value,) + raw[first + 1 :]
    if isinstance(raw, list):
        return raw[:first] + [value] + raw[first + 1 :]
    return value


def check_value(label: str, value: Any, expected: torch.Size, like: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``value`` checked to be a tensor of shape ``expected`` and brought to ``like``'s dtype and
    device; raises :class:`ShapeMismatchError` for a wrong shape and :class:`InputError` for a
    dtype change that would lose information (float64 values float32 cannot hold exactly...)."""
    if not isinstance(value, torch.Tensor):
        raise ShapeMismatchError(f"{label} = value: expected a tensor of shape {tuple(expected)}, got {type(value).__name__}")
    if value.shape != expected:
        raise ShapeMismatchError(f"{label} = value: expected shape {tuple(expected)}, got {tuple(value.shape)}")
    if like is None or (value.dtype == like.dtype and value.device == like.device):
        return value
    cast = value.to(dtype=like.dtype, device=like.device)
    if value.dtype != like.dtype and not torch.equal(cast.to(dtype=value.dtype, device=value.device), value):
        raise InputError(
            f"{label} = value: the model holds {like.dtype}, and this {value.dtype} tensor does not convert without "
            f"loss; convert it yourself (value.to({like.dtype}))"
        )
    return cast


def _has_prefix(value: torch.Tensor, prefix: int) -> bool:
    """Whether ``value`` (``(batch, positions, ...)``) carries ``prefix`` positions the model placed
    in front of the input: a forward continuing from a KV cache sees only its new positions."""
    return prefix > 0 and value.ndim >= 2 and value.shape[1] > prefix


def drop_prefix(value: torch.Tensor, prefix: int) -> torch.Tensor:
    """``value`` without the first ``prefix`` positions (see ``layer.prefix`` in the spec)."""
    return value[:, prefix:] if _has_prefix(value, prefix) else value


def _own_shape(current: torch.Tensor, prefix: int, shape: Optional[torch.Size] = None) -> torch.Size:
    full = shape if shape is not None else current.shape
    if not (prefix > 0 and len(full) >= 2 and full[1] > prefix):
        return torch.Size(full)
    return torch.Size((full[0], full[1] - prefix, *full[2:]))


def with_prefix(full: torch.Tensor, value: torch.Tensor, prefix: int) -> torch.Tensor:
    """``value`` (the input's positions) behind the prefix positions of ``full``."""
    if not _has_prefix(full, prefix):
        return value
    return torch.cat([full[:, :prefix].to(value.dtype), value], dim=1)


def _grad_without_prefix(prefix: int, then: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda grad: drop_prefix(then(grad), prefix)


class Port:
    """A standard value at one layer (or the model), with get and set."""

    def __init__(self, label: str) -> None:
        self.label = label

    def get(self) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def set(self, value: torch.Tensor) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def graph_value(self) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
        """The tensor on the autograd path behind this value, and the map from its gradient to the
        gradient of the standard value. Default: the value itself."""
        return self.get(), _same


def _same(grad: torch.Tensor) -> torch.Tensor:
    return grad


class OutputPort(Port):
    """A module's output (the ``element``-th item when the module returns a tuple)."""

    def __init__(
        self, label: str, envoy: Any, element: Element = 0, clone: bool = False, where: Optional[str] = None, prefix: int = 0
    ) -> None:
        super().__init__(label)
        self.envoy = envoy
        self.element = element
        self.clone = clone  # the model may scale this output in place afterwards
        self.where = where  # the spec file and key naming `element`, for errors
        self.prefix = prefix  # positions the model placed in front of the input (left out)

    def get(self) -> torch.Tensor:
        value = pick(self.envoy.output, self.element, self.where)
        value = drop_prefix(value, self.prefix)
        return value.clone() if self.clone else value

    def graph_value(self) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
        if not self.prefix:
            return self.get(), _same
        return pick(self.envoy.output, self.element, self.where), _grad_without_prefix(self.prefix, _same)

    def set(self, value: torch.Tensor) -> None:
        raw = self.envoy.output
        current = pick(raw, self.element)
        value = check_value(self.label, value, _own_shape(current, self.prefix), current)
        self.envoy.output = replace(raw, self.element, with_prefix(current, value, self.prefix))


class InputPort(Port):
    """A module's first input (the hidden state it reads)."""

    def __init__(self, label: str, envoy: Any, shape: Optional[Callable[[], torch.Size]] = None, prefix: int = 0) -> None:
        super().__init__(label)
        self.envoy = envoy
        self.shape = shape  # block shape for modules that see flattened tokens
        self.prefix = prefix  # positions the model placed in front of the input (left out)

    def get(self) -> torch.Tensor:
        value = self.envoy.input
        value = value.view(self.shape()) if self.shape is not None else value
        return drop_prefix(value, self.prefix)

    def graph_value(self) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
        # The tensor a module reads may feed other modules too (Falcon's shared input norm); hand
        # this module an alias so the gradient is the one through this module alone, which is
        # what changing this input (the setter) changes.
        args, kwargs = self.envoy.inputs
        if not args:
            value = self.envoy.input
            alias = value.view_as(value)
            self.envoy.input = alias
        else:
            value = args[0]
            alias = value.view_as(value)
            self.envoy.inputs = (tuple(alias if arg is value else arg for arg in args), kwargs)
        if self.shape is None:
            return alias, _grad_without_prefix(self.prefix, _same)
        shape = self.shape()
        return alias, _grad_without_prefix(self.prefix, lambda grad: grad.view(shape))

    def set(self, value: torch.Tensor) -> None:
        args, kwargs = self.envoy.inputs
        if not args:
            current = self.envoy.input
        else:
            current = args[0]
        full = current.view(self.shape()) if self.shape is not None else current
        value = check_value(self.label, value, _own_shape(full, self.prefix), current)
        value = with_prefix(full, value, self.prefix)
        value = value.reshape(current.shape) if self.shape is not None else value
        if not args:
            self.envoy.input = value
            return
        # A module may take the tensor it reads in several positional slots (an attention called
        # as attention(h, h, ...) for queries and keys): it is one input, replaced in each.
        self.envoy.inputs = (tuple(value if arg is current else arg for arg in args), kwargs)


class ContributionPort(Port):
    """What a branch adds to the residual stream, from the module the spec names.

    ``raw -> contribution``: pick the tuple element, restore the block shape, subtract the
    residual the module added itself, multiply by the scale; clone when the model later mutates
    the raw tensor in place. Setting inverts each step.
    """

    def __init__(
        self,
        label: str,
        envoy: Any,
        element: Element = 0,
        scale: Optional[float] = None,
        residual_position: Optional[int] = None,
        residual_name: Optional[str] = None,
        clone: bool = False,
        shape: Optional[Callable[[], torch.Size]] = None,
        where: Optional[str] = None,
        prefix: int = 0,
        bias_element: Optional[int] = None,
    ) -> None:
        super().__init__(label)
        self.envoy = envoy
        self.where = where
        self.prefix = prefix  # positions the model placed in front of the input (left out)
        self.element = element
        self.bias_element = bias_element  # a bias the block adds with the output (None on most layers)
        self.scale = scale
        self.residual_position = residual_position
        self.residual_name = residual_name
        self.clone = clone
        self.shape = shape

    # The residual is an input of the module, so it must be read before the module's output. A
    # getter reads it and leaves it in the per-invoke memo, tagged with the output it belongs to,
    # so that a setter following it in the same forward (``x[i] = x[i] * 2``) needs no re-read.
    def _read_residual(self) -> torch.Tensor:
        args, kwargs = self.envoy.inputs
        if self.residual_name in kwargs:
            return kwargs[self.residual_name]
        return args[self.residual_position]

    def prefetch(self) -> None:
        """Read the residual now (at the module's input), for a getter that comes after other reads
        inside the module (e.g. attention probabilities) in the same forward."""
        now = step()
        if self.residual_name is not None and now is not None and (id(self), "prefetched", now) not in _worker_memo():
            _worker_memo()[(id(self), "prefetched", now)] = self._read_residual()

    def get(self) -> torch.Tensor:
        residual, element = None, None
        if self.residual_name is not None:
            residual = _worker_memo().pop((id(self), "prefetched", step()), None)
            kept = _worker_memo().get(id(self))
            if residual is None and kept is not None and kept[2] is not None and kept[2] == step():
                # Read again in the same forward (attentions_output, then mixers_output: one port):
                # the residual kept by the first read belongs to this output; the module's inputs
                # are behind us now.
                element = pick(self.envoy.output, self.element, self.where)
                if kept[1] is element:
                    residual = kept[0]
            if residual is None:
                residual = self._read_residual()
        if element is None:
            element = pick(self.envoy.output, self.element, self.where)
        value = element.view(self.shape()) if self.shape is not None else element
        if residual is not None:
            _worker_memo()[id(self)] = (residual, element, step())
            value = value - residual
        bias = self._bias()
        if bias is not None:
            value = value + bias
        if self.scale is not None:
            value = value * self.scale
        if self.clone and value is element:
            value = value.clone()
        return drop_prefix(value, self.prefix)

    def _bias(self) -> Optional[torch.Tensor]:
        """The bias the block adds with this output (the module's ``bias_element``), if any."""
        if self.bias_element is None:
            return None
        raw = self.envoy.output
        if not isinstance(raw, (tuple, list)) or self.bias_element >= len(raw):
            found = f"a tuple of {len(raw)}" if isinstance(raw, (tuple, list)) else type(raw).__name__
            raise ModelStructureError(
                f"{self.where or self.label}: bias_element = {self.bias_element}, but the module returned {found}"
            )
        bias = raw[self.bias_element]
        return bias if isinstance(bias, torch.Tensor) else None  # None: this layer adds no bias

    def graph_value(self) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
        # contribution = (raw - residual) * scale, so d/d contribution = d/d raw / scale.
        raw = pick(self.envoy.output, self.element)
        shape = self.shape() if self.shape is not None else raw.shape
        scale = self.scale

        def to_standard(grad: torch.Tensor) -> torch.Tensor:
            grad = grad.view(shape)
            return grad / scale if scale is not None else grad

        return raw, _grad_without_prefix(self.prefix, to_standard)

    def set(self, value: torch.Tensor) -> None:
        residual, memo = None, None
        if self.residual_name is not None:
            memo = _worker_memo().pop(id(self), None)
            residual = self._read_residual() if memo is None else memo[0]
        raw = self.envoy.output
        current = pick(raw, self.element)
        if memo is not None and memo[1] is not current:
            raise OutOfOrderReadError(
                f"{self.label} was read in an earlier forward than the one it is being set in; "
                "read it again before setting it, or set it without reading it first"
            )
        full = current.view(self.shape()) if self.shape is not None else current
        value = check_value(self.label, value, _own_shape(full, self.prefix), current)
        new = value
        if self.scale is not None:
            new = new / self.scale
        bias = self._bias()
        if bias is not None:
            new = new - bias  # broadcasts over (batch, seq)
        if residual is not None:
            new = new + drop_prefix(residual.view(full.shape), self.prefix)
        new = with_prefix(full, new, self.prefix)
        if self.shape is not None:
            new = new.reshape(current.shape)
        if self.clone and new is value:
            new = value.clone()
        self.envoy.output = replace(raw, self.element, new)


def cache_of(output: Any) -> Any:
    """The cache a model forward returned (``cache`` from transformers 5.24, else ``past_key_values``)."""
    return getattr(output, "cache", None) or getattr(output, "past_key_values", None)


def recurrent_state(cache: Any, layer: int) -> Optional[torch.Tensor]:
    """Layer ``layer``'s recurrent state in ``cache`` (a state-space, linear-attention or recurrent
    mixer's state after the last position), or ``None`` where the cache keeps none for it."""
    layers = getattr(cache, "layers", None)
    if layers is None or layer >= len(layers):
        return None
    states = getattr(layers[layer], "recurrent_states", None)
    if isinstance(states, torch.Tensor):  # releases that keep one state per layer, not one per state index
        return states
    if not states:
        return None
    state = states.get(0) if isinstance(states, dict) else states[0]
    return state if isinstance(state, torch.Tensor) else None


class MixerStatePort(Port):
    """A token mixer's recurrent state after the last position (the SSM state of a Mamba layer, the
    fast-weight state of linear attention), read from the cache the forward returns. Read-only: the
    state is a record of the forward, not a value the forward reads back."""

    def __init__(self, label: str, root: Any, layer: int) -> None:
        super().__init__(label)
        self.root = root
        self.layer = layer

    def get(self) -> torch.Tensor:
        from ..errors import CapabilityUnavailableError

        cache = cache_of(self.root.output)
        if cache is None:
            raise CapabilityUnavailableError(
                f"{self.label}: the forward returned no cache, so no mixer state was kept (do not pass use_cache=False)"
            )
        state = recurrent_state(cache, self.layer)
        if state is None:
            raise CapabilityUnavailableError(
                f"{self.label}: this model's cache ({type(cache).__name__}) keeps no recurrent state for layer {self.layer}"
            )
        return state.clone()

    def set(self, value: torch.Tensor) -> None:
        from ..errors import CapabilityUnavailableError

        raise CapabilityUnavailableError(
            f"{self.label} is read-only: it records the state the mixer left after the last position; edit "
            "mixers_input or mixers_output to change what the model computes"
        )
