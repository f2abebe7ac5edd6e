"""Shrinking keeps a layer kind that a list of layer indices or a period with an offset states."""

from nnspec.verification import shrink

SPECIAL = {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}


def _bamba(indices: list[int]) -> dict:
    return {
        "model_type": "bamba", "hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
        "num_key_value_heads": 8, "intermediate_size": 14336, "vocab_size": 128256, "attn_layer_indices": indices,
    }


def test_an_index_list_cut_to_nothing_keeps_its_kind_on_the_last_layer() -> None:
    out = shrink.shrink_config(_bamba([9, 18, 27]), 384, SPECIAL)
    assert out.config["num_hidden_layers"] == shrink.MIN_LAYERS, "no layers are added for a listed kind"
    assert out.config["attn_layer_indices"] == [shrink.MIN_LAYERS - 1], "the listed kind survives, on the last layer"


def test_an_index_list_inside_the_minimum_is_unchanged() -> None:
    out = shrink.shrink_config(_bamba([1]), 384, SPECIAL)
    assert out.config["num_hidden_layers"] == shrink.MIN_LAYERS
    assert out.config["attn_layer_indices"] == [1]


def test_an_empty_index_list_adds_no_layers() -> None:
    out = shrink.shrink_config(_bamba([]), 384, SPECIAL)
    assert out.config["num_hidden_layers"] == shrink.MIN_LAYERS


def test_a_period_with_an_offset_keeps_the_offset_and_one_period() -> None:
    config = {
        "model_type": "zamba", "hidden_size": 3712, "num_hidden_layers": 76, "num_attention_heads": 16,
        "num_key_value_heads": 16, "intermediate_size": 14848, "vocab_size": 32000,
        "attn_layer_period": 6, "attn_layer_offset": 4,
    }
    out = shrink.shrink_config(config, 384, SPECIAL)
    assert out.config["num_hidden_layers"] == 10
    assert out.config["attn_layer_period"] == 6 and out.config["attn_layer_offset"] == 4, "the pattern is kept as published"
