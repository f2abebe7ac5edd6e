"""Typed records of what each standard name resolves to on one architecture.

The compiler computes them from a spec and writes them into the generated adapters, where a person
reads them; the runtime can read them too. This module imports nothing from the runtime, so the
compiler and the runtime may both depend on it.

Module paths are dotted paths from the HuggingFace model root; ``{i}`` stands for the layer index.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional, Union

#: How a value is taken from its module.
PortKind = Literal["output", "input", "contribution", "source"]


@dataclass(frozen=True)
class Read:
    """One standard value: which module it is read at and how.

    Attributes:
        module: path of the module, ``{i}`` being the layer index.
        port: ``"output"`` (the module's output), ``"input"`` (its first positional input),
            ``"contribution"`` (its output as the amount added to the residual stream, after the
            corrections below), or ``"source"`` (a value inside the module's forward, see ``ops``).
        element: tuple element of the output that holds the value (None: the output is a tensor; a
            tuple is a path into nested tuples, ``(0, 0)``: element 0 of the tuple at element 0).
        minus_residual: forward argument of the module holding a residual the module adds itself;
            it is subtracted from the output.
        scale: factor the contribution is multiplied by: a config key, a number, or
            ``"block.<attribute>"`` for a number each block stores.
        bias_element: tuple element holding a bias the block adds with the output.
        clone: the value is cloned (the model changes the tensor in place afterwards).
        flattened: the module sees tokens flattened to (batch*seq, hidden); the block shape is restored.
        ops: for a source, the operations inside the forward drilled into, each ``name#occurrence``
            (occurrence -1: the last so named).
        io: for a source, read the operation's ``"output"`` or its positional ``"input"``.
        index: for a source, element of the inputs or of a tuple output.
        layout: for a source, the steps that bring the value to the standard layout, applied in
            order: ``split_heads`` (the last axis split into heads), ``transpose_last`` (the last two
            axes swapped), ``transpose`` (axes 1 and 2 swapped); a value set is brought back by
            undoing them, last first.
    """

    module: str
    port: PortKind
    element: Union[int, tuple[int, ...], None] = None
    minus_residual: Optional[str] = None
    scale: Union[str, float, None] = None
    bias_element: Optional[int] = None
    clone: bool = False
    flattened: bool = False
    ops: tuple[str, ...] = ()
    io: Literal["output", "input"] = "output"
    index: Optional[int] = None
    layout: tuple[str, ...] = ()

    def at(self, layer: int) -> str:
        """The module path for one layer."""
        return self.module.replace("{i}", str(layer))

    def steps(self) -> tuple[tuple[str, int], ...]:
        """A source's operations as ``(name, occurrence)`` pairs, in the order they are drilled into."""
        return tuple((name, int(occurrence)) for name, _, occurrence in (op.rpartition("#") for op in self.ops))


@dataclass(frozen=True)
class Module:
    """A standard module name: the module at ``path`` (``{i}``: the layer index)."""

    path: str

    def at(self, layer: int) -> str:
        return self.path.replace("{i}", str(layer))


@dataclass(frozen=True)
class Refused:
    """A standard name this architecture does not serve, with the reason users see."""

    reason: str


@dataclass(frozen=True)
class Unembed:
    """What ``project_on_vocab`` and the logits apply after the last block.

    Attributes:
        final: modules applied in order before ``lm_head`` (the final norm first).
        lm_head: the unembedding module.
        transforms: transforms applied to ``lm_head``'s output in order, each ``(op, config key)``
            with op ``multiply``, ``divide`` or ``softcap``.
        optional: final modules some configs do not build (skipped there).
    """

    final: tuple[str, ...]
    lm_head: str
    transforms: tuple[tuple[str, str], ...] = ()
    optional: tuple[str, ...] = ()


@dataclass(frozen=True)
class Scores:
    """How softmax attention forms its scores before the softmax.

    Attributes:
        kind: ``"scaled_dot_product"`` (softmax(q k^T * scale [softcapped] + mask)) or ``"other"``
            (extra terms such as ALiBi).
        scale: a config key whose value s gives s**-0.5, a number, or None (the module's
            ``scaling``, else head_dim**-0.5).
        softcap: config key of a tanh softcap on the scores.
        sinks: attribute or module giving one learned sink logit per head.
    """

    kind: str = "scaled_dot_product"
    scale: Union[str, float, None] = None
    softcap: Optional[str] = None
    sinks: Optional[str] = None


Record = Union[Read, Module, Refused, Unembed, Scores]
