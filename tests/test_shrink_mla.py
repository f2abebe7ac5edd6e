"""Shrinking latent-attention (DeepSeek-style) configs keeps their head dims and routing consistent."""

from __future__ import annotations

from nnspec.verification.shrink import is_size_key, shrink_config

SPECIAL = {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2}

DEEPSEEK_V3_LIKE = {
    "model_type": "deepseek_v3", "hidden_size": 7168, "num_attention_heads": 128, "num_key_value_heads": 128,
    "num_hidden_layers": 61, "first_k_dense_replace": 3, "n_group": 8, "topk_group": 4, "n_routed_experts": 256,
    "num_experts_per_tok": 8, "kv_lora_rank": 512, "q_lora_rank": 1536, "qk_rope_head_dim": 64,
    "qk_nope_head_dim": 128, "v_head_dim": 128, "vocab_size": 129280, "max_position_embeddings": 163840,
    "rope_scaling": {"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096},
}


def test_grouped_routing_and_dense_prefix_fit_the_tiny_model():
    new = shrink_config(DEEPSEEK_V3_LIKE, 384, SPECIAL).config
    assert new["n_routed_experts"] % new["n_group"] == 0
    assert new["topk_group"] <= new["n_group"]
    assert new["num_experts_per_tok"] <= (new["n_routed_experts"] // new["n_group"]) * new["topk_group"]
    assert 0 < new["first_k_dense_replace"] < new["num_hidden_layers"]
    assert new["rope_scaling"]["type"] == "yarn" and new["rope_scaling"]["factor"] == 40


def test_head_dim_naming_the_rope_slice_follows_it():
    config = {**DEEPSEEK_V3_LIKE, "head_dim": 64}
    new = shrink_config(config, 384, SPECIAL).config
    assert new["head_dim"] == new["qk_rope_head_dim"]
    config = {**DEEPSEEK_V3_LIKE, "head_dim": 512}  # a head width of its own is shrunk as one
    new = shrink_config(config, 384, SPECIAL).config
    assert new["head_dim"] != new["qk_rope_head_dim"]


def test_sparse_attention_indexer_sizes_shrink():
    config = {**DEEPSEEK_V3_LIKE, "index_n_heads": 64, "index_head_dim": 128, "index_topk": 2048}
    new = shrink_config(config, 384, SPECIAL).config
    assert new["index_n_heads"] <= new["num_attention_heads"]
    assert new["qk_rope_head_dim"] <= new["index_head_dim"] < 128
    assert new["index_topk"] == 2048  # how many tokens the indexer keeps is behaviour, kept
    assert is_size_key("index_n_heads") and is_size_key("index_head_dim")


def test_derived_layer_count_and_default_head_dim_follow_the_shrunk_config():
    from transformers import LongcatFlashConfig

    from nnspec.verification.shrink import apply_sizes

    real = {"model_type": "longcat_flash", "num_layers": 28, "hidden_size": 6144, "num_attention_heads": 64,
            "qk_rope_head_dim": 64, "qk_nope_head_dim": 128, "v_head_dim": 128, "vocab_size": 131072}
    shrunk = shrink_config(real, 384, SPECIAL)
    loaded = LongcatFlashConfig(**{k: v for k, v in shrunk.config.items() if k != "model_type"})
    done = apply_sizes(loaded, shrunk)
    # num_hidden_layers is a property (twice num_layers): setting it would halve the blocks
    assert "num_hidden_layers" not in done and loaded.num_layers == shrunk.config["num_layers"]
    # the class default head_dim (64) was the real rope width: it follows the shrunk rope width
    assert loaded.head_dim == shrunk.config["qk_rope_head_dim"]
