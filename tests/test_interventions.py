"""Interventions, prompt tracking, activation collection and plots: values against plain
transformers, the batched patchscope against one trace per layer, and bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from nnspec import LayerIndexError, ShapeMismatchError, StandardizedTransformer
from nnspec.interventions import (
    TargetPrompt,
    TargetPromptBatch,
    logit_lens,
    patchscope_generate,
    patchscope_lens,
    repeat_prompt,
)
from nnspec.nnsight_utils import collect_activations, collect_token_activations_batched, get_token_activations
from nnspec.prompt_utils import Prompt, TargetTokenizationError, get_first_tokens, run_prompts
from nnspec.verification import tiny

from .conftest import checkpoint

SOURCES = ["The capital of England is", "Hello world, how are you?"]


@pytest.fixture(scope="module", params=["gpt2", "llama", "falcon"])
def pair(request: pytest.FixtureRequest) -> tuple:
    path = checkpoint(request.param)
    return StandardizedTransformer(path), AutoModelForCausalLM.from_pretrained(path)


def per_layer_patchscope(model, sources, target: TargetPrompt, layers):
    """The peers' method: one trace per layer, one target row per source."""
    states = {}
    with model.trace(sources):
        for layer in sorted(layers):
            states[layer] = model.layers_output[layer][:, -1].save()
    out = []
    for layer in layers:
        with model.trace([target.prompt] * len(sources)):
            model.layers_output[layer][:, target.index_to_patch] = states[layer]
            probs = model.next_token_probs.save()
        out.append(probs)
    return torch.stack(out, 1)


def test_patchscope_batched_equals_one_trace_per_layer(pair) -> None:
    model, _ = pair
    target = TargetPrompt("king king\n1135 1135\nhello hello\n?", -1)
    layers = [2, 0, 1]
    batched = patchscope_lens(model, source_prompts=SOURCES, target_patch_prompts=target, layers=layers)
    expected = per_layer_patchscope(model, SOURCES, target, layers)
    assert batched.shape == (2, 3, model.vocab_size)
    assert torch.allclose(batched, expected, atol=1e-6)
    chunked = patchscope_lens(model, source_prompts=SOURCES, target_patch_prompts=target, layers=layers, batch_size=2)
    assert torch.allclose(chunked, batched, atol=1e-6)
    default_target = patchscope_lens(model, source_prompts=SOURCES, layers=layers)
    assert torch.allclose(default_target, expected, atol=1e-6), "repeat_prompt() is the default target"


def test_patchscope_latents_and_per_source_targets(pair) -> None:
    model, _ = pair
    latents = torch.randn(2, 2, model.hidden_size, generator=torch.Generator().manual_seed(0))
    targets = [TargetPrompt("The capital of France is", 2), TargetPrompt("Hello", -1)]
    probs = patchscope_lens(model, target_patch_prompts=targets, layers=[0, 2], latents=latents)
    for s, target in enumerate(targets):
        for k, layer in enumerate([0, 2]):
            with model.trace(target.prompt):
                model.layers_output[layer][:, target.index_to_patch] = latents[k, s]
                one = model.next_token_probs.save()
            assert torch.allclose(probs[s, k], one[0], atol=1e-6)


def test_patchscope_generate_any_layer_list(pair) -> None:
    model, _ = pair
    target = repeat_prompt()
    out = patchscope_generate(model, SOURCES, target, max_length=3, layers=[2, 0])
    assert sorted(out) == [0, 2]
    states = []
    with model.trace(SOURCES):
        states.append(model.layers_output[2][:, -1].save())
    with model.generate([target.prompt] * 2, max_new_tokens=3) as tracer:
        model.layers_output[2][:, -1] = states[0]
        ids = tracer.result.save()
    assert torch.equal(out[2], ids)
    length = len(model.tokenizer(target.prompt).input_ids)
    assert out[0].shape == (2, length + 3)


def test_logit_lens_layers_subset_matches_full(pair) -> None:
    model, _ = pair
    full = logit_lens(model, SOURCES)
    assert torch.allclose(logit_lens(model, SOURCES, layers=[1]), full[:, 1:2])
    assert torch.allclose(full.sum(-1), torch.ones(2, model.num_layers), atol=1e-5)


def test_collect_activations_matches_each_prompt_alone(pair) -> None:
    model, hf = pair
    prompts = ["The capital of France is", "Hi", "Once upon a time there was a small model"]
    got = collect_activations(model, prompts * 2, layers=[0, 2], positions=[0, -1], batch_size=4, progress=False)
    assert got.shape == (2, 6, 2, model.hidden_size)
    for n, prompt in enumerate(prompts * 2):
        with torch.no_grad():
            hs = hf(**model.tokenizer(prompt, return_tensors="pt"), output_hidden_states=True).hidden_states
        for k, layer in enumerate([0, 2]):
            reference = hs[layer + 1][0] if layer + 1 < model.num_layers else None
            if reference is None:
                continue
            assert torch.allclose(got[k, n, 0], reference[0], atol=1e-5)
            assert torch.allclose(got[k, n, 1], reference[-1], atol=1e-5)
    last = get_token_activations(model, prompts, layers=[1])
    assert last.shape == (1, 3, model.hidden_size)
    assert torch.allclose(last, collect_activations(model, prompts, layers=[1], progress=False, batch_size=1), atol=1e-5)
    batched = collect_token_activations_batched(model, prompts, batch_size=2, layers=[1])
    assert torch.allclose(batched, last, atol=1e-6)


