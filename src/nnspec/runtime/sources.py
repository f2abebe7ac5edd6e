"""Values inside the attention computation, reached through NNsight's operation-level ``.source``.

A spec names operations without NNsight's counter suffix (``attention_interface``); the port
resolves the label at run time from the labels NNsight actually assigned (``attention_interface_1``
in NNsight 0.8, ``_0`` in 0.7), so a relabelling release does not break a spec, and a missing
operation fails with the labels that do exist.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Optional

import torch

from ..compiler.records import Read
from ..errors import CapabilityUnavailableError, did_you_mean
from .ports import Port, check_value, replace
from .readorder import step as current_step
from .readorder import worker_memo as _worker_memo


def label_for(names: Any, step: tuple[str, int], where: str) -> str:
    """The NNsight label of operation ``step`` (``(name, occurrence)``) among ``names``
    (``{name}_{n}``, ordered by n; occurrence -1: the last)."""
    name, occurrence = step
    pattern = re.compile(rf"^{re.escape(name)}_(\d+)$")
    found = sorted((int(m.group(1)), n) for n in names for m in [pattern.match(n)] if m)
    if not found:
        stems = {re.sub(r"_\d+$", "", n) for n in names}
        raise CapabilityUnavailableError(
            f"{where}: no operation named {name!r}{did_you_mean(name, stems)}; "
            f"operations there: {', '.join(sorted(stems))}"
        )
    try:
        return found[occurrence][1]
    except IndexError:
        raise CapabilityUnavailableError(
            f"{where}: operation {name!r} occurs {len(found)} times, occurrence {occurrence} does not exist"
        ) from None


class SourcePort(Port):
    """A value inside one layer's attention computation, as a ``source`` :class:`~nnspec.compiler.records.Read`
    record states it: the module (``envoy``), the operations drilled into, input or output, the
    element, and the layout steps to the standard one. ``in_host``: the record's module is the
    attention module itself (not a submodule of it), so the value has a position among its operations."""

    def __init__(
        self, label: str, envoy: Callable[[], Any], read: Read, check: Optional[Callable[[], None]] = None,
        heads: int = 1, before: Optional[Callable[[], None]] = None, in_host: bool = True,
    ) -> None:
        super().__init__(label)
        self._envoy = envoy
        self.read = read
        self._steps = read.steps()
        self._in_host = in_host
        self.heads = heads  # for split_heads sources
        self._check = check  # raises when the value cannot be served (e.g. not eager attention)
        self._before = before  # fetches values documented later that the model computes earlier

    def position(self) -> Optional[int]:
        """Where the model computes this value among the attention module's operations (index of
        the first operation in the module's source), or ``None`` for a value read from a submodule."""
        if not self._in_host or not self._steps:
            return None
        source = self._envoy().source
        names = list(source.names)
        return names.index(label_for(names, self._steps[0], self.label))

    def available(self) -> bool:
        """Whether this value can be served on this model as loaded."""
        try:
            if self._check is not None:
                self._check()
        except CapabilityUnavailableError:
            return False
        return True

    def prefetch(self) -> None:
        """Read the value now and keep it for its own read later in this forward (no-op when it was
        read or kept already)."""
        memo, now = _worker_memo(), current_step()
        if now is not None and (id(self), "read", now) not in memo and (id(self), "prefetched", now) not in memo:
            memo[(id(self), "prefetched", now)] = self._standard(self._read(self._node()))

    def _node(self) -> Any:
        node = self._envoy()
        where = f"{self.label} ({node.path})"
        for step in self._steps:
            source = node.source
            node = getattr(source, label_for(source.names, step, where))
        return node

    def _read(self, node: Any) -> Any:
        if self.read.io == "input":
            args, _ = node.inputs
            return args[self.read.index or 0]
        output = node.output
        return output[self.read.index] if self.read.index is not None else output

    def _standard(self, raw: torch.Tensor) -> torch.Tensor:
        """The raw value in the standard layout: the record's layout steps, in order."""
        for step in self.read.layout:
            if step == "split_heads":
                raw = raw.view(*raw.shape[:-1], self.heads, raw.shape[-1] // self.heads)
            else:
                raw = raw.transpose(-1, -2) if step == "transpose_last" else raw.transpose(1, 2)
        return raw

    def _raw(self, value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``value`` in the model's layout: the layout steps undone, last first."""
        for step in reversed(self.read.layout):
            if step == "split_heads":
                value = value.reshape(like.shape)
            else:
                value = value.transpose(-1, -2) if step == "transpose_last" else value.transpose(1, 2)
        return value

    def get(self) -> torch.Tensor:
        if self._check is not None:
            self._check()
        memo, now = _worker_memo(), current_step()
        kept = memo.pop((id(self), "prefetched", now), None)
        if kept is None:
            if self._before is not None and now is not None:
                self._before()
            kept = self._standard(self._read(self._node()))
        memo[(id(self), "read", now)] = True
        return kept

    def set(self, value: torch.Tensor) -> None:
        if self._check is not None:
            self._check()
        node = self._node()
        current = self._read(node)
        value = check_value(self.label, value, self._standard(current).shape, current)
        raw = self._raw(value, current)
        if self.read.io == "input":
            args, kwargs = node.inputs
            i = self.read.index or 0
            node.inputs = (args[:i] + (raw,) + args[i + 1 :], kwargs)
        elif self.read.index is not None:
            node.output = replace(node.output, self.read.index, raw)
        else:
            node.output = raw
