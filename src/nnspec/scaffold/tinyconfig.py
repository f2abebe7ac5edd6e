"""Tiny config overrides for any model type: the same small sizes under whichever keys it uses.

Only keys the model type's default config (or its ``attribute_map``) knows are set, so the result
is always a valid override set for :func:`transformers.AutoConfig.for_model`.
"""

from __future__ import annotations

from typing import Any

#: Small values for the size keys HF configs use (first match wins per meaning).
SMALL: dict[str, Any] = {
    "hidden_size": 64, "n_embd": 64, "d_model": 64, "dim": 64, "embed_dim": 64, "model_dim": 64,
    "num_hidden_layers": 3, "n_layer": 3, "num_layers": 3, "n_layers": 3,
    "num_attention_heads": 4, "n_head": 4, "num_heads": 4, "n_heads": 4, "decoder_attention_heads": 4,
    "num_key_value_heads": 2, "n_kv_heads": 2, "num_kv_heads": 2, "multi_query_group_num": 2,
    "intermediate_size": 128, "ffn_dim": 128, "n_inner": 128, "ffn_hidden_size": 128, "decoder_ffn_dim": 128,
    "inner_hidden_size": 128, "hidden_dim": 128,
    "head_dim": 16, "kv_channels": 16, "attention_head_dim": 16,
    "vocab_size": 384,
    "max_position_embeddings": 256, "n_positions": 256, "max_sequence_length": 256, "seq_length": 256, "n_ctx": 256,
    "moe_intermediate_size": 32, "shared_expert_intermediate_size": 32, "expert_intermediate_size": 32,
    "num_experts": 4, "num_local_experts": 4, "n_routed_experts": 4, "moe_num_experts": 4, "num_experts_per_tok": 2,
    "moe_topk": 2, "top_k": 2, "n_shared_experts": 1, "num_shared_experts": 1,
    "kv_lora_rank": 16, "q_lora_rank": 16, "qk_rope_head_dim": 8, "qk_nope_head_dim": 8, "v_head_dim": 16,
    "linear_num_key_heads": 2, "linear_num_value_heads": 4, "linear_key_head_dim": 16, "linear_value_head_dim": 16,
    "mamba_n_heads": 4, "mamba_d_head": 16, "mamba_d_state": 8, "ssm_state_size": 8, "state_size": 8,
    "sliding_window": 4096, "attention_chunk_size": 4096,
    "first_k_dense_replace": 1, "num_nextn_predict_layers": 0,
    "rotary_dim": 8,
    "decoder_layers": 3, "encoder_layers": 3, "encoder_attention_heads": 4, "encoder_ffn_dim": 128,
}

#: The spellings of the layer count.
LAYER_KEYS = ("num_hidden_layers", "n_layer", "num_layers", "n_layers")

#: Lists naming each layer's kind (a hybrid's attention or state-space layers).
LAYER_KINDS = ("layer_types", "layers_block_type", "block_types")

#: Options real checkpoints turn on that tiny defaults leave off (values as shipped checkpoints use).
#: The scaffold probes with the ones a model type has, and writes them as a variant.
CHECKPOINT_OPTIONS: dict[str, Any] = {
    "residual_multiplier": 0.22,          # Granite
    "embedding_multiplier": 12.0,         # Granite
    "attention_multiplier": 0.015625,     # Granite
    "logits_scaling": 8.0,                # Granite
    "logit_scale": 0.0625,                # Cohere
    "final_logit_softcapping": 30.0,      # Gemma 2
    "attn_logit_softcapping": 50.0,       # Gemma 2
    "scale_emb": 12.0,                    # MiniCPM
    "scale_depth": 1.4,                   # MiniCPM
    "dim_model_base": 32,                 # MiniCPM
    "partial_rotary_factor": 0.5,         # Phi, StableLM, Persimmon
    "use_parallel_residual": False,       # GPT-NeoX, StableLM
    "tie_word_embeddings": True,
}

