"""The standard names: one table that everything reads.

Each entry says what a standard name is (its kind), where it sits in a layer's forward order, what
shape it has, whether it can be written, cached, differentiated and collected, and its short title.
The read order, the activation cache, gradients, activation collection, the class declarations on
:class:`~nnspec.StandardizedTransformer` (checked against this table by the tests) and the docs all
come from here: adding a standard name is adding a row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

Kind = Literal[
    "residual",  # the residual stream entering or leaving a block
    "branch_input",  # what a branch (token mixer, attention, MLP) reads, after its input norm
    "branch_output",  # a branch's contribution to the residual stream
    "module_output",  # a branch module's own output, before what the block applies to it
    "attention_internal",  # a value inside the attention computation (an operation's source)
    "state",  # a recurrent mixer's state after the last position
    "derived",  # computed from other standard values (never read from the model)
    "model",  # one value per forward, outside the blocks
]


@dataclass(frozen=True)
class StandardName:
    """One standard name.

    Attributes:
        name: the accessor's name on the model (``model.<name>[i]`` for per-layer names).
        kind: what the value is (see :data:`Kind`).
        per_layer: indexed by layer (``model.layers_output[i]``) or one per forward.
        order: position in a layer's read order inside a trace (``None``: outside that order).
        shape: the shape a read gives, in words.
        title: a short title for tables and plots.
        settable: assignment inside a trace replaces the value.
        cached: ``run_with_cache`` can collect it; ``cached_by_default``: it does when no names are given.
        gradients: ``gradients`` / attribution patching can differentiate with respect to it.
        collected: ``collect_activations`` can collect it.
    """

    name: str
    kind: Kind
    shape: str
    title: str
    per_layer: bool = True
    order: Optional[int] = None
    settable: bool = True
    cached: bool = False
    cached_by_default: bool = False
    gradients: bool = False
    collected: bool = False


_H = "(batch, seq, hidden)"

#: Every standard value, per-layer ones in their read order first.
NAMES: tuple[StandardName, ...] = (
    StandardName("layers_input", "residual", _H, "layer in", order=0, cached=True, cached_by_default=True, gradients=True, collected=True),
    StandardName("mixers_input", "branch_input", _H, "mixer in", order=1, cached=True, cached_by_default=True, gradients=True, collected=True),
    StandardName("attentions_input", "branch_input", _H, "attn in", order=2, cached=True, cached_by_default=True, gradients=True, collected=True),
    StandardName("queries", "attention_internal", "(batch, heads, seq, head_dim)", "queries", order=3, cached=True),
    StandardName("keys", "attention_internal", "(batch, kv_heads, seq, head_dim)", "keys", order=4, cached=True),
    StandardName("values", "attention_internal", "(batch, kv_heads, seq, head_dim)", "values", order=5, cached=True),
    StandardName("attention_probabilities", "attention_internal", "(batch, heads, q, k)", "attn probs", order=6, cached=True),
    StandardName("attention_heads_output", "attention_internal", "(batch, seq, heads, head_dim)", "head out", order=7, cached=True),
    StandardName("attentions_output", "branch_output", _H, "attn out", order=8, cached=True, cached_by_default=True, gradients=True, collected=True),
    StandardName("mixers_output", "branch_output", _H, "mixer out", order=9, cached=True, cached_by_default=True, gradients=True, collected=True),
    StandardName("mlps_input", "branch_input", _H, "mlp in", order=10, cached=True, cached_by_default=True, gradients=True, collected=True),
    StandardName("mlps_output", "branch_output", _H, "mlp out", order=11, cached=True, cached_by_default=True, gradients=True, collected=True),
    StandardName("layers_output", "residual", _H, "layer out", order=12, cached=True, cached_by_default=True, gradients=True, collected=True),
    StandardName("attentions_module_output", "module_output", _H, "attn module out"),
    StandardName("mlps_module_output", "module_output", _H, "mlp module out"),
    StandardName("mixer_states", "state", "the mixer's cache entry", "mixer state", settable=False),
    StandardName("resid_mid", "derived", _H, "resid mid", settable=False, cached=True),
    StandardName("token_embeddings", "model", _H, "embeddings", per_layer=False, cached=True),
    StandardName("logits", "model", "(batch, seq, vocab)", "logits", per_layer=False, settable=False, cached=True),
    StandardName("next_token_probs", "model", "(batch, vocab)", "next-token probs", per_layer=False, settable=False),
)

BY_NAME: dict[str, StandardName] = {n.name: n for n in NAMES}


def _names(**where: object) -> tuple[str, ...]:
    return tuple(n.name for n in NAMES if all(getattr(n, key) == value for key, value in where.items()))


#: One layer's values in the order to read them inside a trace (the same on every architecture).
LAYER_ORDER: tuple[str, ...] = tuple(n.name for n in sorted((n for n in NAMES if n.order is not None), key=lambda n: n.order or 0))
#: Values read inside the attention computation.
ATTENTION_INTERNALS: tuple[str, ...] = _names(kind="attention_internal")
#: Per-layer values ``run_with_cache`` can collect, and those it collects when no names are given.
CACHED_LAYER_VALUES: tuple[str, ...] = tuple(n for n in LAYER_ORDER if BY_NAME[n].cached)
CACHED_BY_DEFAULT: tuple[str, ...] = _names(cached_by_default=True)
#: Model-level values ``run_with_cache`` can collect, and the values it derives from others.
CACHED_MODEL_VALUES: tuple[str, ...] = _names(per_layer=False, cached=True)
DERIVED_VALUES: tuple[str, ...] = _names(kind="derived")
#: Values gradients and attribution patching are taken with respect to.
GRADIENT_VALUES: tuple[str, ...] = _names(gradients=True)
#: Values ``collect_activations`` collects.
COLLECTED_VALUES: tuple[str, ...] = _names(collected=True)