def test_collect_from_a_dataset_column_and_generator(pair) -> None:
    model, _ = pair
    rows = [{"text": "Hello world"}, {"text": "The quick brown fox"}, {"text": "Hi"}]
    from_rows = collect_activations(model, rows, layers=[1], column="text", batch_size=2, progress=False)
    from_gen = collect_activations(model, (r["text"] for r in rows), layers=[1], batch_size=3, progress=False)
    assert from_rows.shape == (1, 3, model.hidden_size) and torch.allclose(from_rows, from_gen, atol=1e-6)
    values = collect_activations(model, ["Hi there"], layers=[0], value="mlps_output", progress=False)
    with model.trace("Hi there"):
        mlp = model.mlps_output[0][:, -1].save()
    assert torch.allclose(values[0], mlp)


@pytest.mark.parametrize("kind", ["byte_level", "metaspace"])
def test_first_tokens_with_and_without_space(kind: str) -> None:
    tok = tiny.tokenizer(kind)
    tokens = get_first_tokens("Paris", tok)
    decoded = [tok.decode([t]) for t in tokens]
    assert len(tokens) == 2
    assert "Paris".startswith(decoded[0].strip()) and not decoded[0].startswith(" ")
    assert decoded[1].startswith(" ") or tok.convert_ids_to_tokens(tokens[1]).startswith(("Ġ", "▁"))
    assert get_first_tokens(["Paris", "Paris"], tok) == tokens


def test_prompt_collisions_and_target_probs() -> None:
    tok = tiny.tokenizer("byte_level")
    prompt = Prompt.from_strings("x", ["Paris", "London"], tok)
    assert list(prompt.target_tokens) == ["target"] and prompt.has_no_collisions()
    clash = Prompt.from_strings("x", {"a": "Paris", "b": ["Paris", "Rome"]}, tok)
    assert not clash.has_no_collisions() and clash.has_no_collisions(ignore_targets="a")
    probs = torch.rand(2, 3, len(tok))
    got = clash.get_target_probs(probs)
    assert got["a"].shape == (2, 3) and torch.allclose(got["a"], probs[:, :, clash.target_tokens["a"]].sum(-1))
    assert clash.get_target_probs(probs, layer=1)["b"].shape == (2,)


def test_bad_input(pair) -> None:
    model, _ = pair
    with pytest.raises(ValueError, match="prompts is empty"):
        logit_lens(model, [])
    with pytest.raises(ValueError, match="run_prompts: prompts is empty"):
        run_prompts(model, [])
    with pytest.raises(ValueError, match="prompts is empty"):
        collect_activations(model, [], progress=False)
    with pytest.raises(TargetTokenizationError, match="'' tokenizes to nothing"):
        Prompt.from_strings("The capital of France is", {"target": ""}, model.tokenizer)
    with pytest.raises(TargetTokenizationError, match="tokenizes to nothing"):
        Prompt.from_strings("The capital of France is", ["Paris", "  "], model)
    with pytest.raises(IndexError, match=r"index_to_patch=40 is out of range for prompt 0, which has \d+ tokens"):
        patchscope_lens(model, source_prompts=["Hi"], target_patch_prompts=TargetPrompt("Hello", 40), layers=[0])
    with pytest.raises(LayerIndexError, match=r"layers\[99\]"):
        patchscope_lens(model, source_prompts=["Hi"], layers=[0, 99])
    with pytest.raises(LayerIndexError):
        logit_lens(model, ["Hi"], layers=[-9])
    with pytest.raises(ShapeMismatchError, match=r"latents: expected \(num_layers=2, num_sources, hidden=64\), got \(1, 1, 64\)"):
        patchscope_lens(model, latents=torch.zeros(1, 1, 64), layers=[0, 1])
    with pytest.raises(ValueError, match="exactly one of source_prompts= and latents="):
        patchscope_lens(model, source_prompts=["Hi"], latents=torch.zeros(1, 1, 64), layers=[0])
    with pytest.raises(ValueError, match="2 target prompts for 1 sources"):
        patchscope_lens(model, source_prompts=["Hi"], target_patch_prompts=[repeat_prompt(), repeat_prompt()], layers=[0])
    with pytest.raises(ValueError, match="layers= and layer_to_patch= disagree"):
        patchscope_lens(model, source_prompts=["Hi"], layers=[0], layer_to_patch=1)
    prompts = [Prompt.from_strings("The capital of France is", {"target": "Paris"}, model.tokenizer)]
    with pytest.raises(KeyError, match="unknown category 'taget'.*did you mean 'target'"):
        run_prompts(model, prompts, categories=["taget"])
    mixed = prompts + [Prompt.from_strings("Hi", {"other": "Rome"}, model.tokenizer)]
    with pytest.raises(ValueError, match=r"prompts\[1\] tracks categories"):
        run_prompts(model, mixed)
    with pytest.raises(ValueError, match="not collectable.*did you mean 'mlps_output'"):
        collect_activations(model, ["Hi"], value="mlp_output", progress=False)
    with pytest.raises(TypeError, match="needs an index to patch"):
        TargetPromptBatch.auto("Hello", 1)


