"""Every example of the nnterp README, run with nnspec: the same code with the import root changed
(nnterp -> nnspec) and a local tiny checkpoint in place of the hub id, on several architectures,
with assertions against plain-transformers computations."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from nnspec.verification import tiny
from nnspec.runtime.registry import adapter_by_name

# 12 layers, so that the README's layer numbers (3, 5, 10) exist.
TWELVE = {"gpt2": {"n_layer": 12}, "llama": {"num_hidden_layers": 12}, "gemma2": {"num_hidden_layers": 12}, "bloom": {"n_layer": 12}}


def twelve_layer_checkpoint(name: str) -> Path:
    spec = adapter_by_name(name).spec
    config = {**spec.tiny.config, **TWELVE[name]}
    return tiny.checkpoint(spec.model_copy(update={"tiny": spec.tiny.model_copy(update={"config": config})}))


@pytest.fixture(scope="module", params=sorted(TWELVE))
def setup(request: pytest.FixtureRequest) -> tuple:
    from nnspec import StandardizedTransformer

    path = str(twelve_layer_checkpoint(request.param))
    model = StandardizedTransformer(path)  # the README: StandardizedTransformer("gpt2")
    hf = AutoModelForCausalLM.from_pretrained(path)
    return model, hf


def hf_run(model, hf, prompt: str, hooks=()):
    """Plain transformers on the same tokens, with (block index, hook) pairs installed."""
    blocks = hf.get_submodule(model.spec.modules.layers)
    handles = [blocks[i].register_forward_hook(h) for i, h in hooks]
    try:
        with torch.no_grad():
            return hf(**model.tokenizer(prompt, return_tensors="pt"), output_hidden_states=True)
    finally:
        for handle in handles:
            handle.remove()


def hidden(output):
    return output[0] if isinstance(output, tuple) else output


def test_example_loading(setup) -> None:
    model, hf = setup
    with model.trace("The Eiffel Tower is in the city of"):
        # Unified interface across all models (must follow forward pass order!)
        attention_output = model.attentions_output[3]
        mlp_output = model.mlps_output[3]
        layer_5_output = model.layers_output[5]

        # Built-in utilities
        logits = model.logits.save()

    reference = hf_run(model, hf, "The Eiffel Tower is in the city of")
    assert torch.allclose(logits, reference.logits, atol=1e-5)


def test_example_standardized_naming(setup) -> None:
    model, hf = setup
    with model.trace("Hello world"):
        # Attention and MLP components (access in forward pass order!)
        attn_out = model.attentions_output[3]
        mlp_out = model.mlps_output[3]
        layer_3_output = model.layers_output[3]

        # Layer I/O - works for GPT-2, LLaMA, Gemma, etc.
        layer_5_output = model.layers_output[5]

        # Direct interventions - add residual from layer 3 to layer 10
        model.layers_output[10] = model.layers_output[10] + layer_3_output

    # The same again, reading values for the comparison.
    with model.trace("Hello world"):
        layer_3_input = model.layers_input[3].save()
        attn_out = model.attentions_output[3].save()
        mlp_out = model.mlps_output[3].save()
        layer_3_output = model.layers_output[3].save()
        model.layers_output[10] = model.layers_output[10] + layer_3_output
        logits = model.logits.save()
    clean = hf_run(model, hf, "Hello world")
    assert torch.allclose(layer_3_output, clean.hidden_states[4], atol=1e-5)
    assert torch.allclose(layer_3_input + attn_out + mlp_out, layer_3_output, atol=1e-5)
    add = clean.hidden_states[4]
    edited = hf_run(model, hf, "Hello world", [(10, lambda m, a, o: (hidden(o) + add,) + o[1:] if isinstance(o, tuple) else o + add)])
    assert torch.allclose(logits, edited.logits, atol=1e-5) and not torch.allclose(logits, clean.logits, atol=1e-3)


def test_example_logit_lens(setup) -> None:
    model, hf = setup
    from nnspec.interventions import logit_lens, patchscope_lens, steer

    # Logit lens: decode hidden states at each layer
    layer_probs = logit_lens(model, ["The capital of France is"])
    # Shape: (batch, layers, vocab_size)

    assert layer_probs.shape == (1, model.num_layers, model.vocab_size)
    reference = hf_run(model, hf, "The capital of France is")
    expected = [model.project_on_vocab(h[:, -1]) for h in reference.hidden_states[1:-1]] + [reference.logits[:, -1]]
    assert torch.allclose(layer_probs, torch.stack(expected, 1).softmax(-1), atol=1e-5)


def test_example_patchscope(setup) -> None:
    model, hf = setup
    from nnspec.interventions import TargetPrompt, patchscope_lens

    # Patchscope: patch hidden states across prompts
    from nnspec.interventions import TargetPrompt
    target = TargetPrompt("The capital of France is", index_to_patch=-1)
    patchscope_probs = patchscope_lens(
        model,
        source_prompts=["The capital of England is"],
        target_patch_prompts=target,
        layer_to_patch=10
    )

    assert patchscope_probs.shape == (1, 1, model.vocab_size)
    source = hf_run(model, hf, "The capital of England is").hidden_states[11][:, -1]

    def patch(module, args, output):
        h = hidden(output).clone()
        h[:, -1] = source
        return (h,) + output[1:] if isinstance(output, tuple) else h

    expected = hf_run(model, hf, "The capital of France is", [(10, patch)]).logits[:, -1].softmax(-1)
    assert torch.allclose(patchscope_probs[:, 0], expected, atol=1e-5)


def test_example_steering(setup) -> None:
    model, hf = setup
    # Activation steering
    import torch
    with model.trace("Hello, how are you?"):
        steering_vector = torch.randn(model.hidden_size)
        model.steer(layers=[5, 10], steering_vector=steering_vector, factor=1.5)

    vector = torch.randn(model.hidden_size, generator=torch.Generator().manual_seed(3))
    with model.trace("Hello, how are you?"):
        model.steer(layers=[5, 10], steering_vector=vector, factor=1.5)
        logits = model.logits.save()
    add = lambda m, a, o: (hidden(o) + 1.5 * vector,) + o[1:] if isinstance(o, tuple) else o + 1.5 * vector  # noqa: E731
    expected = hf_run(model, hf, "Hello, how are you?", [(5, add), (10, add)]).logits
    assert torch.allclose(logits, expected, atol=1e-5)


def test_example_prompt_tracking(setup) -> None:
    model, hf = setup
    from nnspec.interventions import logit_lens
    from nnspec.prompt_utils import Prompt, run_prompts

    prompts = [
        Prompt.from_strings(
            "The capital of France is",
            {"target": "Paris", "other": ["London", "Madrid"]},
            model.tokenizer
        )
    ]

    # Get probabilities for all target categories
    results = run_prompts(model, prompts)
    # Returns: {"target": tensor([0.85]), "other": tensor([0.12])}

    # Combine with interventions
    results_by_layer = run_prompts(model, prompts, get_probs_func=logit_lens)
    # Returns probabilities across all layers

    probs = hf_run(model, hf, "The capital of France is").logits[0, -1].softmax(-1)
    for category, tokens in prompts[0].target_tokens.items():
        assert results[category].shape == (1,)
        assert torch.allclose(results[category], probs[tokens].sum().unsqueeze(0), atol=1e-6)
        assert results_by_layer[category].shape == (1, model.num_layers)
        assert torch.allclose(results_by_layer[category][:, -1], results[category], atol=1e-6)
    assert len(prompts[0].target_tokens["other"]) >= 2
