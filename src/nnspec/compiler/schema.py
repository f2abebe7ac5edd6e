"""The spec language: pydantic models for one architecture's TOML spec.

A spec states facts about a HuggingFace architecture; the runtime turns them into behaviour.
Paths in ``[modules]`` are dotted paths from the HF model root; paths in ``[layer]``,
``[attention]`` and ``[mlp]`` are relative to one block (``"self_attn"``). ``nnspec schema``
exports the JSON Schema of :class:`Spec` so that editors can validate spec files.
"""

from __future__ import annotations

import copy
import re
from typing import Any, Literal, Optional, Union, cast

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator, model_validator

_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$")


class _Strict(BaseModel):
    """Unknown keys are errors; an empty string stands for "none" (TOML has no null)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _empty_is_none(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {
                key: None
                if value == "" and key in cls.model_fields and _allows_none(cls.model_fields[key].annotation)
                else value
                for key, value in data.items()
            }
        return data


def _allows_none(annotation: Any) -> bool:
    import typing

    return annotation is type(None) or type(None) in typing.get_args(annotation)


def _check_path(value: Optional[str]) -> Optional[str]:
    if value is not None and not _PATH.match(value):
        raise ValueError(f"{value!r} is not a dotted module path like 'model.layers'")
    return value


#: Standard derivations a spec may declare for a config key that published configs may lack.
FALLBACKS = {"head_dim": "hidden_size / num_heads", "num_kv_heads": "num_heads"}


class ConfigKey(_Strict):
    """A config key that a published config may lack, with the standard value to use then."""

    key: str = Field(description="Config key (dotted for nested configs).")
    fallback: Literal["hidden_size / num_heads", "num_heads"] = Field(
        description="What the value is when the config lacks the key or holds null: "
        "'hidden_size / num_heads' (head_dim) or 'num_heads' (num_kv_heads)."
    )


class ConfigKeys(_Strict):
    """Standard attribute -> HF config key. A dotted key reads a nested config.

    ``head_dim`` and ``num_kv_heads`` may name a key with a fallback,
    ``{ key = "head_dim", fallback = "hidden_size / num_heads" }``, for configs that may lack it
    (published Qwen2 configs have no ``head_dim``); a bare key must exist in every config.
    """

    num_layers: str = Field("num_hidden_layers", description="Config key of the block count.")
    num_heads: Optional[str] = Field(
        "num_attention_heads",
        description="Config key of the query head count; null for models without attention (num_heads, "
        "num_kv_heads and head_dim are then None).",
    )
    num_kv_heads: Union[str, ConfigKey, None] = Field(
        "num_key_value_heads",
        description="Config key of the key/value head count; null (or a null value) means num_heads.",
    )
    hidden_size: str = Field("hidden_size", description="Config key of the residual width.")
    vocab_size: str = Field("vocab_size", description="Config key of the vocabulary size.")
    head_dim: Union[str, ConfigKey, None] = Field(
        None, description="Config key of the per-head width; null means hidden_size // num_heads."
    )

    @model_validator(mode="after")
    def _fallbacks_fit(self) -> "ConfigKeys":
        for attribute, derivation in FALLBACKS.items():
            value = getattr(self, attribute)
            if isinstance(value, ConfigKey) and value.fallback != derivation:
                raise ValueError(
                    f"{attribute}.fallback must be {derivation!r} (the standard {attribute}), not {value.fallback!r}"
                )
        return self

    def key(self, attribute: str) -> Optional[str]:
        """The config key of a standard attribute (``None``: the spec reads none)."""
        value = getattr(self, attribute)
        return value.key if isinstance(value, ConfigKey) else value

    def has_fallback(self, attribute: str) -> bool:
        """Whether a config may lack the attribute's key (the standard derivation then applies)."""
        return isinstance(getattr(self, attribute), ConfigKey)