def test_run_prompts_batches_and_progress(pair) -> None:
    model, hf = pair
    texts = ["The capital of France is", "Hi", "Hello world, how are you?"]
    prompts = [Prompt.from_strings(t, {"target": "Paris", "other": "is"}, model.tokenizer) for t in texts]
    calls = []

    def bar(iterable, **kwargs):
        calls.append(kwargs)
        return iterable

    results = run_prompts(model, prompts, batch_size=2, tqdm=bar)
    assert calls and results["target"].shape == (3,)
    for n, text in enumerate(texts):
        with torch.no_grad():
            probs = hf(**model.tokenizer(text, return_tensors="pt")).logits[0, -1].softmax(-1)
        assert torch.allclose(results["other"][n], probs[prompts[n].target_tokens["other"]].sum(), atol=1e-6)


def test_plots_png_and_html(pair, tmp_path: Path) -> None:
    model, _ = pair
    from nnspec.display import plot_category_probs, plot_logit_lens

    plot_logit_lens(model, "The capital of France is", path=tmp_path / "lens.png", html_path=tmp_path / "lens.html")
    assert (tmp_path / "lens.png").read_bytes()[:4] == b"\x89PNG"
    page = (tmp_path / "lens.html").read_text()
    assert page.count("<tr>") == model.num_layers + 1 and "title=" in page
    prompts = [Prompt.from_strings("The capital of France is", {"target": "Paris", "other": "Rome"}, model.tokenizer)]
    plot_category_probs(run_prompts(model, prompts, get_probs_func=logit_lens), tmp_path / "cats.png")
    plot_category_probs(run_prompts(model, prompts), tmp_path / "bars.png")
    assert (tmp_path / "cats.png").stat().st_size > 1000 and (tmp_path / "bars.png").stat().st_size > 1000


@pytest.mark.long
def test_lens_cli_runs_offline(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "nnspec", "lens", "The capital of France is", "--plot", str(tmp_path / "l.png")],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "layer   2:" in result.stdout and (tmp_path / "l.png").exists()
    result = subprocess.run([sys.executable, "-m", "nnspec", "lens", str(checkpoint("llama")), "Hello world"], capture_output=True, text=True)
    assert result.returncode == 0 and "(llama, 3 layers)" in result.stdout


@pytest.mark.parametrize("spec_name", __import__("nnspec.runtime.registry", fromlist=["x"]).spec_names())
def test_patchscope_on_every_spec(spec_name: str) -> None:
    """The shared-prefix batched patchscope equals one trace per layer on every architecture,
    with targets of different lengths (left padding) and patch positions."""
    model = StandardizedTransformer(checkpoint(spec_name))
    layers = list(range(model.num_layers))
    targets = [TargetPrompt("king king\n1135 1135\nhello hello\n?", -1), TargetPrompt("The capital of France is", 3)]
    latents = torch.randn(len(layers), 2, *model.residual_shape, generator=torch.Generator().manual_seed(1))
    if "padding" in model.limits:  # targets of different lengths need a padded batch: refused, with the reason
        from nnspec.errors import CapabilityUnavailableError

        with pytest.raises(CapabilityUnavailableError, match="padding is not available"):
            patchscope_lens(model, target_patch_prompts=targets, layers=layers, latents=latents)
        return
    batched = patchscope_lens(model, target_patch_prompts=targets, layers=layers, latents=latents)
    # Some models compute a prompt slightly differently inside a padded batch (PaliGemma's prefix
    # attention): the batched lens may differ from one trace by as much as the model itself does.
    with model.trace([t.prompt for t in targets]):
        together = model.next_token_probs.save()
    alone = []
    for target in targets:
        with model.trace(target.prompt):
            alone.append(model.next_token_probs.save())
    slack = max(float((together[i] - alone[i][0]).abs().max()) for i in range(len(targets)))
    for s, target in enumerate(targets):
        for layer in layers:
            with model.trace(target.prompt):
                model.layers_output[layer][:, target.index_to_patch] = latents[layer, s]
                one = model.next_token_probs.save()
            assert torch.allclose(batched[s, layer], one[0], atol=1e-6 + 2 * slack), (
                s, layer, float((batched[s, layer] - one[0]).abs().max()), slack)