def tiny_overrides(model_type: str) -> dict[str, Any]:
    """Config overrides that make ``model_type`` tiny (about 100k-1M parameters)."""
    from transformers import AutoConfig

    base = AutoConfig.for_model(model_type)
    known = set(base.to_dict()) | set(getattr(base, "attribute_map", {}) or {})
    overrides = {key: value for key, value in SMALL.items() if key in known and _settable(base, key)}
    if "kv_lora_rank" in known:  # multi-head latent attention: head sizes from the rope/nope split, all heads kept
        overrides.pop("head_dim", None)
        if "num_key_value_heads" in overrides:
            overrides["num_key_value_heads"] = overrides.get("num_attention_heads", 4)
    aliases = getattr(base, "attribute_map", {}) or {}
    # One meaning set twice (an attribute_map alias and its target) would conflict: keep the target.
    for alias, target in aliases.items():
        if alias in overrides and target in overrides:
            overrides.pop(alias)
    layers = next((overrides[k] for k in LAYER_KEYS if k in overrides), 3)
    for key in LAYER_KINDS:  # often derived from other keys: read as attributes, not from to_dict()
        value = getattr(base, key, None)
        if _settable(base, key) and isinstance(value, (list, tuple)) and len(value) > layers:
            overrides[key] = _keep_attention(list(value), list(value[:layers]))
    # Other values with one entry per layer: a config class that derives one from the new layer
    # count keeps its own; one it keeps as given (or cannot build) takes the cut default.
    try:
        built: Any = AutoConfig.for_model(model_type, **overrides).to_dict()
    except Exception:  # noqa: BLE001 - the config is inconsistent: every layer-dependent value is cut
        built = None
    for key, value in _layer_dependent(base, layers).items():
        stale = built is None or _full_length(built.get(key), base, key)
        if stale and value != base.to_dict().get(key) and key in known and key not in overrides and key not in SMALL and _settable(base, key):
            overrides[key] = value
    vocab = overrides.get("vocab_size", 384)
    for key, small in (("pad_token_id", 0), ("bos_token_id", 1), ("eos_token_id", 2)):
        value = getattr(base, key, None)
        if isinstance(value, int) and value >= vocab:
            overrides[key] = small
        elif isinstance(value, list) and any(v >= vocab for v in value):
            overrides[key] = small
    return overrides


def _layer_dependent(base: Any, layers: int) -> dict[str, Any]:
    """The per-layer values of ``base`` (a default config) cut to ``layers`` layers.

    Which keys depend on the layer count is the shrinker's knowledge (:mod:`nnspec.verification.shrink`:
    any list with one entry per layer, lists of layer indices, per-layer pattern strings, layer
    counts); it is read from there, not repeated here. Lists of layer kinds keep one
    softmax-attention layer (see :func:`_keep_attention`)."""
    from ..verification.shrink import LAYER_COUNT_KEYS, LAYER_INDEX_KEYS, LAYER_NUMBER_KEYS, LAYER_PATTERN_KEYS

    default = base.to_dict()
    old = next((default[k] for k in LAYER_KEYS if _count(default.get(k))), None)
    if old is None or old <= layers:
        return {}
    found: dict[str, Any] = {}
    for key, value in default.items():
        if isinstance(value, (list, tuple)) and len(value) == old:  # one entry per layer
            kept = list(value[:layers])
            found[key] = _keep_attention(list(value), kept) if all(isinstance(v, str) for v in value) else kept
        elif key in LAYER_INDEX_KEYS and isinstance(value, (list, tuple)):
            kept = [i for i in value if _count(i) and i < layers]
            found[key] = kept if kept or not value else [layers - 1]  # a kind cut to nothing keeps the last layer
        elif key in LAYER_NUMBER_KEYS and isinstance(value, (list, tuple)):  # 1-based layer numbers
            found[key] = [i for i in value if _count(i) and 1 <= i <= layers]
        elif key in LAYER_PATTERN_KEYS and isinstance(value, str) and len(value) == old:
            found[key] = value[:layers]
        elif key in LAYER_COUNT_KEYS and _count(value) and value > layers:
            found[key] = layers if key == "max_window_layers" else min(value, 1)
    return found


def _keep_attention(before: list[Any], after: list[Any]) -> list[Any]:
    """A hybrid's per-layer kinds cut short keep one softmax-attention layer (the tiny model then
    has a cache and attention to check): the last kept layer takes that kind."""
    full = next((v for v in before if "full" in str(v) or str(v) == "attention"), None)
    if full is None or full in after or not after:
        return after
    return [*after[:-1], full]


def _full_length(value: Any, base: Any, key: str) -> bool:
    """Whether ``value`` (a built config's ``key``) still has the default config's length."""
    default = base.to_dict().get(key)
    if isinstance(value, (list, tuple, str)) and isinstance(default, (list, tuple, str)):
        return len(value) == len(default)
    return value == default


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def checkpoint_options(model_type: str) -> dict[str, Any]:
    """The :data:`CHECKPOINT_OPTIONS` this model type's config has, where its default differs."""
    from transformers import AutoConfig

    base = AutoConfig.for_model(model_type)
    found = {}
    for key, value in CHECKPOINT_OPTIONS.items():
        if key in base.to_dict() and _settable(base, key) and getattr(base, key, None) != value:
            found[key] = value
    return found


def _settable(config: Any, key: str) -> bool:
    """False for read-only properties (derived from other keys)."""
    attribute = getattr(type(config), key, None)
    return not (isinstance(attribute, property) and attribute.fset is None)
