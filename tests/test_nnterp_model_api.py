"""nnterp's StandardizedTransformer API on nnspec: constructor order and flags, tokenizer_kwargs,
steer's token_positions / batch_index, skip_layers' layer_returns_tuple, the attention
probabilities switches, module-output accessors and nnterp's renamed module tree.

Ground truth comes from plain transformers (the same checkpoint loaded with
``AutoModelForCausalLM`` and driven with forward hooks), never from nnspec itself.
"""

from __future__ import annotations

import inspect
import os
import warnings

import pytest
import torch
from transformers import AutoModelForCausalLM

import nnspec.interventions as nnspec_interventions
from nnspec import StandardizedTransformer
from nnspec.errors import (
    CapabilityUnavailableError,
    InputError,
    InputTypeError,
    LayerIndexError,
    ShapeMismatchError,
)
from tests.conftest import checkpoint

PROMPTS = ["Hello world", "The quick brown fox jumps over"]


@pytest.fixture(scope="module")
def llama():
    return StandardizedTransformer(checkpoint("llama"), enable_attention_probs=True)


@pytest.fixture(scope="module")
def hf_llama():
    return AutoModelForCausalLM.from_pretrained(checkpoint("llama"), attn_implementation="eager").eval()


def _hf_logits(hf, prompt, tokenizer, hooks=()):
    handles = [module.register_forward_hook(hook) for module, hook in hooks]
    try:
        with torch.no_grad():
            return hf(**tokenizer(prompt, return_tensors="pt")).logits
    finally:
        for handle in handles:
            handle.remove()


# -- constructor -------------------------------------------------------------------------------


