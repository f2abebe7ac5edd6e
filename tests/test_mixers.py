"""Token mixers beyond softmax attention: Mamba (no attention, no MLP) and Nemotron-H (one mixer per
block, chosen by a config list). Standard names serve the layers that have the value and refuse the
others with the layer's mixer kind; collection helpers refuse before any forward."""

from __future__ import annotations

import pytest
import torch

from nnspec import StandardizedTransformer
from nnspec.cache import run_with_cache
from nnspec.compiler.schema import PerLayer
from nnspec.errors import CapabilityUnavailableError
from nnspec.runtime.adapter import rename_dict
from nnspec.runtime.registry import adapter_by_name

from .conftest import checkpoint

PROMPT = "The Eiffel Tower is in Paris"


@pytest.fixture(scope="module")
def mamba() -> StandardizedTransformer:
    return StandardizedTransformer(checkpoint("mamba"))


@pytest.fixture(scope="module")
def nemotron() -> StandardizedTransformer:
    return StandardizedTransformer(checkpoint("nemotron_h"))


def test_mamba_has_mixers_and_neither_attention_nor_mlp(mamba: StandardizedTransformer) -> None:
    assert mamba.mixer_kinds == ["state_space"] * mamba.num_layers
    assert mamba.num_heads is None and mamba.head_dim is None and mamba.num_kv_heads is None
    with pytest.raises(CapabilityUnavailableError, match=r"no attention: its token mixer is a selective state-space model"):
        mamba.attentions_output[0]
    with pytest.raises(CapabilityUnavailableError, match=r"no MLP: layers_output\[i\] = layers_input\[i\] \+ mixers_output\[i\]"):
        mamba.mlps_output[0]
    with pytest.raises(CapabilityUnavailableError, match="no softmax attention"):
        mamba.attention_probabilities[0]
    with mamba.trace(PROMPT):
        x = mamba.layers_input[1].save()
        mixed = mamba.mixers_output[1].save()
        y = mamba.layers_output[1].save()
    torch.testing.assert_close(x + mixed, y)


def test_mamba_setting_the_mixer_changes_the_logits(mamba: StandardizedTransformer) -> None:
    with mamba.trace(PROMPT):
        clean = mamba.logits.save()
    with mamba.trace(PROMPT):
        mamba.mixers_output[0] = mamba.mixers_output[0] * 0
        zeroed = mamba.logits.save()
    assert (clean - zeroed).abs().max() > 1e-4


def test_nemotron_refuses_per_layer_with_the_kind(nemotron: StandardizedTransformer) -> None:
    kinds = nemotron.mixer_kinds
    assert kinds == ["state_space", "none", "softmax", "none"]
    with pytest.raises(CapabilityUnavailableError, match=r"attentions_output\[0\].*token mixer \('mixer'\) is a selective state-space model.*kind 'state_space', not attention; read mixers_input\[0\]"):
        nemotron.attentions_output[0]
    with pytest.raises(CapabilityUnavailableError, match=r"mixers_output\[1\].*layer 1 has no token mixer"):
        nemotron.mixers_output[1]
    with pytest.raises(CapabilityUnavailableError, match=r"mlps_input\[2\].*layer 2 has no MLP"):
        nemotron.mlps_input[2]
    assert [nemotron.mlps_output.serves(i) for i in range(4)] == [False, True, False, True]
    with nemotron.trace(PROMPT):
        attention = nemotron.attentions_output[2].save()
        mixer = nemotron.mixers_output[2].save()
    torch.testing.assert_close(attention, mixer)


def test_cache_takes_what_each_layer_has_and_decomposes(nemotron: StandardizedTransformer) -> None:
    cache = run_with_cache(nemotron, PROMPT)
    assert "mixers_output.0" in cache and "attentions_output.0" not in cache and "mlps_output.0" not in cache
    assert "attentions_output.2" in cache and "mixers_output.2" not in cache and "mlps_output.1" in cache
    parts, labels = cache.decompose_resid()
    assert labels == ["embed", "mixer.0", "mlp.1", "attention.2", "mlp.3"]
    torch.testing.assert_close(parts.sum(0), cache["layers_output.3"])


def test_helpers_refuse_an_unserved_value_before_running(nemotron: StandardizedTransformer, mamba: StandardizedTransformer) -> None:
    from nnspec.activations import collect_activations
    from nnspec.gradients import gradients

    with pytest.raises(CapabilityUnavailableError, match=r"mlps_output\[0\]"):
        run_with_cache(nemotron, PROMPT, names=["mlps_output"])
    with pytest.raises(CapabilityUnavailableError, match="no attention"):
        collect_activations(mamba, [PROMPT], value="attentions_output", progress=False)
    with pytest.raises(CapabilityUnavailableError, match=r"no token mixer"):
        gradients(nemotron, PROMPT, lambda logits: logits.sum(), names=["mixers_output"], layers=[1])


def test_per_layer_table_refuses_a_layer_with_no_branch() -> None:
    with pytest.raises(ValueError, match="neither a token mixer"):
        PerLayer(config_key="kinds", kinds={"mlp": "none"}, mlp_modules={"mlp": ""})
    with pytest.raises(ValueError, match="dotted module path"):
        PerLayer(config_key="kinds", mlp_modules={"mlp": "not a path"})


def test_aliases_follow_the_mixer_kind() -> None:
    # A path that is Mamba, attention and MLP on different layers keeps its own name; a short
    # convolution is a mixer, not "self_attn"; linear attention is attention.
    assert "mixer" not in rename_dict(adapter_by_name("nemotron_h").spec)
    assert rename_dict(adapter_by_name("lfm2").spec)["conv"] == "mixer"
    assert rename_dict(adapter_by_name("qwen3_next").spec)["linear_attn"] == "self_attn"


def test_mixer_states_are_the_cache_state_and_read_only(mamba: StandardizedTransformer, nemotron: StandardizedTransformer) -> None:
    from transformers import AutoModelForCausalLM

    from nnspec.runtime.ports import cache_of, recurrent_state

    hf = AutoModelForCausalLM.from_pretrained(checkpoint("mamba"), dtype=torch.float32).eval()
    ids = mamba.tokenizer(PROMPT, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        expected = recurrent_state(cache_of(hf(ids, use_cache=True)), 1)
    with mamba.trace(PROMPT):
        state = mamba.mixer_states[1].save()
    assert state.abs().max() > 0
    torch.testing.assert_close(state, expected)
    with pytest.raises(CapabilityUnavailableError, match="read-only"):
        with mamba.trace(PROMPT):
            mamba.mixer_states[1] = state
    with pytest.raises(CapabilityUnavailableError, match="keeps no recurrent state"):
        nemotron.mixer_states[2]  # softmax attention


def test_mixer_states_check_catches_a_port_reading_another_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    from nnspec.runtime import ports
    from nnspec.verification import conformance

    subject = conformance.load_subject("mamba", checkpoint("mamba"))
    original = ports.MixerStatePort.get

    def shifted(self: ports.MixerStatePort) -> torch.Tensor:
        self.layer = (self.layer + 1) % subject.num_layers
        try:
            return original(self)
        finally:
            self.layer = (self.layer - 1) % subject.num_layers

    monkeypatch.setattr(ports.MixerStatePort, "get", shifted)
    (result,) = conformance.run_checks(subject, ["mixer_states"])
    assert not result.passed and "mixer_states[0] vs the cache's recurrent state" in result.error
