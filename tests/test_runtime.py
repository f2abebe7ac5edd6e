"""The runtime: nnterp-compatible construction, standard names, bad input, and custom specs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nnspec import (
    CapabilityUnavailableError,
    LayerIndexError,
    ModelStructureError,
    ShapeMismatchError,
    StandardizedTransformer,
    UnsupportedArchitectureError,
)
from nnspec.verification import conformance, tiny

from .conftest import checkpoint

PROMPT = "The Eiffel Tower is in the city of"


@pytest.fixture(scope="module")
def gpt2(gpt2_path: Path) -> StandardizedTransformer:
    return StandardizedTransformer(gpt2_path)


def test_load_is_lazy_and_runs_no_forward(gpt2_path: Path) -> None:
    model = StandardizedTransformer(gpt2_path)
    assert not model.dispatched, "load-time checks must not load weights or run the model"
    assert next(model._module.parameters()).device.type == "meta"


def test_standard_names_resolve_to_the_native_modules(gpt2: StandardizedTransformer) -> None:
    native = gpt2._module
    assert gpt2.embed_tokens._module is native.transformer.wte
    assert gpt2.ln_final._module is native.transformer.ln_f
    assert gpt2.lm_head._module is native.lm_head
    assert len(gpt2.layers) == gpt2.num_layers == 3
    for i in range(gpt2.num_layers):
        assert gpt2.layers[i]._module is native.transformer.h[i]
        assert gpt2.layers[i].self_attn._module is native.transformer.h[i].attn
        assert gpt2.attentions[i]._module is native.transformer.h[i].attn
        assert gpt2.mlps[i]._module is native.transformer.h[i].mlp
    assert gpt2.layers[-1]._module is native.transformer.h[2]
    assert gpt2.transformer.h[0]._module is native.transformer.h[0], "native names keep working"


def test_config_attributes(llama_path: Path) -> None:
    model = StandardizedTransformer(llama_path)
    assert (model.num_layers, model.num_heads, model.num_kv_heads, model.head_dim, model.hidden_size) == (3, 4, 2, 16, 64)
    assert model.vocab_size == model._module.config.vocab_size
    gpt2 = StandardizedTransformer(checkpoint("gpt2"))
    assert gpt2.num_kv_heads == gpt2.num_heads == 4 and gpt2.head_dim == 16


def test_inputs_logits_and_probs(gpt2: StandardizedTransformer) -> None:
    with gpt2.trace([PROMPT, "Hello"]):
        ids = gpt2.input_ids.save()
        mask = gpt2.attention_mask.save()
        logits = gpt2.logits.save()
        probs = gpt2.next_token_probs.save()
    encoded = gpt2.tokenizer([PROMPT, "Hello"], return_tensors="pt", padding=True)
    assert torch.equal(ids, encoded["input_ids"]) and torch.equal(mask, encoded["attention_mask"])
    assert logits.shape == (2, ids.shape[1], gpt2.vocab_size)
    assert torch.allclose(probs, logits[:, -1].softmax(-1)) and torch.allclose(probs.sum(-1), torch.ones(2))


def test_layer_index_out_of_range(gpt2: StandardizedTransformer) -> None:
    with pytest.raises(LayerIndexError, match=r"layers_output\[3\]: layer index out of range for a model with 3 layers"):
        gpt2.layers_output[3]
    with pytest.raises(LayerIndexError, match=r"attentions\[-4\]"):
        gpt2.attentions[-4]
    with pytest.raises(LayerIndexError, match="must be an integer"):
        gpt2.layers["1"]
    with pytest.raises(IndexError):  # LayerIndexError is an IndexError
        gpt2.mlps_output[10]
    with pytest.raises(LayerIndexError, match=r"steer\(layers=...\)\[5\]"):
        gpt2.steer(layers=[0, 5], steering_vector=torch.zeros(gpt2.hidden_size))


def test_steering_vector_of_wrong_size(gpt2: StandardizedTransformer) -> None:
    with pytest.raises(ShapeMismatchError, match=r"steer\(steering_vector=...\): expected shape \(64,\), got \(32,\)"):
        with gpt2.trace(PROMPT):
            gpt2.steer(layers=1, steering_vector=torch.randn(32))


def test_setter_checks_shape(gpt2: StandardizedTransformer) -> None:
    with pytest.raises(ShapeMismatchError, match=r"layers_output\[1\] = value: expected shape \(1, \d+, 64\), got \(64,\)"):
        with gpt2.trace(PROMPT):
            gpt2.layers_output[1] = torch.zeros(64)
    with pytest.raises(ShapeMismatchError, match=r"mlps_output\[0\] = value: expected a tensor"):
        with gpt2.trace(PROMPT):
            gpt2.mlps_output[0] = 0.0
    with pytest.raises(ShapeMismatchError, match="project_on_vocab"):
        gpt2.project_on_vocab(torch.zeros(3, 10))


def test_project_on_vocab_and_topk_outside_a_trace(gpt2: StandardizedTransformer) -> None:
    hidden = torch.randn(2, gpt2.hidden_size)
    got = gpt2.project_on_vocab(hidden)  # loads the weights (the model is lazy until then)
    native = gpt2._module
    expected = native.lm_head(native.transformer.ln_f(hidden))
    assert torch.allclose(got, expected)
    top = gpt2.get_topk_closest_tokens(hidden[0], k=3)
    assert isinstance(top, dict) and len(top) == 3 and abs(sum(top.values()) - expected[0].softmax(-1).topk(3).values.sum()) < 1e-5
    assert len(gpt2.get_topk_closest_tokens(hidden, k=2)) == 2


def test_declared_limit_is_reported_not_guessed() -> None:
    model = StandardizedTransformer(checkpoint("bloom", "post_layernorm_residual"))
    assert "contribution" in model.limits
    with pytest.raises(CapabilityUnavailableError, match="apply_residual_connection_post_layernorm"):
        with model.trace(PROMPT):
            model.attentions_output[0]
    opt = StandardizedTransformer(checkpoint("opt"))
    with pytest.raises(CapabilityUnavailableError, match="no MLP module"):
        opt.mlps[0]


def test_enable_attention_probs_and_attn_implementation(gpt2_path: Path) -> None:
    model = StandardizedTransformer(gpt2_path, enable_attention_probs=True)
    assert model.attn_implementation == "eager"
    with pytest.raises(ValueError, match="enable_attention_probs=True needs eager attention"):
        StandardizedTransformer(gpt2_path, enable_attention_probs=True, attn_implementation="sdpa")
    assert StandardizedTransformer(gpt2_path, attn_implementation="sdpa").attn_implementation == "sdpa"


def test_nnterp_arguments_and_extra_rename(gpt2_path: Path) -> None:
    model = StandardizedTransformer(
        gpt2_path, check_renaming=True, allow_dispatch=False, check_attn_probs_with_trace=False,
        trust_remote_code=False, rename={"transformer.wpe": "pos_embed"},
    )
    assert model.pos_embed._module is model._module.transformer.wpe
    with pytest.raises(TypeError, match="spec='path.toml'"):
        StandardizedTransformer(gpt2_path, rename_config=object())


def test_loaded_module_and_tokenizer_arguments(gpt2_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hf = AutoModelForCausalLM.from_pretrained(gpt2_path)
    model = StandardizedTransformer(hf, tokenizer=AutoTokenizer.from_pretrained(gpt2_path))
    with model.trace(PROMPT):
        out = model.layers_output[0].save()
    assert out.shape[-1] == 64 and model.dispatched


def test_unsupported_model_type_says_how_to_bring_a_spec(tmp_path: Path) -> None:
    """A private architecture (registered with the Auto classes, as custom models are) that no
    bundled spec serves: a clear error, then a user spec file makes it pass every check."""
    from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    class PrivateConfig(LlamaConfig):
        model_type = "nnspec_private_llama"

    class PrivateForCausalLM(LlamaForCausalLM):
        config_class = PrivateConfig

    AutoConfig.register("nnspec_private_llama", PrivateConfig, exist_ok=True)
    AutoModelForCausalLM.register(PrivateConfig, PrivateForCausalLM, exist_ok=True)
    spec_file = tmp_path / "private.toml"
    spec_file.write_text('name = "private"\nextends = "llama"\nmodel_types = ["nnspec_private_llama"]\n')
    from nnspec.runtime.adapter import Adapter

    path = tiny.build(Adapter.from_file(spec_file).spec, tmp_path / "private-tiny")
    with pytest.raises(UnsupportedArchitectureError) as info:
        StandardizedTransformer(path)
    message = str(info.value)
    assert "config.model_type='nnspec_private_llama'" in message and "spec='path/to/nnspec_private_llama.toml'" in message
    subject = conformance.load_subject("private", path, spec=str(spec_file))
    failed = [r for r in conformance.run_checks(subject) if not r.passed]
    assert failed == [], failed


def test_spec_path_missing_in_model_names_nearest(tmp_path: Path) -> None:
    spec_file = tmp_path / "gpt2_typo.toml"
    spec_file.write_text('name = "gpt2_typo"\nextends = "gpt2"\nmodel_types = ["gpt2"]\n[modules]\nln_final = "transformer.ln_ff"\n')
    with pytest.raises(ModelStructureError) as info:
        StandardizedTransformer(checkpoint("gpt2"), spec=str(spec_file))
    message = str(info.value)
    assert "gpt2_typo.toml" in message and "modules.ln_final = 'transformer.ln_ff' does not exist" in message
    assert "'transformer.ln_f'" in message


def test_block_path_and_config_key_missing(tmp_path: Path) -> None:
    spec_file = tmp_path / "gpt2_attn.toml"
    spec_file.write_text('name = "gpt2_attn"\nextends = "gpt2"\nmodel_types = ["gpt2"]\n[attention]\nmodule = "atn"\n')
    with pytest.raises(ModelStructureError, match=r"attention.module = 'atn' does not exist in block 0 \(GPT2Block\) \(closest: 'attn'"):
        StandardizedTransformer(checkpoint("gpt2"), spec=str(spec_file))
    spec_file.write_text('name = "gpt2_attn"\nextends = "gpt2"\nmodel_types = ["gpt2"]\n[config]\nnum_heads = "n_heads"\n')
    with pytest.raises(ModelStructureError, match=r"config.num_heads names config key 'n_heads'.*closest: 'n_head'"):
        StandardizedTransformer(checkpoint("gpt2"), spec=str(spec_file))


def test_missing_checkpoint_directory_is_reported(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="no-such-model"):
        StandardizedTransformer(tmp_path / "no-such-model")


def test_version_override_selects_by_installed_transformers() -> None:
    from nnspec.runtime.registry import adapter_by_name

    adapter = adapter_by_name("gpt_neox")
    config = StandardizedTransformer(checkpoint("gpt_neox"))._module.config
    assert adapter.effective(config).modules.lm_head == "lm_head"
    assert adapter.effective(config, {"transformers": "4.57.1"}).modules.lm_head == "embed_out"
    config.use_parallel_residual = False
    assert adapter.effective(config).residual.kind == "sequential"


def test_attention_inner_path_missing(tmp_path: Path) -> None:
    spec_file = tmp_path / "gpt2_proj.toml"
    spec_file.write_text('name = "gpt2_proj"\nextends = "gpt2"\nmodel_types = ["gpt2"]\n[attention]\noutput_projection = "o_proj"\n')
    with pytest.raises(ModelStructureError, match=r"attention.output_projection = 'o_proj' does not exist in GPT2Attention"):
        StandardizedTransformer(checkpoint("gpt2"), spec=str(spec_file))
