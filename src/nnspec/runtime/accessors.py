"""Per-layer accessors: ``model.layers_output[i]``, ``model.attentions[i]`` and the rest.

An accessor validates the layer index (negative indices count from the end) and delegates to
the port (values) or envoy (modules) for that layer, built once and reused.
"""

from __future__ import annotations

import contextlib
import operator
from typing import TYPE_CHECKING, Any, Callable, Generic, Iterator, Optional, SupportsIndex, TypeVar

import torch
from nnsight.intervention.envoy import Envoy

from ..errors import CapabilityUnavailableError, InputTypeError, LayerIndexError
from .ports import Port
from .readorder import guarded

if TYPE_CHECKING:
    from typing_extensions import Self

    class SavableTensor(torch.Tensor):
        """The static type of a standard value read inside a trace: a ``torch.Tensor`` that also
        has NNsight's ``.save()`` (which returns the value itself, kept past the trace). Indexing
        keeps ``.save()``; other tensor operations give plain tensors (use ``nnsight.save(x)``)."""

        def save(self) -> Self: ...

        def __getitem__(self, key: Any) -> Self: ...

else:
    # At run time a value read in a trace is a plain tensor (NNsight mounts ``.save()`` on it).
    SavableTensor = torch.Tensor

#: What indexing an accessor returns: a tensor for value accessors, an envoy for module accessors.
T = TypeVar("T")


def layer_index(label: str, index: Any, num_layers: int) -> int:
    """``index`` as a layer number in ``[0, num_layers)``; raises :class:`LayerIndexError`."""
    try:
        if isinstance(index, bool):
            raise TypeError
        i = operator.index(index)
    except TypeError:
        raise LayerIndexError(
            f"{label}[{index!r}]: a layer index must be an integer, not {type(index).__name__}"
        ) from None
    if not -num_layers <= i < num_layers:
        raise LayerIndexError(
            f"{label}[{i}]: layer index out of range for a model with {num_layers} layers "
            f"(valid: 0..{num_layers - 1}, or -{num_layers}..-1 from the end)"
        )
    return i % num_layers


@contextlib.contextmanager
def at_occurrence(occurrence: int) -> Iterator[None]:
    """Bind the NNsight reads and writes made inside to the ``occurrence``-th call of each module
    (0: the first, NNsight's default): a block the model runs several times per forward."""
    if not occurrence:
        yield
        return
    from nnsight.intervention.interleaver import Mediator

    mediator = Mediator.current("a value of a block that runs several times")
    previous = mediator.iteration
    mediator.iteration = occurrence
    try:
        yield
    finally:
        mediator.iteration = previous


class _Indexed:
    """Shared indexing for the per-layer accessors.

    ``unavailable`` is the reason the accessor serves no layer of this model; ``refuse(i)`` gives
    the reason it does not serve layer ``i`` (a hybrid whose layer ``i`` has another mixer, or no
    MLP), or ``None`` where it does.
    """

    def __init__(
        self,
        label: str,
        num_layers: int,
        unavailable: Optional[str] = None,
        refuse: Optional[Callable[[int], Optional[str]]] = None,
    ) -> None:
        self.label = label
        self.num_layers = num_layers
        self.unavailable = unavailable  # the spec's reason when this accessor cannot serve
        self.refuse = refuse

    def _index(self, index: Any) -> int:
        if self.unavailable is not None:
            raise CapabilityUnavailableError(f"{self.label} is not available for this model: {self.unavailable}")
        i = layer_index(self.label, index, self.num_layers)
        reason = self.refuse(i) if self.refuse is not None else None
        if reason is not None:
            raise CapabilityUnavailableError(f"{self.label}[{i}] is not available: {reason}")
        return i

    def serves(self, index: Any) -> bool:
        """Whether this accessor serves layer ``index`` on this model (no exception either way
        for a valid index)."""
        if self.unavailable is not None:
            return False
        i = layer_index(self.label, index, self.num_layers)
        return self.refuse is None or self.refuse(i) is None

    def __len__(self) -> int:
        return self.num_layers

    def __repr__(self) -> str:
        return f"<{self.label}: {self.num_layers} layers>"


class ModuleAccessor(_Indexed, Generic[T]):
    """``model.layers[i]``, ``model.attentions[i]``, ``model.mlps[i]``: the NNsight envoy of a module
    (``ModuleAccessor[Envoy]``: indexing gives an :class:`~nnsight.intervention.envoy.Envoy`)."""

    def __init__(
        self,
        label: str,
        num_layers: int,
        envoy: Callable[[int], T],
        unavailable: Optional[str] = None,
        refuse: Optional[Callable[[int], Optional[str]]] = None,
    ) -> None:
        super().__init__(label, num_layers, unavailable, refuse)
        self._envoy = envoy

    def __getitem__(self, index: SupportsIndex) -> T:
        return self._envoy(self._index(index))

    def __iter__(self) -> Iterator[T]:
        return (self[i] for i in range(self.num_layers))


