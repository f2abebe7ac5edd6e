"""Shrinking configs whose layer kinds are lists of 1-based layer numbers in a nested table."""

from nnspec.verification import shrink

SPECIAL = {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2}


def _config(full: list[int], layers: int = 27) -> dict:
    linear = [i for i in range(1, layers + 1) if i not in full]
    return {
        "model_type": "kimi_linear", "hidden_size": 2304, "num_hidden_layers": layers, "num_attention_heads": 32,
        "num_experts": 256, "num_experts_per_token": 8, "vocab_size": 163840,
        "linear_attn_config": {"full_attn_layers": full, "kda_layers": linear, "head_dim": 128, "num_heads": 32},
    }


def test_nested_layer_numbers_follow_the_layer_count() -> None:
    out = shrink.shrink_config(_config([4, 8, 12, 16, 20, 24, 27]), 384, SPECIAL)
    table = out.config["linear_attn_config"]
    assert out.config["num_hidden_layers"] == 4, "the first layer of every kind is kept"
    assert table["full_attn_layers"] == [4] and table["kda_layers"] == [1, 2, 3]
    assert sorted(table["full_attn_layers"] + table["kda_layers"]) == [1, 2, 3, 4], "every layer keeps one kind"
    assert table["head_dim"] == shrink.HEAD_DIM and table["num_heads"] == shrink.HEADS
    assert out.config["num_experts_per_token"] == shrink.TOP_K
    assert "linear_attn_config.kda_layers" in out.changed


def test_layer_numbers_within_the_kept_layers_are_unchanged() -> None:
    out = shrink.shrink_config(_config([2], layers=3), 384, SPECIAL)
    assert out.config["num_hidden_layers"] == 3
    assert out.config["linear_attn_config"]["full_attn_layers"] == [2]
    assert out.config["linear_attn_config"]["kda_layers"] == [1, 3]
    assert "linear_attn_config.full_attn_layers" not in out.changed


def test_layer_number_keys_are_sizes() -> None:
    assert shrink.is_size_key("kda_layers") and shrink.is_size_key("full_attn_layers")
