"""Shrinking a real published ``config.json`` to a tiny one, keeping everything but sizes.

A real checkpoint's behaviour lives in its config: norms, biases, softcaps, rope scaling, window
patterns, which layers are MoE. A tiny test checkpoint must keep all of that and change only how
big things are. :data:`~nnspec.runtime.configkeys.SIZE_KEYS` is the one table of config keys that state a size, by role (in
the manner of a tensor-name table: adding an architecture whose config spells a size differently
is adding a key here, not logic). :func:`shrink_config` rewrites exactly those keys, the per-layer
lists and patterns that depend on the layer count, the token ids that index the vocabulary, and
the rope-scaling lists that depend on the head size. Everything else is copied unchanged.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, Optional, cast

from ..errors import TinyCheckpointError
from ..runtime.configkeys import SIZE_KEYS

#: Target sizes of a tiny checkpoint.
HIDDEN = 64
HEADS = 4
HEAD_DIM = 16
INTERMEDIATE = 128
MOE_INTERMEDIATE = 32
EXPERTS = 4
TOP_K = 2
MIN_LAYERS = 3
MAX_POSITIONS = 2048
LORA_RANK = 32
SSM_STATE = 16
SIDE_WIDTH = 16

#: Keys whose value counts layers (a layer index or a count of leading layers).
LAYER_COUNT_KEYS = ("first_k_dense_replace", "max_window_layers", "num_dense_layers")
#: Keys stating a period over layers: the tiny model keeps at least one full period.
LAYER_PERIOD_KEYS = (
    "full_attention_interval", "sliding_window_pattern", "_sliding_window_pattern", "decoder_sparse_step",
    "moe_layer_freq", "interleave_moe_layer_step", "attn_layer_period", "no_rope_layer_interval",
    "global_attn_every_n_layers", "expert_interval", "expert_layer_period",
)
#: Period keys with the key saying where the periodic layers start: the tiny model keeps the
#: offset and one full period after it, so that a kind whose layers share one module (tied across
#: them) keeps two of them.
LAYER_OFFSET_KEYS = {"attn_layer_offset": "attn_layer_period", "expert_layer_offset": "expert_layer_period"}
#: Keys holding a list of layer indices.
LAYER_INDEX_KEYS = ("mlp_only_layers", "attention_layers_indices", "swa_layers", "no_rope_layers_indices", "attn_layer_indices", "cross_attention_layers")
#: Keys holding a list of 1-based layer numbers, one list per layer kind that together cover every
#: layer (the tiny model keeps the first layer of each kind). They may sit in a nested table of
#: options (``linear_attn_config``), which then counts the layers of the config around it.
LAYER_NUMBER_KEYS = ("kda_layers", "full_attn_layers")
#: Keys holding a string with one character per layer naming its kind (Nemotron-H's "M-M*-E..."):
#: the tiny model keeps the shortest prefix in which every kind appears.
LAYER_PATTERN_KEYS = ("hybrid_override_pattern",)
#: Keys that weights storage, not the architecture, depends on: dropped from tiny checkpoints.
DROPPED = ("quantization_config",)
#: Token ids kept pointing at the tiny tokenizer's special tokens.
SPECIAL_IDS = ("bos_token_id", "eos_token_id", "pad_token_id")


@dataclass
class Shrunk:
    """A shrunk config and what was changed (``key path -> (old, new)``)."""

    config: dict[str, Any]
    changed: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)


def _role(key: str) -> Optional[str]:
    for role, keys in SIZE_KEYS.items():
        if key in keys:
            return role
    return None


def _kv_heads(old_heads: Any, old_kv: Any) -> Any:
    """Keep the attention class: MHA stays MHA, MQA stays MQA, GQA becomes 2 groups of 2."""
    if not isinstance(old_kv, int) or isinstance(old_kv, bool):
        return old_kv
    if isinstance(old_heads, int) and old_kv >= old_heads:
        return HEADS
    if old_kv <= 1:
        return old_kv
    return HEADS // 2


def _layer_count(config: dict[str, Any], old_layers: int) -> int:
    """Fewest layers that keep every per-layer pattern of ``config`` (at least :data:`MIN_LAYERS`)."""
    needed = MIN_LAYERS
    patterns = [config.get("layer_types")] + [
        [kind for kinds, repeats in value for _ in range(repeats) for kind in kinds]
        for value in config.values() if _runs_cover(value, old_layers)
    ]
    for types in patterns:
        if isinstance(types, list) and types:
            first: dict[str, int] = {}
            for i, kind in enumerate(map(str, types)):
                first.setdefault(kind, i)
            needed = max(needed, max(first.values()) + 1)
    for key in LAYER_PERIOD_KEYS:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 1:
            needed = max(needed, value)
    for key in LAYER_PATTERN_KEYS:
        value = config.get(key)
        if isinstance(value, str) and value:
            needed = max(needed, max(value.index(kind) for kind in set(value)) + 1)
    for key in ("first_k_dense_replace", "num_dense_layers"):
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            needed = max(needed, 2)  # one dense layer, then the rest
    for key, period_key in LAYER_OFFSET_KEYS.items():
        offset, period = config.get(key), config.get(period_key)
        if all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (offset, period)):
            needed = max(needed, cast(int, offset) + cast(int, period))  # both checked to be ints
    for table in (config, *(v for v in config.values() if isinstance(v, dict) and not _has_layer_count(v))):
        for key in LAYER_NUMBER_KEYS:
            numbers = [i for i in table.get(key) or () if isinstance(i, int) and not isinstance(i, bool)]
            if numbers:
                needed = max(needed, min(numbers))  # the first layer of that kind
    return min(needed, old_layers) if old_layers >= 1 else needed


def _runs_cover(value: Any, layers: int) -> bool:
    """Whether ``value`` is a per-layer pattern written as runs, ``[[kinds, repeats], ...]``
    (GPT-Neo's ``attention_types``: ``[[["global", "local"], 6]]`` is 12 layers), covering ``layers``."""
    if not isinstance(value, list) or not value:
        return False
    total = 0
    for run in value:
        if not (isinstance(run, list) and len(run) == 2 and isinstance(run[0], list) and run[0]
                and isinstance(run[1], int) and not isinstance(run[1], bool) and run[1] >= 0):
            return False
        total += len(run[0]) * run[1]
    return total == layers


def _first_runs(value: list[Any], layers: int) -> list[Any]:
    """The runs of ``value`` cut to the first ``layers`` layers: whole repeats first, then one
    partial run of the kinds left."""
    out: list[Any] = []
    left = layers
    for kinds, repeats in value:
        if left <= 0:
            break
        whole = min(repeats, left // len(kinds))
        if whole:
            out.append([list(kinds), whole])
            left -= whole * len(kinds)
        if whole < repeats and 0 < left < len(kinds):
            out.append([list(kinds[:left]), 1])
            left = 0
    return out


def _has_layer_count(config: dict[str, Any]) -> bool:
    return any(isinstance(config.get(k), int) for k in SIZE_KEYS["layers"])


def _expand(config: dict[str, Any]) -> int:
    """A state-space mixer's inner width over the hidden size (Mamba's ``expand``, default 2)."""
    value = config.get("expand") or config.get("mamba_expand")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 2


def _rotary_dim(config: dict[str, Any], head_dim: int) -> int:
    factor = config.get("partial_rotary_factor")
    if isinstance(factor, (int, float)) and 0 < factor <= 1:
        return max(2, int(head_dim * factor) // 2 * 2)
    return head_dim


def _apportion(parts: list[int], total: int) -> list[int]:
    """``parts`` scaled to sum to ``total``, each at least 1 where the total allows (largest
    remainders get the rest)."""
    scale = total / sum(parts)
    least = 1 if total >= len(parts) else 0
    shares = [max(least, math.floor(n * scale)) for n in parts]
    order = sorted(range(len(parts)), key=lambda i: parts[i] * scale - shares[i], reverse=True)
    i = 0
    while sum(shares) < total:
        shares[order[i % len(order)]] += 1
        i += 1
    while sum(shares) > total:
        j = max(range(len(shares)), key=lambda k: shares[k])
        shares[j] -= 1
    return shares


def _shrink_rope(rope: Any, rotary_half: int, position_factor: float, path: str, out: Shrunk) -> Any:
    if not isinstance(rope, dict):
        return rope
    new = dict(rope)
    for key in ("long_factor", "short_factor", "ext_factor"):
        value = rope.get(key)
        if isinstance(value, list) and len(value) > rotary_half:
            new[key] = value[:rotary_half]
            out.changed[f"{path}.{key}"] = (f"{len(value)} entries", f"{rotary_half} entries")
    # Multimodal rotary positions split the rotary frequencies between position streams (time,
    # height, width): the split keeps its proportions and covers the new rotary width.
    section = rope.get("mrope_section")
    if (
        isinstance(section, list) and section and all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in section)
    ):
        # The rotary width may be a fraction of the head stated inside the rope table itself.
        factor = rope.get("partial_rotary_factor")
        half = max(1, int(2 * rotary_half * factor) // 2) if isinstance(factor, (int, float)) and 0 < factor < 1 else rotary_half
        if sum(section) != half:
            new["mrope_section"] = _apportion(section, half)
            out.changed[f"{path}.mrope_section"] = (section, new["mrope_section"])
    for key in SIZE_KEYS["original_positions"]:
        value = rope.get(key)
        if isinstance(value, int) and position_factor > 1:
            new[key] = max(1, math.ceil(value / position_factor))
            out.changed[f"{path}.{key}"] = (value, new[key])
    return new


def _shrink_level(
    config: dict[str, Any], vocab_size: int, special: dict[str, int], path: str, out: Shrunk,
    outer_layers: Optional[tuple[int, int]] = None,
) -> dict[str, Any]:
    """Shrink one level; ``outer_layers`` is the (old, new) layer count of the config around a
    nested table that states none of its own."""
    new = dict(config)

    def put(key: str, value: Any) -> None:
        if new.get(key) != value:
            out.changed[f"{path}{key}"] = (config.get(key), value)
        new[key] = value

    for key in DROPPED:
        if key in new:
            del new[key]
            out.dropped.append(f"{path}{key}")
    heads_key = next((k for k in SIZE_KEYS["heads"] if isinstance(config.get(k), int)), None)
    old_heads = config.get(heads_key) if heads_key else None
    layers_key = next((k for k in SIZE_KEYS["layers"] if isinstance(config.get(k), int)), None)
    old_layers = config.get(layers_key) if layers_key else None
    new_layers = _layer_count(config, old_layers) if isinstance(old_layers, int) else None
    if layers_key is None and outer_layers is not None:
        old_layers, new_layers = outer_layers
    hidden_key = next((k for k in SIZE_KEYS["hidden"] if isinstance(config.get(k), int)), None)
    old_hidden = config.get(hidden_key) if hidden_key else None
    head_dim = HEAD_DIM
    old_head_dim = config.get("head_dim") if isinstance(config.get("head_dim"), int) else (
        old_hidden // old_heads if isinstance(old_hidden, int) and isinstance(old_heads, int) and old_heads else None)
    positions = [v for v in (config.get(k) for k in SIZE_KEYS["positions"]) if isinstance(v, int)]
    position_factor = max(positions) / MAX_POSITIONS if positions and max(positions) > MAX_POSITIONS else 1.0

    for key, value in config.items():
        if isinstance(value, bool) or key in DROPPED:
            continue
        role = _role(key)
        if isinstance(value, dict):
            if key in ("rope_scaling", "rope_parameters"):
                rotary_half = _rotary_dim(config, head_dim) // 2
                new[key] = _shrink_rope(value, rotary_half, position_factor, f"{path}{key}", out)
            elif value and all(isinstance(k, str) and k.isdigit() for k in value) and isinstance(old_layers, int):
                # A table keyed by layer index (per-layer overrides): the tiny model's layers only,
                # each entry's sizes shrunk like the config around it.
                keep = new_layers if new_layers is not None else old_layers
                new[key] = {
                    k: _shrink_level(v, vocab_size, special, f"{path}{key}.{k}.", out) if isinstance(v, dict) else v
                    for k, v in value.items() if int(k) < keep
                }
                if len(new[key]) != len(value):
                    out.changed[f"{path}{key}"] = (f"{len(value)} layers", f"{len(new[key])} layers")
            elif key.endswith("_config") or key.endswith("config"):
                outer = (old_layers, new_layers) if isinstance(old_layers, int) and new_layers is not None else None
                new[key] = _shrink_level(value, vocab_size, special, f"{path}{key}.", out, outer)
            continue
        if role is None or not isinstance(value, int):
            continue
        if role == "hidden":
            put(key, HIDDEN)
        elif role == "heads":
            put(key, HEADS)
        elif role == "kv_heads":
            put(key, _kv_heads(old_heads, value))
        elif role == "head_dim":
            put(key, HEAD_DIM)
        elif role == "intermediate":
            put(key, INTERMEDIATE)
        elif role == "moe_intermediate":
            put(key, MOE_INTERMEDIATE)
        elif role == "layers" and new_layers is not None:
            put(key, new_layers)
        elif role == "experts":
            put(key, min(value, EXPERTS))
        elif role == "top_k":
            put(key, min(value, TOP_K))
        elif role == "vocab":
            put(key, vocab_size)
        elif role in ("positions", "original_positions") and position_factor > 1:
            put(key, max(1, math.ceil(value / position_factor)))
        elif role == "lora":
            put(key, LORA_RANK)
        elif role == "mla_head_dim":
            put(key, 8 if key == "qk_rope_head_dim" else HEAD_DIM)
        elif role == "linear_head_dim":
            put(key, HEAD_DIM)
        elif role == "linear_heads":
            # Value heads become HEADS; key heads keep their ratio to them (fewer, or as many).
            values = config.get("linear_num_value_heads")
            fewer = key == "linear_num_key_heads" and isinstance(values, int) and value < values
            put(key, HEADS // 2 if fewer else HEADS)
        elif role == "ssm_state":
            put(key, SSM_STATE)
        elif role == "ssm_heads":
            inner = _expand(config)
            put(key, max(1, int(inner * HIDDEN) // HEAD_DIM))
        elif role == "ssm_inner":
            put(key, _expand(config) * HIDDEN)
        elif role == "ssm_head_dim":
            put(key, HEAD_DIM)
        elif role == "ssm_groups":
            put(key, min(value, 2))
        elif role == "ssm_chunk":
            put(key, min(value, 16))
        elif role == "time_step_rank":
            put(key, max(1, HIDDEN // 16))
        elif role in ("rotary_dim", "scaled_head_dim") and isinstance(old_head_dim, int) and old_head_dim:
            put(key, max(2, round(value * head_dim / old_head_dim / 2) * 2))
        elif role == "other_kv_heads":
            kv = next((config[k] for k in SIZE_KEYS["kv_heads"] if isinstance(config.get(k), int)), None)
            put(key, 1 if isinstance(kv, int) and 1 < value < kv else _kv_heads(old_heads, value))
        elif role == "side_width":
            put(key, min(value, SIDE_WIDTH))
        elif role == "side_vocab":
            put(key, vocab_size)

    # Latent-attention configs whose head_dim is the rope slice's width keep the two equal.
    rope_dim = config.get("qk_rope_head_dim")
    if isinstance(rope_dim, int) and config.get("head_dim") == rope_dim and isinstance(new.get("qk_rope_head_dim"), int):
        put("head_dim", new["qk_rope_head_dim"])
    # Latent-attention configs that also state the query/key head width (qk_head_dim = qk_nope_head_dim
    # + qk_rope_head_dim, as GLM-5's does; some releases read it instead of adding the two) keep the sum.
    nope, rope = config.get("qk_nope_head_dim"), config.get("qk_rope_head_dim")
    if isinstance(nope, int) and isinstance(rope, int) and config.get("qk_head_dim") == nope + rope:
        put("qk_head_dim", new["qk_nope_head_dim"] + new["qk_rope_head_dim"])
    # Mamba-2 configs state their SSM heads as num_heads x head_dim = expand x hidden: keep that.
    expand = config.get("expand")
    if (
        isinstance(expand, int) and not isinstance(expand, bool) and isinstance(old_hidden, int)
        and any(k in config for k in SIZE_KEYS["ssm_state"])
        and isinstance(config.get("num_heads"), int) and isinstance(config.get("head_dim"), int)
        and config["num_heads"] * config["head_dim"] == expand * old_hidden
    ):
        put("num_heads", expand * HIDDEN // HEAD_DIM)
    # OPT-style embedding projections: equal to the hidden size, or a different width.
    if isinstance(config.get("word_embed_proj_dim"), int) and isinstance(old_hidden, int):
        put("word_embed_proj_dim", HIDDEN if config["word_embed_proj_dim"] == old_hidden else HIDDEN // 2)
    # Expert groups (DeepSeek-V3-style routing) must divide the experts.
    if isinstance(config.get("n_group"), int) and config["n_group"] > 1:
        put("n_group", 2)
        if isinstance(config.get("topk_group"), int):
            put("topk_group", min(config["topk_group"], 1))
    # Per-layer lists follow the layer count; layer counts and indices stay inside it.
    if isinstance(old_layers, int) and new_layers is not None:
        for key, value in config.items():
            if isinstance(value, list) and len(value) == old_layers and old_layers != new_layers:
                put(key, value[:new_layers])
            elif old_layers != new_layers and _runs_cover(value, old_layers):
                put(key, _first_runs(value, new_layers))
        for key in LAYER_COUNT_KEYS:
            value = config.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                if key == "max_window_layers":
                    put(key, new_layers if value >= old_layers else max(1, min(value, new_layers - 1)))
                else:
                    put(key, min(value, 1))
        for key in LAYER_PATTERN_KEYS:
            value = config.get(key)
            if isinstance(value, str) and len(value) == old_layers:
                put(key, value[:new_layers])
        for key in LAYER_INDEX_KEYS:
            value = config.get(key)
            if isinstance(value, list):
                kept = [i for i in value if isinstance(i, int) and i < new_layers]
                if value and not kept:
                    kept = [new_layers - 1]  # a list cut to nothing would lose its kind: the last layer keeps it
                put(key, kept)
        for key in LAYER_NUMBER_KEYS:
            value = config.get(key)
            if isinstance(value, list):
                put(key, [i for i in value if isinstance(i, int) and 1 <= i <= new_layers])
    # Token ids index the vocabulary: the special ones point at the tiny tokenizer's.
    if any(k in config for k in SIZE_KEYS["vocab"]):
        for key in SPECIAL_IDS:
            if key in config and config[key] is not None:
                put(key, special[key])
    # Other token ids beyond the tiny vocabulary take the last ids, one each, in key order; at any
    # level (a wrapper's image token id sits outside its text config).
    others = sorted(
        key for key, value in config.items()
        if (key.endswith("_token_id") or key.endswith("_token_index")) and key not in SPECIAL_IDS
        and isinstance(value, int) and not isinstance(value, bool) and value >= vocab_size
    )
    for n, key in enumerate(others):
        put(key, vocab_size - 1 - n)
    return new


def shrink_config(config: dict[str, Any], vocab_size: int, special: dict[str, int]) -> Shrunk:
    """``config`` (a parsed real ``config.json``) with every size shrunk and nothing else changed.

    Args:
        config: the real config.
        vocab_size: the tiny tokenizer's vocabulary size.
        special: the tiny tokenizer's ``bos_token_id``, ``eos_token_id`` and ``pad_token_id``.

    Raises:
        TinyCheckpointError: when ``config`` is not a JSON object with a ``model_type``.
    """
    if not isinstance(config, dict):
        raise TinyCheckpointError(f"a config must be a JSON object, got {type(config).__name__}")
    if not isinstance(config.get("model_type"), str):
        raise TinyCheckpointError("the config has no \"model_type\" key: is it a HuggingFace config.json?")
    out = Shrunk(config={})
    out.config = _shrink_level(copy.deepcopy(config), vocab_size, special, "", out)
    return out


#: Further keys that state a size or count (a spec's own ``[tiny.config]`` may set them too).
SIZE_LIKE: tuple[str, ...] = (
    "word_embed_proj_dim", "sliding_window", "attention_chunk_size", "n_shared_experts", "num_shared_experts",
    "num_nextn_predict_layers", "query_pre_attn_scalar", "kv_channels", "n_group", "topk_group", "layer_types",
    "attention_types", "layers_block_type", "moe_shared_expert_intermediate_size",
    "attn_layer_offset", "expert_layer_offset", "image_size", "patch_size", "mm_tokens_per_image", "mrope_section",
    "attention_hidden_size", "n_mamba_heads", "adapter_rank", "attention_window_size", "router_hidden_size", "hc_mult",
)


#: Sizes and counts of hyper-connections, token indexers, block residuals and looped sections:
#: stream-mixing ranks, indexer heads and token budgets, relative-bias widths and extents, layers
#: per residual block, the bounds of a looped section of blocks.
SIZE_LIKE += (
    "unpadded_vocab_size", "hc_lowrank", "indexer_n_heads", "indexer_kv_heads", "indexer_head_dim", "indexer_budget",
    "indexer_compress_ratio", "d_rel", "rel_extent", "n_layers_per_attn_res_block", "loop_layer_index_start",
    "loop_layer_index_end", "loop_gate_rank", "n_input_layers", "n_recurrent_layers", "n_output_layers",
    "qk_head_dim",
)


#: Prefix of keys stating the sliding-window layers' own value of a size (``swa_num_attention_heads``).
SLIDING_PREFIX = "swa_"


def is_size_key(key: str) -> bool:
    """Whether ``key`` states a size, a count, a window, a per-layer pattern or a token id, as
    opposed to a behaviour option (norms, biases, softcaps, tying...); ``swa_`` + a size key is the
    sliding-window layers' own value of that size."""
    if key.startswith(SLIDING_PREFIX) and is_size_key(key[len(SLIDING_PREFIX):]):
        return True
    return (
        any(key in keys for keys in SIZE_KEYS.values())
        or key in LAYER_COUNT_KEYS or key in LAYER_PERIOD_KEYS or key in LAYER_INDEX_KEYS or key in LAYER_NUMBER_KEYS
        or key in LAYER_PATTERN_KEYS
        or key in SIZE_LIKE
        or key.endswith("_token_id") or key.endswith("_token_index")
    )


def _single_value(config: Any, key: str, default: Any = None) -> Any:
    """``config.<key>``, or ``default`` where the config lacks it or sets it per layer (a
    heterogeneous config, where the value may differ between layers: the shrunk config states
    those layers' values itself)."""
    if key in (getattr(config, "per_layer_attributes", None) or ()):
        return default
    return getattr(config, key, default)


def apply_sizes(loaded: Any, shrunk: Shrunk) -> list[str]:
    """Bring a loaded config object's size attributes to the shrunk values where its class ignored
    the key the published config used (Falcon configs of 2023 say ``n_head``/``n_layer``, which
    newer classes no longer read: they fall back to defaults that happen to match the real
    checkpoint, but not the tiny one). Returns the attributes set."""
    done = []
    top = {k: v for k, v in shrunk.config.items() if not isinstance(v, (dict, list))}
    for _role, keys in SIZE_KEYS.items():
        values = {top[k] for k in keys if isinstance(top.get(k), int) and not isinstance(top.get(k), bool)}
        if len(values) != 1:
            continue
        value = values.pop()
        for key in keys:
            if isinstance(getattr(type(loaded), key, None), property):
                continue  # derived by the class from other keys (a layer count twice another), not ignored
            current = _single_value(loaded, key, None)
            if isinstance(current, int) and not isinstance(current, bool) and current != value and key not in top:
                setattr(loaded, key, value)
                done.append(key)
    # A latent-attention config without head_dim gets the class default; where that default is
    # the real rope slice's width, it must follow the shrunk rope width (see _shrink_level).
    rope = shrunk.changed.get("qk_rope_head_dim")
    if rope and "head_dim" not in top and _single_value(loaded, "head_dim", None) == rope[0] != rope[1]:
        loaded.head_dim = rope[1]
        done.append("head_dim")
    heads = _single_value(loaded, "num_attention_heads", None)
    kv = _single_value(loaded, "num_kv_heads", None)
    if "num_attention_heads" in done and isinstance(kv, int) and not any(k in top for k in SIZE_KEYS["kv_heads"]):
        if isinstance(heads, int) and kv > heads:  # derived from the old head count
            loaded.num_kv_heads = heads
            done.append("num_kv_heads")
    return done

