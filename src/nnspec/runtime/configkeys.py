"""The config keys that state a size, by role: one table that the load-time input checks and the
tiny-checkpoint shrinker both read (adding an architecture whose config spells a size differently is
adding a key here, not logic)."""

from __future__ import annotations

#: Config keys that state a size, by role. Keys are matched at any nesting level (sub-configs of
#: multimodal wrappers, ``text_config``...).
SIZE_KEYS: dict[str, tuple[str, ...]] = {
    "hidden": ("hidden_size", "n_embd", "d_model", "model_dim", "adapter_in_dim", "adapter_out_dim", "adapter_input_size", "adapter_output_size"),
    "heads": ("num_attention_heads", "n_head", "n_heads", "num_heads", "index_n_heads"),
    "kv_heads": ("num_key_value_heads", "num_kv_heads", "n_head_kv", "multi_query_group_num", "n_kv_heads", "kv_n_heads"),
    "head_dim": ("head_dim", "attention_head_dim", "index_head_dim", "dim_head"),
    "intermediate": ("intermediate_size", "ffn_dim", "n_inner", "ffn_hidden_size", "dense_intermediate_size", "dim_ff"),
    "moe_intermediate": (
        "moe_intermediate_size", "shared_expert_intermediate_size", "shared_experts_intermediate_size", "expert_intermediate_size",
        "moe_ffn_hidden_size", "shared_intermediate_size", "expert_ffn_hidden_size",
    ),
    "layers": ("num_hidden_layers", "n_layer", "num_layers", "n_layers"),
    "experts": ("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts", "zero_expert_num"),
    "top_k": ("num_experts_per_tok", "num_experts_per_token", "moe_topk", "num_selected_experts", "moe_k", "moe_top_k", "top_k_experts"),
    "vocab": ("vocab_size", "padded_vocab_size"),
    "positions": ("max_position_embeddings", "n_positions", "n_ctx", "max_seq_len", "seq_length"),
    "original_positions": ("original_max_position_embeddings",),
    "lora": ("q_lora_rank", "kv_lora_rank"),
    "mla_head_dim": ("qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim"),
    "linear_head_dim": ("linear_key_head_dim", "linear_value_head_dim", "linear_head_dim"),
    "linear_heads": ("linear_num_key_heads", "linear_num_value_heads", "linear_num_heads"),
    "rotary_dim": ("rotary_dim",),
    # Some layers' own attention shape (Gemma 4's global layers): a head size kept in its ratio to
    # head_dim, and a kv head count kept fewer than the other layers' where it is.
    "scaled_head_dim": ("global_head_dim",),
    "other_kv_heads": ("num_global_key_value_heads",),
    # Small side widths (per-layer input embeddings, low-rank residual adapters); 0 stays 0 (off).
    "side_width": ("hidden_size_per_layer_input", "laurel_rank"),
    "side_vocab": ("vocab_size_per_layer_input",),
    # State-space mixers: the state per channel, Mamba-2's heads (heads x head dim = expand x
    # hidden), their groups, and Mamba's rank of the time-step projection.
    "ssm_state": ("state_size", "ssm_state_size", "mamba_d_state"),
    "ssm_heads": ("mamba_num_heads", "mamba_n_heads"),
    "ssm_inner": ("mamba_d_ssm",),
    "ssm_head_dim": ("mamba_head_dim", "mamba_d_head", "mamba_headdim"),
    "ssm_groups": ("n_groups", "mamba_n_groups", "mamba_ngroups"),
    "time_step_rank": ("time_step_rank", "mamba_dt_rank"),
    # Mamba-2's scan runs in chunks of this many positions (the input is padded up to one chunk).
    "ssm_chunk": ("mamba_chunk_size", "chunk_size"),
}