class ModulePaths(_Strict):
    """Where the model-level modules live, from the HF model root."""

    embed_tokens: str = Field(description="Token embedding module, e.g. 'model.embed_tokens'.")
    layers: str = Field(description="The ModuleList of blocks, e.g. 'model.layers'.")
    ln_final: Optional[str] = Field(
        description="Final norm applied before the unembedding; \"\" where the model has none (post-norm blocks "
        "that end in their own norm, or a norm applied as a function without a module).",
    )
    lm_head: str = Field("lm_head", description="Unembedding module.")
    before_lm_head: list[str] = Field(
        default_factory=list,
        description="Modules applied between ln_final and lm_head, in order (e.g. an output projection).",
    )

    optional: list[str] = Field(
        default_factory=list,
        description="ln_final or before_lm_head paths that some configs do not build (the attribute is None there), "
        "e.g. OPT-350m's missing final norm; where absent, the runtime skips them.",
    )
    language_model: Optional[str] = Field(
        None,
        description="For a vision-language wrapper that extends its text spec: where the text model sits in the "
        "wrapper (e.g. 'model.language_model'). The text spec's model-level paths are moved there: their first "
        "component (the text causal-LM's base, e.g. 'model') is replaced by this path; lm_head stays as stated.",
    )

    @model_validator(mode="before")
    @classmethod
    def _rebase(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not data.get("language_model"):
            return data
        root = data["language_model"]
        _check_path(root)

        def move(path: Any) -> Any:
            if not isinstance(path, str) or not path or path == root or path.startswith(root + "."):
                return path
            return f"{root}.{path.split('.', 1)[1]}" if "." in path else f"{root}.{path}"

        moved = dict(data)
        for key in ("embed_tokens", "layers", "ln_final"):
            if key in moved:
                moved[key] = move(moved[key])
        for key in ("before_lm_head", "optional"):
            if isinstance(moved.get(key), list):
                moved[key] = [move(p) for p in moved[key]]
        return moved

    @field_validator("embed_tokens", "layers", "ln_final", "lm_head")
    @classmethod
    def _paths(cls, value: Optional[str]) -> Optional[str]:
        return _check_path(value)

    @model_validator(mode="after")
    def _optional_are_final(self) -> "ModulePaths":
        final = self.final()
        for path in self.optional:
            if path not in final:
                raise ValueError(
                    f"optional: {path!r} is not ln_final or in before_lm_head; only final modules may be optional"
                    f" (final modules: {', '.join(repr(p) for p in final)})"
                )
        return self

    def final(self) -> list[str]:
        """The modules between the last block and ``lm_head``, in order (no final norm: none)."""
        return [p for p in (self.ln_final, *self.before_lm_head) if p is not None]

    @field_validator("before_lm_head", "optional")
    @classmethod
    def _paths_list(cls, value: list[str]) -> list[str]:
        for item in value:
            _check_path(item)
        return value


class Repeats(_Strict):
    """A section of consecutive blocks the model runs several times per forward (looped or
    recurrent-depth models): blocks ``start`` to ``end - 1`` (or ``start + count - 1``) run in order,
    then again, ``passes`` times in all, before the blocks after them run once.

    The standard per-layer values of a block in that section (``layers_input[i]``,
    ``layers_output[i]``, its branches and attention internals) are those of its **last pass**, the
    one the blocks after the section read; edits, ``steer`` and ``skip_layers`` apply to that pass,
    and the earlier passes run as the model runs them. Each number is a config key or a number."""

    start: Union[str, int] = Field(description="The first block of the section (config key or number).")
    end: Union[str, int, None] = Field(None, description="One past the last block of the section (or give `count`).")
    count: Union[str, int, None] = Field(None, description="How many blocks the section holds (or give `end`).")
    passes: Union[str, int] = Field(description="How many times the section runs per forward (config key or number).")

    @model_validator(mode="after")
    def _one_extent(self) -> "Repeats":
        if (self.end is None) == (self.count is None):
            raise ValueError("repeats needs exactly one of `end` (one past the last block) and `count` (how many blocks)")
        for name in ("start", "end", "count", "passes"):
            value = getattr(self, name)
            if isinstance(value, bool) or (isinstance(value, int) and value < (1 if name == "passes" else 0)):
                raise ValueError(f"repeats.{name} must be a config key or a non-negative number of blocks, not {value!r}")
        return self


class LayerIO(_Strict):
    """How one block hands the residual stream on."""

    returns: Literal["tensor", "tuple"] = Field(
        "tensor", description="What the block's forward returns (a tuple carries extras after the hidden state)."
    )
    hidden_element: int = Field(0, ge=0, description="Index of the hidden state when the block returns a tuple.")
    hidden_states: Literal["inputs", "outputs"] = Field(
        "inputs",
        description="How the model's own output_hidden_states numbers the stream: 'inputs' (the usual: entry i enters "
        "block i, the embeddings first) or 'outputs' (entry i leaves block i, no embeddings entry; Mamba). The "
        "standard names mean the same either way; this only tells the checks how to read the ground truth.",
    )
    prefix: Union[str, int, None] = Field(
        None,
        description="Positions the model places in front of the input inside its forward (learned prompt tokens), "
        "as a config key or a number: the embedding output and every block see (batch, prefix + seq, hidden), while "
        "the model's own hidden_states and logits cover the input's positions only. The standard residual-stream "
        "values (token_embeddings, layers_*, mixers_*, attentions_*, mlps_*) then cover the input's positions, "
        "(batch, seq, hidden); writes leave the prefix positions as the model computed them. A forward continuing "
        "from a KV cache, whose blocks see no more positions than the prefix, is served as it is.",
    )

    streams: Union[str, int, None] = Field(
        None,
        description="Where the residual stream is several streams of hidden_size side by side (hyper-connections): "
        "their number, as a config key or a number. Every residual-stream value (layers_input, layers_output, what "
        "the model's hidden_states reports) then has that many times hidden_size features, laid out as "
        "stream_layout says; steer vectors, skip_with and project_on_vocab take that shape, and ln_final names the "
        "module that folds the streams into one. Null: one stream of hidden_size.",
    )
    stream_layout: Literal["concatenated", "stacked"] = Field(
        "concatenated",
        description="How several streams (`streams`) are laid out: 'concatenated', (batch, seq, streams * hidden), or "
        "'stacked', (batch, seq, streams, hidden).",
    )
    repeats: Optional[Repeats] = Field(
        None,
        description="A section of blocks the model runs several times per forward (looped, recurrent-depth models); "
        "per-layer values there are those of the last pass. Null: every block runs once.",
    )

    skip_returns: Optional[list[str]] = Field(
        None,
        description="What a skipped block (skip_layers) returns, one entry per element of the tuple the block returns: "
        "'hidden' (the skip value) at hidden_element, the name of a forward argument the block passes on updated (a "
        "recurrent state: a skipped block passes on the one it received), or '' (None). Null: the hidden state, then "
        "None.",
    )

    @model_validator(mode="after")
    def _skip_returns(self) -> "LayerIO":
        if self.skip_returns is None:
            return self
        if self.returns != "tuple":
            raise ValueError("skip_returns describes a tuple: it needs returns = 'tuple'")
        hidden = [i for i, entry in enumerate(self.skip_returns) if entry == "hidden"]
        if hidden != [self.hidden_element]:
            raise ValueError(
                f"skip_returns must hold 'hidden' once, at hidden_element ({self.hidden_element}); got {self.skip_returns!r}"
            )
        for entry in self.skip_returns:
            if entry not in ("hidden", "") and not entry.isidentifier():
                raise ValueError(f"skip_returns: {entry!r} is not 'hidden', '' or a forward argument name")
        return self

    @field_validator("streams", mode="before")
    @classmethod
    def _streams(cls, value: Union[str, int, None]) -> Union[str, int, None]:
        if isinstance(value, bool) or (isinstance(value, int) and value < 2):
            raise ValueError(f"streams must be a config key or a number of streams (2 or more), not {value!r}")
        return value

    @field_validator("prefix", mode="before")
    @classmethod
    def _prefix(cls, value: Union[str, int, None]) -> Union[str, int, None]:
        if isinstance(value, bool) or (isinstance(value, int) and value < 1):
            raise ValueError(f"prefix must be a config key or a positive number of positions, not {value!r}")
        return value


class OpStep(_Strict):
    """One operation inside a forward, as NNsight's ``.source`` labels it (``{name}_{n}``)."""

    name: str = Field(description="Operation name without NNsight's counter suffix, e.g. 'attention_interface'.")
    occurrence: int = Field(
        -1, description="Which of the operations so named, in source order (-1: the last, e.g. the call after a binding)."
    )


class SourceRef(_Strict):
    """A value inside the attention computation: a module, then nested operations in its source.

    The runtime resolves each step against the labels NNsight assigns at run time (they change
    between NNsight releases) instead of hard-coding a label.
    """

    module: Optional[str] = Field(None, description="Path inside the attention module; null is the attention module itself.")
    ops: list[OpStep] = Field(
        default_factory=list, description="Operations to drill into, each inside the previous one's source; empty: the module."
    )
    io: Literal["input", "output"] = Field("output", description="Read the positional inputs or the output.")
    index: Optional[int] = Field(None, ge=0, description="Element of the positional inputs or of a tuple output.")
    transpose: bool = Field(False, description="Swap dims 1 and 2 to reach the standard layout.")
    transpose_last: bool = Field(
        False, description="Swap the last two dims: keys read as they enter q @ k^T, (batch, heads, head_dim, seq)."
    )
    split_heads: bool = Field(False, description="The value has heads merged in its last dim (batch, seq, heads*d): split them.")


class BlockAttribute(_Strict):
    """A number every block holds as an attribute, for factors the model derives from several
    config values when it builds the blocks (e.g. ``scale_depth / sqrt(num_hidden_layers)``)."""

    block_attribute: str = Field(
        description="Attribute of each block holding the number; every block must hold the same value."
    )

    @field_validator("block_attribute")
    @classmethod
    def _name(cls, value: str) -> str:
        if not value.isidentifier():
            raise ValueError(f"{value!r} is not an attribute name")
        return value


class Branch(_Strict):
    """One residual branch (attention or MLP) of a block.

    ``contribution`` names the module whose output is added to the residual stream; what the
    runtime hands out as ``*_output[i]`` is that output, corrected by the other fields so that
    ``layers_input[i] + attentions_output[i] + mlps_output[i] == layers_output[i]``.
    """

    module: Optional[str] = Field(description="The branch module inside the block; null if the block has none.")
    input: Optional[str] = Field(None, description="Module whose first input is the branch input; null means `module`.")
    contribution: Optional[str] = Field(None, description="Module whose output is added to the residual; null means `module`.")
    element: Union[StrictInt, list[StrictInt]] = Field(
        0,
        description="Element of the contribution module's output when it is a tuple; a list is a path into nested "
        "tuples ([0, 0]: element 0 of the tuple at element 0, for a module returning ((output, cache), bias)).",
    )
    scale: Union[str, float, BlockAttribute, None] = Field(
        None,
        description="Multiplier applied to the contribution before the add: a config key, a number, or "
        "{ block_attribute = NAME } for a factor each block stores (derived from several config values).",
    )
    includes_residual: Optional[str] = Field(
        None, description="Forward argument holding the residual that the module adds itself (subtracted out)."
    )
    clone: bool = Field(False, description="The model mutates this output in place later: clone before handing it out.")
    flattened: bool = Field(
        False, description="The branch sees tokens flattened to (batch*seq, hidden); restore the block's shape."
    )
    bias_element: Optional[int] = Field(
        None,
        ge=0,
        description="Element of the contribution module's tuple output holding a bias the block adds together with "
        "the output (GPT-NeoX-Japanese's last attention); where that element is a tensor, it is part of the contribution.",
    )
    mixes_tokens: bool = Field(
        False,
        description="MLP only: the branch's output passes a step that mixes positions (a short causal convolution) "
        "before the add, so the MLP branch, unlike a plain MLP, mixes tokens (the mixing check then expects it).",
    )

    @field_validator("module", "input", "contribution")
    @classmethod
    def _paths(cls, value: Optional[str]) -> Optional[str]:
        return _check_path(value)

    @field_validator("element")
    @classmethod
    def _element(cls, value: Union[int, list[int]]) -> Union[int, list[int]]:
        indices = [value] if isinstance(value, int) else value
        if not indices or any(isinstance(i, bool) or i < 0 for i in indices):
            raise ValueError(f"element must be an index >= 0 or a non-empty list of them, not {value!r}")
        return value

    @property
    def input_path(self) -> Optional[str]:
        return self.input or self.module

    @property
    def contribution_path(self) -> Optional[str]:
        return self.contribution or self.module


#: What a layer's token-mixing branch computes. Only softmax attention has probabilities and q/k/v;
#: ``attentions_*`` serve the two attention kinds; ``mixers_*`` serve every kind but "none".
MixerKind = Literal["softmax", "linear", "state_space", "recurrent", "convolution", "none"]
#: The mixer kinds that are attention (``attentions_*`` serve them).
ATTENTION_KINDS = ("softmax", "linear")
#: The mixer kinds that keep a recurrent state across positions (``mixer_states`` serve them).
STATEFUL_KINDS = ("state_space", "linear", "recurrent")
#: One line per mixer kind, for docs and errors.
MIXER_KINDS = {
    "softmax": "softmax attention",
    "linear": "linear attention",
    "state_space": "a selective state-space model (Mamba, Mamba-2)",
    "recurrent": "a gated recurrence (RG-LRU, RWKV, xLSTM)",
    "convolution": "a gated short convolution",
    "none": "no token mixer (the block has only its MLP)",
}


class PerLayer(_Strict):
    """Hybrid models: the token mixer differs per layer, as a config list says."""

    config_key: str = Field(description="Config key holding one entry per layer, e.g. 'layer_types'.")
    modules: dict[str, str] = Field(
        default_factory=dict, description="Entry -> attention module path for layers of that entry (default: attention.module)."
    )
    kinds: dict[str, MixerKind] = Field(
        default_factory=dict, description="Entry -> mixer kind for layers of that entry (default: attention.kind)."
    )
    mlp_modules: dict[str, str] = Field(
        default_factory=dict,
        description="Entry -> MLP module path for layers of that entry (default: mlp.module); \"\" means the "
        "layers of that entry have no MLP.",
    )

    contributions: dict[str, str] = Field(
        default_factory=dict,
        description="Entry -> module whose output is the token mixer's contribution in layers of that entry (default: "
        "attention.contribution); \"\" means the mixer module itself (blocks whose norms differ by layer kind).",
    )
    mlp_contributions: dict[str, str] = Field(
        default_factory=dict,
        description="Entry -> module whose output is the MLP's contribution in layers of that entry (default: "
        "mlp.contribution); \"\" means the MLP module itself.",
    )

    @model_validator(mode="after")
    def _mixer_or_mlp(self) -> "PerLayer":
        for entry, kind in self.kinds.items():
            if kind == "none" and self.mlp_modules.get(entry) == "":
                raise ValueError(f"entry {entry!r} has neither a token mixer (kind 'none') nor an MLP (mlp_modules \"\")")
        for _entry, path in [*self.modules.items(), *self.mlp_modules.items(), *self.contributions.items(),
                            *self.mlp_contributions.items()]:
            if path != "":
                _check_path(path)
        for entry in self.mlp_contributions:
            if self.mlp_modules.get(entry) == "":
                raise ValueError(f"mlp_contributions names entry {entry!r}, whose layers have no MLP (mlp_modules \"\")")
        for entry in self.contributions:
            if self.kinds.get(entry) == "none":
                raise ValueError(f"contributions names entry {entry!r}, whose layers have no token mixer (kind 'none')")
        return self


#: Named sets of attention sources: ``sources = "NAME"`` in ``[attention]`` states all of a set's
#: sources at once; a source the spec (or a child spec) states itself takes the place of the set's.
#: ``attention_interface``: the attention module calls its attention function as
#: ``attention_interface(self, query, key, value, mask, ...)`` (transformers' shared attention
#: functions); queries, keys and values are its inputs 1-3, the per-head output its output 0, and
#: eager attention's weights are the output of its dropout (identity in eval mode).
SOURCE_SETS: dict[str, dict[str, dict[str, Any]]] = {
    "attention_interface": {
        "probabilities": {"ops": [{"name": "attention_interface"}, {"name": "nn_functional_dropout"}]},
        "queries": {"ops": [{"name": "attention_interface"}], "io": "input", "index": 1},
        "keys": {"ops": [{"name": "attention_interface"}], "io": "input", "index": 2},
        "values": {"ops": [{"name": "attention_interface"}], "io": "input", "index": 3},
        "per_head_output": {"ops": [{"name": "attention_interface"}], "index": 0},
    },
}


class Attention(Branch):
    """The attention branch, plus where the attention internals live."""

    sources: Optional[Literal["attention_interface"]] = Field(
        None,
        description="A named set of attention sources (see SOURCE_SETS) standing for probabilities, queries, keys, "
        "values and per_head_output; each of those the spec states itself (\"\" for none) takes the set's place. "
        "Loading replaces the name by the sources, so a loaded spec holds None here.",
    )

    @model_validator(mode="before")
    @classmethod
    def _expand_sources(cls, data: Any) -> Any:
        """Replace a named set by the sources it stands for (the validated spec states each source;
        ``sources`` is then None, so a dumped spec validates to the same spec)."""
        if isinstance(data, dict) and isinstance(data.get("sources"), str) and data["sources"] in SOURCE_SETS:
            named = SOURCE_SETS[data["sources"]]
            data = {**{key: copy.deepcopy(value) for key, value in named.items() if key not in data}, **data}
            data.pop("sources")
        return data

    kind: MixerKind = Field(
        "softmax",
        description="What the token mixer computes: softmax, linear (attention), state_space, recurrent, convolution, "
        "or none (no mixer); only softmax attention has probabilities.",
    )
    per_layer: Optional[PerLayer] = Field(None, description="Per-layer module paths and kinds (hybrid models).")
    output_projection: Optional[str] = Field(
        None, description="Module inside the attention that maps the merged heads to the hidden size (e.g. 'o_proj')."
    )
    score: Literal["scaled_dot_product", "other"] = Field(
        "scaled_dot_product",
        description="scaled_dot_product: softmax(q k^T * scale [softcapped] + mask); other: extra terms (ALiBi...).",
    )
    score_scale: Union[str, float, None] = Field(
        None, description="Score multiplier: a config key whose value s gives s**-0.5, or the number itself; null: the attention module's `scaling`, else head_dim**-0.5."
    )
    score_softcap: Optional[str] = Field(None, description="Config key of a tanh softcap applied to the scores.")
    sinks: Optional[str] = Field(
        None,
        description="Attribute of the attention module holding one learned sink logit per head, or the module "
        "computing one sink logit per head and token from the attention input (None on layers without sinks): it "
        "joins the softmax as an extra last column that attends to nothing and is dropped after "
        "it, so attention_probabilities (over the real keys) sum to 1 minus the sink's share.",
    )
    probabilities: Optional[SourceRef] = Field(None, description="Post-softmax weights (batch, heads, q, k) as the model uses them.")
    queries: Optional[SourceRef] = Field(None, description="Queries as they enter the score computation (batch, heads, seq, head_dim).")
    keys: Optional[SourceRef] = Field(None, description="Keys as they enter the score computation (batch, kv_heads, seq, head_dim).")
    values: Optional[SourceRef] = Field(None, description="Values as they enter the weighted sum (batch, kv_heads, seq, head_dim).")
    per_head_output: Optional[SourceRef] = Field(
        None, description="Per-head output before the output projection (batch, seq, heads, head_dim)."
    )
    gated_output: bool = Field(
        False, description="The per-head output is gated after probabilities @ values (e.g. a sigmoid output gate)."
    )


class Residual(_Strict):
    """How a block combines its branches with the residual stream."""

    kind: Literal["sequential", "parallel", "post_norm"] = Field(
        "sequential",
        description="sequential: x+attn, then +mlp; parallel: both read x; post_norm: norm after the add.",
    )


class LogitTransform(_Strict):
    """A transform the model applies to lm_head's output, read from a config value."""

    op: Literal["multiply", "divide", "softcap"] = Field(description="multiply, divide, or cap*tanh(x/cap).")
    key: str = Field(description="Config key of the factor or cap; a null value disables the transform.")


class Logits(_Strict):
    transforms: list[LogitTransform] = Field(
        default_factory=list, description="Final transforms, in the order the model applies them."
    )


class Limits(_Strict):
    """Promises this architecture cannot keep, each with the reason shown to users."""

    contribution: Optional[str] = None
    attention_module: Optional[str] = None
    mlp_module: Optional[str] = None
    attention_probabilities: Optional[str] = None
    qkv: Optional[str] = None
    per_head_output: Optional[str] = None
    padding: Optional[str] = None
    project_on_vocab: Optional[str] = Field(
        None,
        description="Why project_on_vocab(layers_output[-1]) cannot equal the logits (the final norm reads something "
        "other than the last block's output); project_on_vocab is then refused with this reason.",
    )

    def declared(self) -> dict[str, str]:
        return {k: v for k, v in self.model_dump().items() if v}


class Tiny(_Strict):
    """How to build the offline test checkpoint."""

    tokenizer: Literal["byte_level", "metaspace"] = Field(
        "byte_level", description="Kind of tokenizer trained locally for the checkpoint."
    )
    config: dict[str, Any] = Field(
        default_factory=dict,
        description="Overrides of the HF config defaults (a child spec states only the keys it changes; "
        "`unset = [\"tiny.config.KEY\"]` removes an inherited one, leaving the HF default).",
    )
    nested: Optional[str] = Field(
        None,
        description="For a composite config (a vision-language wrapper whose causal-LM class builds the text model): "
        "the sub-config (e.g. 'text_config') that `config` and the variants apply to; every other size of the "
        "model type's default config is shrunk as a real config's would be.",
    )


def _check_specifier(value: Optional[str]) -> Optional[str]:
    """``value`` unchanged when it is a PEP 440 version specifier (None passes)."""
    if value is not None:
        from packaging.specifiers import InvalidSpecifier, SpecifierSet

        try:
            SpecifierSet(value)
        except InvalidSpecifier as exc:
            raise ValueError(f"{value!r} is not a version specifier like '>=5.3,<6'") from exc
    return value


class Requires(_Strict):
    """The transformers releases a spec serves at all. Only for releases whose own model cannot run
    as the spec states it (kernels it insists on, a model class it lacks, its own bug): every other
    difference between releases is an override."""

    transformers: str = Field(description="PEP 440 specifier on the transformers version, e.g. '>=4.46'.")
    reason: str = Field(
        description="What releases outside the range lack or do, one sentence a user reads when loading under one."
    )

    @field_validator("transformers")
    @classmethod
    def _specifier(cls, value: str) -> str:
        return cast(str, _check_specifier(value))

    @field_validator("reason")
    @classmethod
    def _reason(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("requires.reason must say what the releases outside the range lack")
        return value


class Condition(_Strict):
    """When an override applies: every stated condition must hold."""

    config: dict[str, Any] = Field(default_factory=dict, description="Config key -> required value.")
    transformers: Optional[str] = Field(None, description="PEP 440 specifier on the transformers version.")
    nnsight: Optional[str] = Field(None, description="PEP 440 specifier on the NNsight version.")
    attn_implementation: Optional[str] = Field(
        None, description="The attention implementation the model runs ('eager', 'sdpa'...), for code paths only one takes."
    )

    @field_validator("transformers", "nnsight")
    @classmethod
    def _specifier(cls, value: Optional[str]) -> Optional[str]:
        return _check_specifier(value)

    @model_validator(mode="after")
    def _not_empty(self) -> "Condition":
        if not self.config and self.transformers is None and self.nnsight is None and self.attn_implementation is None:
            raise ValueError("an override's `when` needs at least one of config, transformers, nnsight, attn_implementation")
        return self


class Override(_Strict):
    """A partial spec applied at load when ``when`` holds (config variants, version ranges)."""

    when: Condition
    set: dict[str, Any] = Field(description="Partial spec merged over the base, e.g. {residual = {kind = 'post_norm'}}.")


class Spec(_Strict):
    """One architecture (or family member) as the runtime sees it."""

    name: str = Field(description="Spec name; equals the file stem.")
    extends: Optional[str] = Field(None, description="Spec this one inherits from (states only what differs).")
    description: str = Field("", description="One line shown in docs and listings.")
    model_types: list[str] = Field(description="config.model_type values this spec serves (not inherited).")
    config: ConfigKeys = Field(default_factory=ConfigKeys)
    modules: ModulePaths
    layer: LayerIO = Field(default_factory=LayerIO)
    attention: Attention
    mlp: Branch
    residual: Residual = Field(default_factory=Residual)
    logits: Logits = Field(default_factory=Logits)
    limits: Limits = Field(default_factory=Limits)
    tiny: Tiny = Field(default_factory=Tiny)
    requires: Optional[Requires] = Field(
        None, description="The transformers releases served at all, with the reason others are not (not inherited: "
        "a release's own failure is a fact about one model type)."
    )
    variants: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Named config overrides (on top of tiny.config) real checkpoints use; "
        "`unset = [\"variants.NAME\"]` removes an inherited one.",
    )
    unset: list[str] = Field(
        default_factory=list,
        description="Entries inherited from `extends` that this spec removes, each 'tiny.config.KEY' (the tiny "
        "checkpoint keeps the HF default) or 'variants.NAME' (the variant is not run); not inherited.",
    )
    overrides: list[Override] = Field(default_factory=list, description="Conditional partial specs.")
    inherit_overrides: bool = Field(
        True, description="Take the parent's overrides (false when they state options this model type does not have)."
    )

    @field_validator("model_types")
    @classmethod
    def _some_types(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("a spec must serve at least one model_type")
        return value


#: Keys a child spec does not inherit from its parent.
NOT_INHERITED = ("name", "extends", "model_types", "description", "inherit_overrides", "unset", "requires")
#: The tables whose entries ``unset`` may remove (a dotted path: table, then the entry's name).
UNSETTABLE = (("tiny", "config"), ("variants",))