def test_constructor_takes_nnterps_positional_order():
    parameters = list(inspect.signature(StandardizedTransformer.__init__).parameters.values())[1:]
    positional = [p.name for p in parameters if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert positional == [
        "model", "trust_remote_code", "check_renaming", "remote", "allow_dispatch", "enable_attention_probs",
        "check_attn_probs_with_trace", "allow_multimodal", "rename_config",
    ]
    assert {p.name for p in parameters if p.kind is p.KEYWORD_ONLY} == {"spec", "tokenizer", "rename", "allow_unverified"}
    # Positionally, as nnterp's users write it: enable_attention_probs is the sixth argument.
    model = StandardizedTransformer(checkpoint("gpt2"), False, True, False, True, True)
    assert model.attention_implementation == "eager"


@pytest.mark.parametrize("flag", ["remote", "allow_multimodal", "check_renaming", "allow_dispatch", "enable_attention_probs"])
def test_constructor_flags_must_be_bools(flag):
    with pytest.raises(InputTypeError, match=flag):
        StandardizedTransformer(checkpoint("gpt2"), **{flag: "yes"})


def test_remote_is_refused_with_the_reason():
    with pytest.raises(CapabilityUnavailableError, match="remote=True"):
        StandardizedTransformer(checkpoint("gpt2"), remote=True)


def test_allow_multimodal_either_value_loads_a_vision_language_wrapper():
    loaded = [StandardizedTransformer(checkpoint("llava"), allow_multimodal=flag) for flag in (False, True)]
    assert loaded[0].num_layers == loaded[1].num_layers > 0
    assert loaded[0].model.layers[0]._module is loaded[0].layers[0]._module


# -- tokenizer_kwargs --------------------------------------------------------------------------


def _right_padded_check(model, hf):
    """padding_side='right' stays on the tokenizer; traces still pad on the left, so the last
    column is every prompt's last token (checked against each prompt run alone in HF)."""
    assert model.tokenizer.padding_side == "right"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with model.trace(PROMPTS):
            probs = model.attention_probabilities[0].save()
            logits = model.logits.save()
    assert any("pads its batches on the left" in str(w.message) for w in caught)
    assert model.tokenizer.padding_side == "right"  # also after the weights were loaded
    assert probs.shape == (2, model.num_heads, logits.shape[1], logits.shape[1])
    for row, prompt in enumerate(PROMPTS):
        expected = _hf_logits(hf, prompt, model.tokenizer)[0, -1]
        torch.testing.assert_close(logits[row, -1], expected, atol=1e-4, rtol=1e-4)


def test_tokenizer_kwargs_with_a_checkpoint_folder(hf_llama):
    model = StandardizedTransformer(checkpoint("llama"), enable_attention_probs=True,
                                    tokenizer_kwargs=dict(padding_side="right"))
    _right_padded_check(model, hf_llama)


def test_tokenizer_kwargs_with_a_loaded_model(hf_llama):
    loaded = AutoModelForCausalLM.from_pretrained(checkpoint("llama"), attn_implementation="eager")
    model = StandardizedTransformer(loaded, enable_attention_probs=True, tokenizer_kwargs=dict(padding_side="right"))
    _right_padded_check(model, hf_llama)


def test_tokenizer_kwargs_with_a_hub_id_like_name(hf_llama, tmp_path, monkeypatch):
    (tmp_path / "tiny-org").mkdir()
    os.symlink(checkpoint("llama"), tmp_path / "tiny-org" / "llama")
    monkeypatch.chdir(tmp_path)
    model = StandardizedTransformer("tiny-org/llama", enable_attention_probs=True,
                                    tokenizer_kwargs=dict(padding_side="right"))
    _right_padded_check(model, hf_llama)


def test_tokenizer_kwargs_wrong_on_purpose(llama):
    with pytest.raises(InputTypeError, match="tokenizer_kwargs"):
        StandardizedTransformer(checkpoint("gpt2"), tokenizer_kwargs="right")
    with pytest.raises(InputError, match="padding_side"):
        StandardizedTransformer(checkpoint("gpt2"), tokenizer_kwargs=dict(padding_side="middle"))
    with pytest.raises(InputError, match="tokenizer= was passed"):
        StandardizedTransformer(checkpoint("llama"), tokenizer=llama.tokenizer, tokenizer_kwargs=dict(padding_side="right"))


# -- steer -------------------------------------------------------------------------------------


def _steer_hook(vector, rows, cols):
    def hook(module, args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        hidden = hidden.clone()
        for r in rows:
            hidden[r, cols] += vector
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    return hook


def test_steer_token_positions_and_batch_index_match_hf(llama, hf_llama):
    vector = torch.randn(llama.hidden_size)
    for kwargs in (dict(batch_index=1, token_positions=[0, -1]), dict(batch_index=torch.tensor([1]), token_positions=torch.tensor([0, -1]))):
        with torch.no_grad(), llama.trace(PROMPTS):
            llama.steer(layers=[1, 0], steering_vector=vector, factor=2.0, **kwargs)
            logits = llama.logits.save()
        # Row 0 untouched: the prompt alone in HF. Row 1 (the longer prompt, no padding): steered
        # at its first and last tokens in both layers.
        torch.testing.assert_close(logits[0, -1], _hf_logits(hf_llama, PROMPTS[0], llama.tokenizer)[0, -1], atol=1e-4, rtol=1e-4)
        length = len(llama.tokenizer(PROMPTS[1])["input_ids"])
        hooks = [(hf_llama.model.layers[i], _steer_hook(2.0 * vector, [0], [0, length - 1])) for i in (0, 1)]
        torch.testing.assert_close(logits[1], _hf_logits(hf_llama, PROMPTS[1], llama.tokenizer, hooks)[0], atol=1e-4, rtol=1e-4)


def test_steer_token_positions_count_each_prompts_own_tokens(llama, hf_llama):
    vector = torch.randn(llama.hidden_size)
    with torch.no_grad(), llama.trace(PROMPTS):
        llama.steer(0, vector, token_positions=0)
        logits = llama.logits.save()
    # Row 0 is left-padded: its own first token, not the batch's first column, is steered.
    hooks = [(hf_llama.model.layers[0], _steer_hook(vector, [0], [0]))]
    expected = _hf_logits(hf_llama, PROMPTS[0], llama.tokenizer, hooks)[0, -1]
    torch.testing.assert_close(logits[0, -1], expected, atol=1e-4, rtol=1e-4)


def test_steer_positions_is_deprecated_with_one_warning_at_the_caller(llama):
    vector = torch.randn(llama.hidden_size)
    for steer in (llama.steer, lambda **kw: nnspec_interventions.steer(llama, **kw)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with torch.no_grad(), llama.trace(PROMPTS[0]):
                steer(layers=0, steering_vector=vector, positions=0)
                steered = llama.logits.save()
        deprecations = [w for w in caught if issubclass(w.category, DeprecationWarning)]
        assert len(deprecations) == 1
        assert "positions" in str(deprecations[0].message)
        assert deprecations[0].filename == __file__
        with torch.no_grad(), llama.trace(PROMPTS[0]):
            llama.steer(layers=0, steering_vector=vector, token_positions=0)
            same = llama.logits.save()
        torch.testing.assert_close(steered, same)


def test_steer_wrong_on_purpose(llama):
    vector = torch.randn(llama.hidden_size)
    assert issubclass(InputError, ValueError)
    for steer in (llama.steer, lambda **kw: nnspec_interventions.steer(llama, **kw)):
        with pytest.raises(ValueError, match="Cannot specify both"):
            with llama.trace(PROMPTS[0]):
                steer(layers=0, steering_vector=vector, positions=0, token_positions=0)
    block = llama._module.get_submodule(llama.spec.modules.layers)[0]
    calls = []
    handle = block.register_forward_hook(lambda *a: calls.append(1))
    try:
        for kwargs, error, text in (
            (dict(batch_index=2), InputError, "batch_index=2"),
            (dict(batch_index=-3), InputError, "batch_index=-3"),
            (dict(token_positions=40), IndexError, "token_positions"),
            (dict(token_positions=1.5), InputTypeError, "token_positions"),
            (dict(batch_index=torch.tensor([0.0])), InputTypeError, "batch_index"),
            (dict(batch_index=[]), InputError, "batch_index"),
            (dict(token_positions=[True]), InputTypeError, "token_positions"),
            (dict(factor="x"), InputTypeError, "factor"),
        ):
            with pytest.raises(error, match=text):
                with llama.trace(PROMPTS):
                    llama.steer(layers=1, steering_vector=vector, **kwargs)
        assert calls == []  # refused before the model ran a block
    finally:
        handle.remove()
    with pytest.raises(LayerIndexError):
        with llama.trace(PROMPTS[0]):
            llama.steer(layers=[9], steering_vector=vector)


# -- skip_layers, layer output type ------------------------------------------------------------


@pytest.mark.parametrize("name", ["gpt2", "opt", "bloom", "llama", "gemma3_text"])
def test_layer_output_type_and_skip_layers_flag(name):
    model = StandardizedTransformer(checkpoint(name))
    hf = AutoModelForCausalLM.from_pretrained(checkpoint(name))
    seen = []
    block = hf.get_submodule(model.spec.modules.layers)[0]
    handle = block.register_forward_hook(lambda m, a, out: seen.append(isinstance(out, tuple)))
    _hf_logits(hf, "Hello", model.tokenizer)
    handle.remove()
    assert model.detect_layer_output_type() is seen[0]
    assert model.layers_output.returns_tuple is seen[0]
    with torch.no_grad(), model.trace("Hello world"):
        model.skip_layers(0, 1, layer_returns_tuple=seen[0])
    with pytest.raises(InputError, match="layer_returns_tuple"):
        with model.trace("Hello world"):
            model.skip_layers(0, 1, layer_returns_tuple=not seen[0])
    with pytest.raises(InputTypeError, match="layer_returns_tuple"):
        with model.trace("Hello world"):
            model.skip_layers(0, 1, layer_returns_tuple="yes")


# -- tokenizer helpers --------------------------------------------------------------------------


def test_probs_to_dict(llama):
    ids, probs = torch.tensor([5, 7, 9]), torch.tensor([0.5, 0.25, 0.125])
    expected = dict(zip(llama.tokenizer.convert_ids_to_tokens([5, 7, 9]), [0.5, 0.25, 0.125]))
    assert llama.probs_to_dict(ids, probs) == expected
    with pytest.raises(ShapeMismatchError):
        llama.probs_to_dict(ids, probs[:2])
    with pytest.raises(ShapeMismatchError):
        llama.probs_to_dict(ids.view(1, 3), probs.view(1, 3))
    with pytest.raises(InputTypeError):
        llama.probs_to_dict([1.5], [0.5])
    with pytest.raises(InputError, match="outside"):
        llama.probs_to_dict([10**6], [0.5])


def test_add_prefix_false_tokenizer():
    model = StandardizedTransformer(checkpoint("gpt2"))
    tokenizer = model.add_prefix_false_tokenizer
    assert tokenizer is model.add_prefix_false_tokenizer  # loaded once
    assert tokenizer is not model.tokenizer
    assert tokenizer("Paris")["input_ids"] == model.tokenizer("Paris", add_special_tokens=True)["input_ids"]
    model.__dict__.pop("_prefix_false_tokenizer")
    model.tokenizer.name_or_path = ""
    model._module.config.name_or_path = ""
    with pytest.raises(InputError, match="name_or_path"):
        model.add_prefix_false_tokenizer


# -- attention probabilities switches -----------------------------------------------------------


def test_attention_probabilities_switches(capsys):
    model = StandardizedTransformer(checkpoint("gpt2"), enable_attention_probs=True)
    assert model.attention_probabilities.enabled and model.attn_probs_available
    with pytest.raises(InputError, match="allow_dispatch"):
        model.attention_probabilities.check_source(allow_dispatch=False)
    model.attention_probabilities.check_source()
    model.attention_probabilities.check_source(layer=1, use_trace=False)
    model.attention_probabilities.print_source(layer=1)
    printed = capsys.readouterr().out
    # The operation the spec names, marked in the attention code.
    assert "nn_functional_dropout" in printed and "--> " in printed and "def eager_attention_forward" in printed
    with pytest.raises(LayerIndexError):
        model.attention_probabilities.check_source(layer=99)
    with pytest.raises(InputTypeError, match="use_trace"):
        model.attention_probabilities.check_source(use_trace="no")
    with pytest.raises(InputTypeError, match="allow_dispatch"):
        model.attention_probabilities.print_source(allow_dispatch=1)
    model.attention_probabilities.disable()
    assert not model.attention_probabilities.enabled and not model.attn_probs_available
    with pytest.raises(CapabilityUnavailableError, match="disable"):
        with model.trace("Hello"):
            model.attention_probabilities[0].save()
    # Disabled probabilities leave the other attention internals alone.
    with model.trace("Hello"):
        queries = model.queries[0].save()
    assert queries.shape[1] == model.num_heads


def test_attention_probabilities_off_without_eager():
    model = StandardizedTransformer(checkpoint("gpt2"), attn_implementation="sdpa")
    assert not model.attention_probabilities.enabled and not model.attn_probs_available
    with pytest.raises(CapabilityUnavailableError, match="eager"):
        model.attention_probabilities.check_source()


# -- module outputs -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["gpt2", "opt", "bloom", "llama", "gemma3_text"])
def test_module_outputs_match_hf_modules(name):
    model = StandardizedTransformer(checkpoint(name))
    hf = AutoModelForCausalLM.from_pretrained(checkpoint(name))
    spec = model.spec
    blocks = hf.get_submodule(spec.modules.layers)
    branches = [("attentions_module_output", spec.attention.module)]
    if spec.mlp.module:
        branches.append(("mlps_module_output", spec.mlp.module))
    else:
        with pytest.raises(CapabilityUnavailableError):
            with model.trace("Hello"):
                model.mlps_module_output[0].save()
    for accessor, path in branches:
        seen = []
        handle = blocks[1].get_submodule(path).register_forward_hook(
            lambda m, a, out: seen.append(out[0] if isinstance(out, tuple) else out)  # noqa: B023 (removed in this iteration)
        )
        expected = _hf_logits(hf, "Hello world", model.tokenizer)
        handle.remove()
        with torch.no_grad(), model.trace("Hello world"):
            read = getattr(model, accessor)[1].save()
        torch.testing.assert_close(read, seen[0], atol=1e-5, rtol=1e-5)
        # Setting: doubling the module's output, as a hook doing the same in HF.
        def double(m, a, out):
            return (out[0] * 2, *out[1:]) if isinstance(out, tuple) else out * 2

        handle = blocks[1].get_submodule(path).register_forward_hook(double)
        expected = _hf_logits(hf, "Hello world", model.tokenizer)
        handle.remove()
        with torch.no_grad(), model.trace("Hello world"):
            value = getattr(model, accessor)[1]
            getattr(model, accessor)[1] = value * 2
            logits = model.logits.save()
        torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)
        with pytest.raises(ShapeMismatchError):
            with model.trace("Hello world"):
                getattr(model, accessor)[1] = torch.zeros(3)


# -- nnterp's renamed tree ----------------------------------------------------------------------

NATIVE = {  # plain transformers paths, written out here as the ground truth
    "gpt2": ("transformer.h", "attn", "mlp", "transformer.ln_f", "transformer.wte"),
    "opt": ("model.decoder.layers", "self_attn", None, "model.decoder.final_layer_norm", "model.decoder.embed_tokens"),
    "bloom": ("transformer.h", "self_attention", "mlp", "transformer.ln_f", "transformer.word_embeddings"),
    "llama": ("model.layers", "self_attn", "mlp", "model.norm", "model.embed_tokens"),
    "gemma3_text": ("model.layers", "self_attn", "mlp", "model.norm", "model.embed_tokens"),
    "llava": ("model.language_model.layers", "self_attn", "mlp", "model.language_model.norm",
              "model.language_model.embed_tokens"),
}


@pytest.mark.parametrize("name", sorted(NATIVE))
def test_nnterp_module_tree(name):
    layers, attn, mlp, norm, embed = NATIVE[name]
    model = StandardizedTransformer(checkpoint(name))
    hf = model._module
    for i in range(model.num_layers):
        block = hf.get_submodule(layers)[i]
        assert model.model.layers[i]._module is block
        assert model.layers[i]._module is block  # nnspec's own names keep working
        assert model.model.layers[i].self_attn._module is block.get_submodule(attn)
        assert model.attentions[i]._module is block.get_submodule(attn)
        if mlp:
            assert model.model.layers[i].mlp._module is block.get_submodule(mlp)
        else:
            with pytest.raises(AttributeError, match="no 'mlp' module.*mlps_input"):
                model.model.layers[i].mlp
    assert model.model.ln_final._module is hf.get_submodule(norm) is model.ln_final._module
    assert model.model.embed_tokens._module is hf.get_submodule(embed) is model.embed_tokens._module
    assert model.lm_head._module is hf.get_output_embeddings()


def test_nnterp_tree_in_a_trace_and_the_cache():
    model = StandardizedTransformer(checkpoint("gpt2"))
    with torch.no_grad(), model.trace("Hello world") as tracer:
        cache = tracer.cache(modules=[model.layers[0]]).save()
        attn = model.model.layers[0].self_attn.input.save()
        direct = model.model.layers[0].output.save()
        standard = model.layers_output[0].save()
    assert not model.layers_output.returns_tuple  # GPT-2's block returns its hidden state
    torch.testing.assert_close(direct, standard)
    assert attn.shape == standard.shape
    for key in ("model.layers.0", "model.model.layers.0", "model.transformer.h.0"):
        torch.testing.assert_close(cache[key].output, standard)
    torch.testing.assert_close(cache.model.model.layers[0].output, standard)
