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

#: Keys that must stay consistent with the layer count (lists per layer are cut to 3 entries).
PER_LAYER_LISTS = ("layer_types", "layers_block_type", "block_types", "mlp_only_layers", "attention_layer_indices")


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
    layers = next((overrides[k] for k in ("num_hidden_layers", "n_layer", "num_layers", "n_layers") if k in overrides), 3)
    for key in PER_LAYER_LISTS:
        value = getattr(base, key, None)
        if not _settable(base, key) or not isinstance(value, (list, tuple)) or len(value) <= layers:
            continue
        if key in ("layer_types", "layers_block_type", "block_types"):
            kinds = list(value[:layers])
            # Keep at least one softmax-attention layer of a hybrid, so the tiny model has a cache.
            full = next((v for v in value if "full" in str(v) or str(v) == "attention"), None)
            if full is not None and full not in kinds:
                kinds[-1] = full
            overrides[key] = kinds
        else:
            overrides[key] = [v for v in value if isinstance(v, int) and v < layers]
    vocab = overrides.get("vocab_size", 384)
    for key, small in (("pad_token_id", 0), ("bos_token_id", 1), ("eos_token_id", 2)):
        value = getattr(base, key, None)
        if isinstance(value, int) and value >= vocab:
            overrides[key] = small
        elif isinstance(value, list) and any(v >= vocab for v in value):
            overrides[key] = small
    return overrides


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