class ValueAccessor(_Indexed, Generic[T]):
    """``model.layers_output[i]`` and the like: get and set a standard tensor inside a trace
    (``ValueAccessor[SavableTensor]``: indexing gives a tensor with ``.save()``; assigning takes a
    ``torch.Tensor`` of the same shape)."""

    def __init__(
        self,
        label: str,
        num_layers: int,
        port: Callable[[int], Port],
        unavailable: Optional[str] = None,
        refuse: Optional[Callable[[int], Optional[str]]] = None,
        ports: Optional[dict[int, Port]] = None,
    ) -> None:
        super().__init__(label, num_layers, unavailable, refuse)
        self._make = port
        # Per layer, which call of the block the value belongs to (a looped block's last pass).
        self.occurrences: Optional[list[int]] = None
        # Two accessors may share their ports (attentions_output and mixers_output are one value).
        self._ports: dict[int, Port] = {} if ports is None else ports
        # Whether the module this value comes from returns a tuple, where the spec says (the
        # blocks: ``layer.returns``); None where it does not.
        self.returns_tuple: Optional[bool] = None

    def port(self, index: Any) -> Port:
        i = self._index(index)
        if i not in self._ports:
            self._ports[i] = self._make(i)
        return self._ports[i]

    def occurrence(self, index: Any) -> int:
        """Which call of layer ``index``'s block the value belongs to (0 but in a looped section)."""
        return 0 if self.occurrences is None else self.occurrences[layer_index(self.label, index, self.num_layers)]

    def __getitem__(self, index: SupportsIndex) -> T:
        port = self.port(index)
        with at_occurrence(self.occurrence(index)):
            return guarded(port.label, port.get)

    def __setitem__(self, index: SupportsIndex, value: torch.Tensor) -> None:
        port = self.port(index)
        with at_occurrence(self.occurrence(index)):
            guarded(port.label, lambda: port.set(value))


class AttentionProbabilitiesAccessor(ValueAccessor[SavableTensor]):
    """``model.attention_probabilities[i]``, with nnterp's switches: :attr:`enabled`,
    :meth:`disable`, :meth:`check_source` and :meth:`print_source`.

    ``check`` runs the check (layer, use_trace, allow_dispatch) and ``show`` prints the source of
    the operation the spec reads (layer, allow_dispatch); both come from the model.
    """

    def __init__(
        self,
        label: str,
        num_layers: int,
        port: Callable[[int], Port],
        unavailable: Optional[str],
        served: Callable[[], Optional[str]],
        check: Callable[[int, bool, bool], None],
        show: Callable[[int, bool], None],
    ) -> None:
        super().__init__(label, num_layers, port, unavailable)
        self._served = served  # why the model as loaded serves none (not eager), or None
        self._check = check
        self._show = show
        self._disabled = False

    @property
    def enabled(self) -> bool:
        """Whether the probabilities can be read and written: the spec names them, the model runs
        eager attention, and :meth:`disable` was not called."""
        return not self._disabled and self.unavailable is None and self._served() is None

    def disable(self) -> None:
        """Refuse every later read and write (:class:`CapabilityUnavailableError`)."""
        self._disabled = True

    def _index(self, index: Any) -> int:
        if self._disabled:
            raise CapabilityUnavailableError(
                f"{self.label} was disabled on this model (attention_probabilities.disable()); load the model again "
                "to use it"
            )
        return super()._index(index)

    def check_source(self, layer: int = 0, allow_dispatch: bool = True, use_trace: bool = True) -> None:
        """Check on a short prompt that layer ``layer``'s probabilities have shape ``(batch, heads,
        seq, seq)``, that each row sums to 1 (at most 1 with attention sinks) and that editing them
        changes the logits. Runs the model (loading the weights when ``allow_dispatch``); raises
        :class:`~nnspec.errors.ConformanceError` when a check fails."""
        for name, flag in (("allow_dispatch", allow_dispatch), ("use_trace", use_trace)):
            if not isinstance(flag, bool):
                raise InputTypeError(f"check_source({name}=...): expected True or False, got {flag!r}")
        i = self._index(layer)
        reason = self._served()
        if reason is not None:
            raise CapabilityUnavailableError(f"{self.label} is not available for this model as loaded: {reason}")
        self._check(i, use_trace, allow_dispatch)

    def print_source(self, layer: int = 0, allow_dispatch: bool = True) -> None:
        """Print where layer ``layer``'s probabilities are read: the operation the spec names in
        the attention code (marked in its context), then the whole function holding it."""
        if not isinstance(allow_dispatch, bool):
            raise InputTypeError(f"print_source(allow_dispatch=...): expected True or False, got {allow_dispatch!r}")
        self._show(self._index(layer), allow_dispatch)


#: Standard branch names a block answers to, by the branch they name.
_BRANCH_NAMES = {"self_attn": "attention", "mixer": "attention", "mlp": "mlp"}


class BlockEnvoy(Envoy):
    """The NNsight envoy of a block: a standard branch name (``self_attn``, ``mixer``, ``mlp``)
    the block does not have raises an ``AttributeError`` saying why (OPT's blocks have no MLP
    module), instead of NNsight's bare one."""

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name not in _BRANCH_NAMES:
                raise
            index = self.path.rsplit(".", 1)[-1]
            explain = getattr(self.root, "_missing_branch", None)
            reason = explain(name, int(index)) if explain is not None and index.isdigit() else None
            raise AttributeError(f"block {self.path} has no {name!r} module" + (f": {reason}" if reason else "")) from None
