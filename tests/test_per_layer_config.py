"""Configs that set attention shapes per layer (transformers' heterogeneous configs, e.g. Gemma 4's
global layers with a larger head size and fewer kv heads): the runtime reads them per layer, the
shrinker keeps their ratios, and a value that differs between layers is refused as a single one."""

from __future__ import annotations

from pathlib import Path

import pytest

from nnspec.errors import CapabilityUnavailableError, ModelStructureError
from nnspec.runtime.adapter import is_per_layer, read_config, read_config_per_layer
from nnspec.verification.shrink import shrink_config
from nnspec.verification.tiny import build_from_config

LAYER_TYPES = ["sliding_attention"] * 2 + ["full_attention"]
CONFIG = {
    "model_type": "gemma4_text", "architectures": ["Gemma4ForCausalLM"], "hidden_size": 2048, "num_hidden_layers": 3,
    "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 256, "global_head_dim": 512,
    "num_global_key_value_heads": 2, "attention_k_eq_v": True, "intermediate_size": 8192, "vocab_size": 262144,
    "hidden_size_per_layer_input": 0, "vocab_size_per_layer_input": 262144, "layer_types": LAYER_TYPES,
}


def test_shrink_keeps_the_wider_fewer_kv_global_layers() -> None:
    shrunk = shrink_config(CONFIG, 384, {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}).config
    assert shrunk["global_head_dim"] == 2 * shrunk["head_dim"]
    assert shrunk["num_global_key_value_heads"] < shrunk["num_key_value_heads"]
    assert shrunk["vocab_size_per_layer_input"] == 384 and shrunk["hidden_size_per_layer_input"] == 0


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_from_config(CONFIG, tmp_path_factory.mktemp("per-layer") / "tiny", name="per-layer test")


def test_per_layer_keys_are_read_per_layer(checkpoint: Path) -> None:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(checkpoint)
    assert is_per_layer(config, "head_dim") and not is_per_layer(config, "hidden_size")
    assert read_config_per_layer(config, "head_dim", 3) == [16, 16, 32]
    assert read_config_per_layer(config, "hidden_size", 3) == [64] * 3
    with pytest.raises(ModelStructureError, match="'head_dim' is set per layer"):
        read_config(config, "head_dim")


def test_model_reports_head_shapes_per_layer(checkpoint: Path) -> None:
    import torch

    from nnspec import StandardizedTransformer

    model = StandardizedTransformer(str(checkpoint), attn_implementation="eager", dtype=torch.float32)
    assert model.head_dims == [16, 16, 32] and model.num_kv_heads_per_layer == [2, 2, 1]
    with pytest.raises(CapabilityUnavailableError, match=r"head_dim differs between layers.*head_dims\[i\]"):
        model.head_dim
    with pytest.raises(CapabilityUnavailableError, match=r"num_kv_heads_per_layer\[i\]"):
        model.num_kv_heads
    assert model.num_heads == 4
    with model.trace("The capital of France is"):
        q_local, q_global = model.queries[0].save(), model.queries[2].save()
        k_global = model.keys[2].save()
    assert q_local.shape[1:2] == q_global.shape[1:2] == (4,)
    assert q_local.shape[-1] == 16 and q_global.shape[-1] == 32 and k_global.shape[1] == 1


def test_uniform_models_keep_single_values() -> None:
    from nnspec import StandardizedTransformer
    from nnspec.runtime.registry import adapter_by_name
    from nnspec.verification.tiny import checkpoint as tiny_checkpoint

    model = StandardizedTransformer(str(tiny_checkpoint(adapter_by_name("llama").spec)))
    assert model.head_dim == 16 and model.head_dims == [16] * model.num_layers
    assert model.num_kv_heads == 2 and model.num_kv_heads_per_layer == [2] * model.num_layers
