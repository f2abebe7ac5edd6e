"""Research API: the standard activation cache, gradients and attribution patching against plain
transformers autograd and finite differences, attention bad input, and ``remote=`` pass-through."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from nnspec import CapabilityUnavailableError, StandardizedTransformer
from nnspec.gradients import attribution_patching, gradients
from nnspec.runtime.batching import positions_from_mask

from .conftest import checkpoint

PROMPTS = ["The capital of France is", "Hi there"]
SPECS = ["gpt2", "bloom", "falcon", "opt", "gemma2"]


@pytest.fixture(scope="module", params=SPECS)
def pair(request: pytest.FixtureRequest) -> tuple:
    path = checkpoint(request.param)
    return StandardizedTransformer(path, enable_attention_probs=True), AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager")


def hf_forward(model, hf, prompts, grad_of=None):
    """Plain transformers with position ids from the mask; optionally keeps block outputs' grads."""
    encoded = model.tokenizer(prompts, return_tensors="pt", padding=True)
    positions = positions_from_mask(encoded["attention_mask"])
    kept, handles = [], []
    if grad_of is not None:
        for block in hf.get_submodule(model.spec.modules.layers):
            def keep(module, args, output):
                hidden = output[0] if isinstance(output, tuple) else output
                hidden.retain_grad()
                kept.append(hidden)
            handles.append(block.register_forward_hook(keep))
    try:
        kwargs = {"position_ids": positions} if "bloom" not in model.spec.name else {}
        out = hf(**encoded, **kwargs, output_hidden_states=True, output_attentions=True)
    finally:
        for h in handles:
            h.remove()
    return out, kept


def test_cache_matches_plain_transformers(pair) -> None:
    model, hf = pair
    names = ["layers_input", "attentions_output", "mlps_output", "layers_output", "attention_probabilities", "token_embeddings", "logits"]
    cache = model.run_with_cache(PROMPTS, names=names, to_cpu=True)
    with torch.no_grad():
        out, _ = hf_forward(model, hf, PROMPTS)
    n = model.num_layers
    assert set(cache) == {f"{k}.{i}" for k in names[:5] for i in range(n)} | {"token_embeddings", "logits"}
    for i in range(n - 1):
        assert torch.allclose(cache[f"layers_output.{i}"], out.hidden_states[i + 1], atol=1e-5)
    for i in range(n):
        assert torch.allclose(cache[f"attention_probabilities.{i}"], out.attentions[i], atol=1e-6)
    assert torch.allclose(cache["logits"], out.logits, atol=1e-5)
    parts, labels = cache.decompose_resid()
    assert parts.shape[0] == 1 + 2 * n and labels[:3] == ["embed", "attention.0", "mlp.0"]
    assert torch.allclose(parts.sum(0), cache[f"layers_output.{n - 1}"], atol=1e-5)
    resid = cache.accumulated_resid()
    assert resid.shape == (n + 1,) + cache["layers_input.0"].shape
    assert torch.allclose(resid[1:-1], torch.stack(out.hidden_states[1:-1]), atol=1e-5)
    assert torch.allclose(cache.stack("layers_output"), resid[1:])


def test_cache_layers_subset_and_bad_names(pair) -> None:
    model, _ = pair
    cache = model.run_with_cache("Hello", names=["layers_output", "queries", "keys", "values"] if model.spec.name != "bloom" else ["layers_output"], layers=[1])
    assert all(key.endswith(".1") for key in cache)
    with pytest.raises(KeyError, match=r"'layer_output' is not a cacheable value \(did you mean 'layers_output'"):
        model.run_with_cache("Hello", names=["layer_output"])
    with pytest.raises(KeyError, match="give 'layers_output' and choose layers with layers="):
        model.run_with_cache("Hello", names=["layers_output.3"])
    with pytest.raises(KeyError, match=r"'layers_output.0' is not in this cache.*'layers_output.1'"):
        cache["layers_output.0"]
    with pytest.raises(ValueError, match="needs every layer"):
        cache.accumulated_resid()


def test_gradients_match_plain_transformers_autograd(pair) -> None:
    model, hf = pair
    a, b = 5, 7

    def metric(logits):
        return (logits[:, -1, a] - logits[:, -1, b]).sum()

    grads = gradients(model, PROMPTS, metric, names=("layers_output", "attentions_output", "mlps_input"))
    out, kept = hf_forward(model, hf, PROMPTS, grad_of=True)
    value = metric(out.logits)
    value.backward()
    assert torch.allclose(grads["metric"], value.detach(), atol=1e-5)
    for i in range(model.num_layers):
        assert torch.allclose(grads[f"layers_output.{i}"], kept[i].grad, atol=1e-5), i
        assert grads[f"attentions_output.{i}"].shape == kept[i].shape
        assert grads[f"mlps_input.{i}"].shape == kept[i].shape
    assert grads["layers_output.0"].abs().sum() > 0


def test_gradients_agree_with_finite_differences(pair) -> None:
    model, _ = pair

    def metric(logits):
        return logits[:, -1, 5].sum()

    names = ("layers_output", "attentions_output", "mlps_input")
    grads = gradients(model, PROMPTS[0], metric, names=names, layers=[1])
    for name in names:
        direction = torch.randn(grads[f"{name}.1"].shape, generator=torch.Generator().manual_seed(4))
        values = []
        for sign in (1, -1):
            with torch.no_grad(), model.trace(PROMPTS[0]):
                accessor = getattr(model, name)
                accessor[1] = accessor[1] + sign * 1e-3 * direction
                values.append(metric(model.logits).save())
        numeric = (values[0] - values[1]) / 2e-3
        analytic = (grads[f"{name}.1"] * direction).sum()
        assert torch.allclose(numeric, analytic, rtol=1e-2, atol=1e-3), (name, float(numeric), float(analytic))


def test_attribution_patching(pair) -> None:
    model, hf = pair
    clean, corrupted = "The capital of France is", "The capital of Spain is"
    metric = lambda logits: logits[:, -1, 5].sum()  # noqa: E731
    atp = attribution_patching(model, clean, corrupted, metric, names=("layers_output",))["layers_output"]
    n = model.num_layers
    assert atp.shape == (n, 1, len(model.tokenizer(clean).input_ids))
    with torch.no_grad():
        clean_states, _ = hf_forward(model, hf, [clean])
    out, kept = hf_forward(model, hf, [corrupted], grad_of=True)
    metric(out.logits).backward()
    for i in range(n - 1):
        expected = ((clean_states.hidden_states[i + 1] - kept[i].detach()) * kept[i].grad).sum(-1)
        assert torch.allclose(atp[i], expected, atol=1e-5)
    ids_clean, ids_corrupt = model.tokenizer(clean).input_ids, model.tokenizer(corrupted).input_ids
    first_diff = next(p for p, (x, y) in enumerate(zip(ids_clean, ids_corrupt)) if x != y)
    assert torch.all(atp[:, :, :first_diff] == 0), "positions before the first differing token cannot matter"
    with pytest.raises(ValueError, match="same length"):
        attribution_patching(model, "Hi", "The capital of Spain is", metric)


def test_non_scalar_metric_is_refused(pair) -> None:
    model, _ = pair
    with pytest.raises(ValueError, match=r"metric must return a scalar tensor, got \(2,\)"):
        gradients(model, PROMPTS, lambda logits: logits[:, -1, 5])
    with pytest.raises(KeyError, match="gradients of 'queries' are not supported"):
        gradients(model, PROMPTS, lambda logits: logits.sum(), names=("queries",))


def test_probabilities_need_eager_attention() -> None:
    model = StandardizedTransformer(checkpoint("llama"), attn_implementation="sdpa")
    assert not model.attn_probs_available
    with pytest.raises(CapabilityUnavailableError, match="enable_attention_probs=True"):
        with model.trace("Hello"):
            model.attention_probabilities[0]
    eager = StandardizedTransformer(checkpoint("llama"), enable_attention_probs=True)
    assert eager.attn_probs_available
    with model.trace("Hello"):
        q = model.queries[0].save()  # q/k/v do not depend on the attention implementation
    assert q.shape[1] == model.num_heads


def test_non_softmax_attention_is_declared(tmp_path: Path) -> None:
    spec = tmp_path / "llama_linear.toml"
    spec.write_text('name = "llama_linear"\nextends = "llama"\nmodel_types = ["llama"]\n[attention]\nkind = "linear"\n')
    model = StandardizedTransformer(checkpoint("llama"), spec=str(spec), enable_attention_probs=True)
    assert not model.attn_probs_available
    with pytest.raises(CapabilityUnavailableError, match=r"no softmax attention \(its token mixer is linear attention\)"):
        model.attention_probabilities[0]
    bloom = StandardizedTransformer(checkpoint("bloom"))
    with pytest.raises(CapabilityUnavailableError, match="folds heads into the batch dimension"):
        bloom.attention_heads_output[0]


def test_source_resolution_names_missing_operations(tmp_path: Path) -> None:
    spec = tmp_path / "llama_typo.toml"
    spec.write_text(
        'name = "llama_typo"\nextends = "llama"\nmodel_types = ["llama"]\n'
        '[attention]\nqueries = { ops = [{ name = "attention_interfaces" }], io = "input", index = 1 }\n'
    )
    model = StandardizedTransformer(checkpoint("llama"), spec=str(spec))
    with pytest.raises(CapabilityUnavailableError, match="no operation named 'attention_interfaces'.*did you mean 'attention_interface'"):
        with model.trace("Hello"):
            model.queries[0]


class Stop(Exception):
    pass


def test_remote_reaches_nnsight_from_every_helper(monkeypatch: pytest.MonkeyPatch) -> None:
    """NDIF is unreachable here: check that remote=True is what each helper hands to NNsight."""
    from nnspec.interventions import TargetPrompt, logit_lens, patchscope_generate, patchscope_lens
    from nnspec.nnsight_utils import collect_activations
    from nnspec.prompt_utils import Prompt, run_prompts

    model = StandardizedTransformer(checkpoint("gpt2"))
    seen = []

    def fake(*args, **kwargs):
        seen.append(kwargs.get("remote"))
        raise Stop

    monkeypatch.setattr(model, "trace", fake)
    monkeypatch.setattr(model, "generate", fake)
    prompt = Prompt.from_strings("The capital of France is", "Paris", model.tokenizer)
    calls = [
        lambda: logit_lens(model, ["Hi"], remote=True),
        lambda: patchscope_lens(model, source_prompts=["Hi"], layers=[0], remote=True),
        lambda: patchscope_lens(model, latents=torch.zeros(1, 1, 64), target_patch_prompts=TargetPrompt("Hi", -1), layers=[0], remote=True),
        lambda: patchscope_generate(model, ["Hi"], TargetPrompt("Hi", -1), layers=[0], remote=True),
        lambda: run_prompts(model, [prompt], remote=True),
        lambda: run_prompts(model, [prompt], get_probs_func=logit_lens, remote=True),
        lambda: collect_activations(model, ["Hi"], remote=True, progress=False),
        lambda: model.run_with_cache("Hi", remote=True),
        lambda: gradients(model, "Hi", lambda logits: logits.sum(), remote=True),
        lambda: attribution_patching(model, "Hi", "Hi", lambda logits: logits.sum(), remote=True),
    ]
    for call in calls:
        with pytest.raises(Stop):
            call()
    assert seen == [True] * len(calls)
