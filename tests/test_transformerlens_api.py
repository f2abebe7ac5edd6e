"""TransformerLens conveniences over the standard names (token helpers, ``run_with_cache``'s calling
conventions and hook-name aliases, the cache's residual-stream helpers, direct logit attribution and
the ``attribution`` conformance row), checked against plain transformers, the tokenizer and hand
computation from the HF weights."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from nnspec import CapabilityUnavailableError, StandardizedTransformer, attribution
from nnspec.cache import ActivationCache
from nnspec.errors import ConformanceError, InputError, InputTypeError, LayerIndexError, PositionError, UnknownNameError
from nnspec.runtime.batching import positions_from_mask
from nnspec.verification import conformance

from .conftest import checkpoint, subject

PROMPTS = ["The capital of France is", "Hi there"]
SPECS = ["llama", "gpt2", "gemma2"]
#: Test knowledge of the HF module trees: the final norm, each block's norm in front of its MLP
#: (its input is the stream after the attention), the attention module and its output projection.
HF = {
    "llama": dict(final="model.norm", mlp_norm="post_attention_layernorm", attn="self_attn", proj="o_proj", eps="variance_epsilon"),
    "gpt2": dict(final="transformer.ln_f", mlp_norm="ln_2", attn="attn", proj="c_proj", eps="eps"),
    "gemma2": dict(final="model.norm", mlp_norm="pre_feedforward_layernorm", attn="self_attn", proj="o_proj", eps="eps"),
}


@pytest.fixture(scope="module", params=SPECS)
def pair(request: pytest.FixtureRequest) -> tuple:
    path = checkpoint(request.param)
    model = StandardizedTransformer(path, enable_attention_probs=True)
    hf = AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager")
    return request.param, model, hf


def hf_run(model, hf, prompts, hooks=()):
    """Plain transformers on the padded prompts with forward (pre-)hooks ``(module, kind, fn)``."""
    encoded = model.tokenizer(prompts, return_tensors="pt", padding=True)
    handles = [getattr(m, f"register_forward_{kind}hook")(fn, **({"with_kwargs": True} if kind else {})) for m, kind, fn in hooks]
    try:
        with torch.no_grad():
            return encoded, hf(**encoded, position_ids=positions_from_mask(encoded["attention_mask"]), output_hidden_states=True)
    finally:
        for h in handles:
            h.remove()


# -- token helpers ----------------------------------------------------------------------------------


def test_tokens_are_what_a_trace_feeds(pair) -> None:
    name, model, _ = pair
    tok = model.tokenizer
    with model.trace(PROMPTS):
        fed = model.input_ids.save()
    assert torch.equal(model.to_tokens(PROMPTS), fed)
    assert torch.equal(model.to_tokens(PROMPTS), tok(PROMPTS, return_tensors="pt", padding=True)["input_ids"])
    plain = tok("Hello world", add_special_tokens=False)["input_ids"]
    bos = tok.bos_token_id
    assert model.to_tokens("Hello world", prepend_bos=True)[0].tolist() == [bos] + plain
    assert model.to_tokens("Hello world", prepend_bos=False)[0].tolist() == plain
    right = model.to_tokens(PROMPTS, padding_side="right")
    assert right[1, : len(tok(PROMPTS[1])["input_ids"])].tolist() == tok(PROMPTS[1])["input_ids"]
    ids = tok("Hello world")["input_ids"]
    assert model.to_str_tokens("Hello world") == [tok.decode([i]) for i in ids]
    assert model.to_str_tokens(["Hello world", "Hi"])[1] == [tok.decode([i]) for i in tok("Hi")["input_ids"]]
    assert model.to_str_tokens(torch.tensor(ids)) == model.to_str_tokens("Hello world")
    assert model.to_string(torch.tensor(plain)) == tok.decode(plain)
    assert model.to_string(model.to_tokens(PROMPTS, prepend_bos=False, padding_side="right"))[0].startswith(tok.decode(
        tok(PROMPTS[0], add_special_tokens=False)["input_ids"]))
    single = plain[0]
    assert model.to_single_token(tok.decode([single])) == single
    assert model.to_single_str_token(single) == tok.decode([single])
    text = "Hello world Hello"
    ids = model.to_tokens(text)[0].tolist()
    first = tok.decode([ids[-1]])
    hits = [i for i, t in enumerate(ids) if t == ids[-1]]
    assert model.get_token_position(first, text) == hits[0]
    assert model.get_token_position(ids[-1], text, mode="last") == hits[-1] == len(ids) - 1


def test_token_helpers_refuse_bad_input(pair) -> None:
    _, model, _ = pair
    with pytest.raises(InputError, match=r"to_single_token\('Hello world'\): it is \d+ tokens, not one"):
        model.to_single_token("Hello world")
    with pytest.raises(InputError, match="'first' or 'last'"):
        model.get_token_position("a", "a b", mode="middle")
    absent = next(i for i in range(5, 300) if i not in model.to_tokens("Hi")[0].tolist())
    with pytest.raises(PositionError, match="does not occur"):
        model.get_token_position(absent, "Hi")
    with pytest.raises(InputError, match="padding_side"):
        model.to_tokens("Hi", padding_side="middle")
    with pytest.raises(InputTypeError, match="prepend_bos"):
        model.to_tokens("Hi", prepend_bos="yes")
    with pytest.raises(InputTypeError, match="to_tokens"):
        model.to_tokens([])
    with pytest.raises(InputError, match="outside the vocabulary"):
        model.to_string([model.vocab_size])
    with pytest.raises(InputTypeError, match="answer"):
        model.test_prompt("Hi", "")


def test_test_prompt_prints_ranks_from_plain_transformers(pair, capsys: pytest.CaptureFixture) -> None:
    _, model, hf = pair
    tok = model.tokenizer
    model.test_prompt("The capital of France is", "Paris", top_k=3)
    out = capsys.readouterr().out
    prompt = tok("The capital of France is")["input_ids"]
    answer = tok(" Paris", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = hf(torch.tensor([prompt + answer])).logits[0]
    ranks = []
    for k, token in enumerate(answer):
        row = logits[len(prompt) + k - 1]
        rank = int((row > row[token]).sum())
        ranks.append((tok.decode([token]), rank))
        assert f"Rank: {rank: <8} Logit: {row[token].item():5.2f}" in out
    assert f"Ranks of the answer tokens: {ranks}" in out
    assert out.count("Top 2th token") == len(answer) and "Top 3th token" not in out


# -- run_with_cache: calling conventions, names, keys ------------------------------------------------


def test_old_and_new_calls(pair) -> None:
    _, model, hf = pair
    _, out = hf_run(model, hf, PROMPTS)
    logits, cache = model.run_with_cache(PROMPTS)  # TransformerLens's form
    assert isinstance(cache, ActivationCache)
    torch.testing.assert_close(logits, out.logits, atol=1e-5, rtol=1e-4)
    cache = model.run_with_cache(PROMPTS, names=["layers_output"])  # nnspec's form: the cache
    torch.testing.assert_close(cache["layers_output.0"], out.hidden_states[1], atol=1e-5, rtol=1e-4)
    assert list(cache) == [f"layers_output.{i}" for i in range(model.num_layers)]
    assert all(isinstance(k, str) for k in cache) and set(cache) == set(cache.keys())
    two = model.run_with_cache(PROMPTS, names=["token_embeddings", "layers_output"], layers=[0])
    assert len(two) == 2
    with pytest.raises(InputError, match="computed no logits"):
        first, second = two  # a mistaken unpacking never gives two key strings
    with pytest.raises(InputError, match="two names"):
        a, b, c = two
    logits, cache = model.run_with_cache(PROMPTS, names=["layers_output"], layers=[0], return_type="logits")
    torch.testing.assert_close(logits, out.logits, atol=1e-5, rtol=1e-4)
    assert list(cache) == ["layers_output.0"]
    none, cache = model.run_with_cache(PROMPTS, names_filter="resid_post", return_type=None)
    assert none is None and cache.logits is None


def test_names_filter_and_hook_aliases(pair) -> None:
    name, model, hf = pair
    kept: dict[int, torch.Tensor] = {}
    blocks = hf.get_submodule(model.spec.modules.layers)

    def keep(i):
        def hook(module, args, kwargs):
            kept[i] = (args[0] if args else next(iter(kwargs.values()))).detach()
        return hook

    hooks = [(getattr(blocks[i], HF[name]["mlp_norm"]), "pre_", keep(i)) for i in range(model.num_layers)]
    _, out = hf_run(model, hf, PROMPTS, hooks)
    cache = model.run_with_cache(PROMPTS, names_filter=lambda n: n.endswith(("hook_resid_pre", "hook_resid_mid", "hook_pattern")))
    assert {k.split(".")[0] for k in cache} == {"layers_input", "resid_mid", "attention_probabilities"}
    for i in range(model.num_layers):
        torch.testing.assert_close(cache[f"blocks.{i}.hook_resid_pre"], out.hidden_states[i], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(cache["resid_pre", i], out.hidden_states[i], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(cache["resid_mid", i], kept[i], atol=1e-5, rtol=1e-4)
    assert "blocks.0.hook_resid_pre" in cache and "blocks.0.hook_resid_post" not in cache
    torch.testing.assert_close(cache["resid_pre", -1], cache[f"layers_input.{model.num_layers - 1}"])
    listed = model.run_with_cache(PROMPTS, names_filter=["blocks.1.hook_resid_post", "v", "queries.0", "logits"])
    assert set(listed) == {"layers_output.1", "logits"} | {f"values.{i}" for i in range(model.num_layers)} | {"queries.0"}
    torch.testing.assert_close(listed["blocks.0.attn.hook_v"], listed["values.0"].transpose(1, 2))
    torch.testing.assert_close(listed["blocks.0.attn.hook_rot_q"], listed["queries.0"].transpose(1, 2))
    assert listed["blocks.0.attn.hook_v"].shape == (2, listed["values.0"].shape[2], model.num_kv_heads, model.head_dim)
    torch.testing.assert_close(listed["logits"], out.logits, atol=1e-5, rtol=1e-4)
    one = model.run_with_cache("Hello world", names_filter="hook_embed", remove_batch_dim=True)
    assert one["hook_embed"].shape == (len(model.to_tokens("Hello world")[0]), model.hidden_size)


def test_bad_names_and_keys_are_refused(pair) -> None:
    _, model, _ = pair
    with pytest.raises(UnknownNameError, match=r"closest standard name: 'layers_input.0'.*closest TransformerLens hook name: 'blocks.0.hook_resid_pre'"):
        model.run_with_cache("Hi", names_filter=["blocks.0.hook_resid_pree"])
    with pytest.raises(CapabilityUnavailableError, match="hook_rot_q"):
        model.run_with_cache("Hi", names_filter="blocks.0.attn.hook_q")
    with pytest.raises(CapabilityUnavailableError, match="position-embedding"):
        model.run_with_cache("Hi", names_filter="hook_pos_embed")
    with pytest.raises(LayerIndexError, match="out of range"):
        model.run_with_cache("Hi", names_filter="blocks.9.hook_resid_pre")
    with pytest.raises(InputError, match="not both"):
        model.run_with_cache("Hi", names=["layers_output"], names_filter="resid_post")
    with pytest.raises(InputError, match="return_type='loss'"):
        model.run_with_cache("Hi", return_type="loss")
    with pytest.raises(InputError, match="needs one prompt"):
        model.run_with_cache(PROMPTS, names=["layers_output"], remove_batch_dim=True)
    with pytest.raises(InputTypeError, match="should return True or False"):
        model.run_with_cache("Hi", names_filter=lambda n: "yes")
    with pytest.raises(UnknownNameError, match="names_filter="):
        model.run_with_cache("Hi", names=["blocks.0.hook_resid_pre"])
    cache = model.run_with_cache("Hi", names=["layers_input"])
    with pytest.raises(UnknownNameError, match="a tuple key is"):
        cache["layers_input", 0, 1, 2]
    with pytest.raises(UnknownNameError, match="integer layer"):
        cache["resid_pre", "0"]
    with pytest.raises(LayerIndexError, match="out of range"):
        cache["resid_pre", 7]
    with pytest.raises(UnknownNameError, match="per-block norm"):
        cache["scale", 0, "ln1"]
    with pytest.raises(UnknownNameError, match="closest standard name"):
        cache["resid_pree", 0]
    with pytest.raises(UnknownNameError, match="is not in this cache"):
        cache["blocks.0.hook_resid_post"]
    with pytest.raises(UnknownNameError, match="closest"):
        cache.stack_activation("resid_postt")


# -- cache helpers ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def full(pair):
    """One cache with everything the helpers read, and plain transformers' values for it."""
    name, model, hf = pair
    blocks = hf.get_submodule(model.spec.modules.layers)
    proj_out, attn_in, final_out = {}, {}, {}

    def keep_out(store, i):
        def hook(module, args, output):
            store[i] = (output[0] if isinstance(output, tuple) else output).detach()
        return hook

    def keep_in(store, i):
        def hook(module, args, kwargs):
            store[i] = (args[0] if args else kwargs["hidden_states"]).detach()
        return hook

    hooks = []
    for i in range(model.num_layers):
        attention = getattr(blocks[i], HF[name]["attn"])
        hooks.append((getattr(attention, HF[name]["proj"]), "", keep_out(proj_out, i)))
        hooks.append((attention, "pre_", keep_in(attn_in, i)))
    hooks.append((hf.get_submodule(HF[name]["final"]), "", keep_out(final_out, 0)))
    _, out = hf_run(model, hf, PROMPTS, hooks)
    names = ["layers_input", "attentions_input", "attentions_output", "attention_heads_output", "mlps_input", "mlps_output",
             "layers_output", "logits"]
    cache = model.run_with_cache(PROMPTS, names=names)
    return name, model, hf, cache, out, proj_out, attn_in, final_out[0]


def test_stacks_equal_hidden_states(full) -> None:
    _, model, _, cache, out, *_ = full
    n = model.num_layers
    torch.testing.assert_close(cache.stack_activation("layers_output")[:-1], torch.stack(out.hidden_states[1:-1]), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(cache.stack_activation("resid_pre", layer=2), torch.stack(out.hidden_states[:2]), atol=1e-5, rtol=1e-4)
    resid, labels = cache.accumulated_resid(incl_mid=True, return_labels=True)
    assert labels[:3] == ["0_pre", "0_mid", "1_pre"] and labels[-1] == "final_post" and resid.shape[0] == 2 * n + 1
    torch.testing.assert_close(resid[2], out.hidden_states[1], atol=1e-5, rtol=1e-4)
    assert cache.accumulated_resid(layer=1).shape[0] == 2
    assert cache.logits is cache["logits"]


def test_head_results_sum_to_the_projection_and_match_the_weights(full) -> None:
    name, model, hf, cache, _, proj_out, *_ = full
    stack, labels = cache.stack_head_results(return_labels=True)
    heads, dim = model.num_heads, model.head_dim
    assert stack.shape[0] == model.num_layers * heads and labels[heads + 1] == "L1H1"
    for i in range(model.num_layers):
        block = hf.get_submodule(model.spec.modules.layers)[i]
        projection = getattr(getattr(block, HF[name]["attn"]), HF[name]["proj"])
        bias = projection.bias if projection.bias is not None else torch.zeros(model.hidden_size)
        per_layer = stack[i * heads:(i + 1) * heads]
        torch.testing.assert_close(per_layer.sum(0) + bias, proj_out[i], atol=1e-5, rtol=1e-4)
        # By hand: head h's slice of the projection weight (Conv1D stores it transposed).
        weight = projection.weight if name != "gpt2" else projection.weight.T
        z = cache[f"blocks.{i}.attn.hook_z"]
        for h in (0, heads - 1):
            expected = z[:, :, h] @ weight[:, h * dim:(h + 1) * dim].T
            torch.testing.assert_close(per_layer[h], expected, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(cache[f"blocks.{i}.attn.hook_result"], per_layer.movedim(0, 2))


def _hand_norm(name: str, hf, x: torch.Tensor, path: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scale, weight and bias of a norm from its weights and TransformerLens's formula."""
    module = hf.get_submodule(path)
    eps = getattr(module, HF[name]["eps"])
    if name == "gpt2":
        return (x.var(-1, unbiased=False, keepdim=True) + eps).sqrt(), module.weight, module.bias
    weight = module.weight + 1 if name == "gemma2" else module.weight
    return (x.pow(2).mean(-1, keepdim=True) + eps).sqrt(), weight, torch.zeros_like(weight)


def test_apply_ln_to_stack_final_and_block_norms(full) -> None:
    name, model, hf, cache, out, _, attn_in, final = full
    x = cache[f"layers_output.{model.num_layers - 1}"]
    scale, weight, bias = _hand_norm(name, hf, x, HF[name]["final"])
    torch.testing.assert_close(cache["ln_final.hook_scale"], scale, atol=1e-5, rtol=1e-4)
    parts, _ = cache.decompose_resid()
    shares = cache.apply_ln_to_stack(parts)
    centred = parts - parts.mean(-1, keepdim=True) if name == "gpt2" else parts
    torch.testing.assert_close(shares, weight * centred / scale, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(shares.sum(0) + bias, final, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(cache["ln_final.hook_normalized"] * weight + bias, final, atol=1e-5, rtol=1e-4)
    last = cache.apply_ln_to_stack(parts[:, :, -1], pos_slice=-1)
    torch.testing.assert_close(last, shares[:, :, -1], atol=1e-6, rtol=1e-5)
    one = cache.apply_ln_to_stack(parts[:, 1], batch_slice=1, has_batch_dim=False)
    torch.testing.assert_close(one, shares[:, 1], atol=1e-6, rtol=1e-5)
    # Block 1's norm in front of its attention: the parts of its input stream give what the attention reads.
    before, _ = cache.decompose_resid(layer=1)
    torch.testing.assert_close(before.sum(0), out.hidden_states[1], atol=1e-5, rtol=1e-4)
    shares_1 = cache.apply_ln_to_stack(before, layer=1)
    norm_1 = hf.get_submodule(model.spec.modules.layers)[1]
    norm_bias = (norm_1.ln_1.bias if name == "gpt2" else 0)
    torch.testing.assert_close(shares_1.sum(0) + norm_bias, attn_in[1], atol=1e-5, rtol=1e-4)
    mid, _ = cache.decompose_resid(layer=1, mlp_input=True)
    torch.testing.assert_close(mid.sum(0), cache["resid_mid", 1], atol=1e-5, rtol=1e-4)
    shares_mid = cache.apply_ln_to_stack(mid, layer=1, mlp_input=True)
    mlp_bias = (norm_1.ln_2.bias if name == "gpt2" else 0)
    torch.testing.assert_close(shares_mid.sum(0) + mlp_bias, cache["mlps_input.1"], atol=1e-5, rtol=1e-4)
    with pytest.raises(Exception, match="does not line up|ends in"):
        cache.apply_ln_to_stack(parts[..., :3])


def test_direct_logit_attribution_sums_to_plain_transformers_logits(full) -> None:
    name, model, hf, cache, out, *_ = full
    tokens = out.logits[:, -1].argmax(-1)
    other = torch.tensor([5, 6])
    if name == "gemma2":  # softcapped logits: refused with the reason
        with pytest.raises(CapabilityUnavailableError, match="softcaps"):
            attribution.logit_attribution(model, cache, tokens)
        with pytest.raises(CapabilityUnavailableError, match="softcaps"):
            cache.logit_attrs(cache.decompose_resid()[0], 5)
        return
    expected = out.logits[torch.arange(2), -1, tokens] - out.logits[torch.arange(2), -1, other]
    for per_head in (False, True):
        found = attribution.logit_attribution(model, cache, tokens, incorrect_tokens=other, per_head=per_head)
        torch.testing.assert_close(found.contributions.sum(0) + found.constant, expected, atol=1e-5, rtol=1e-4)
    assert found.labels[:2] == ["embed", "L0H0"] and "attention_bias.0" in found.labels
    # logit_attrs on the final-norm shares: each part against the unembedding rows, by hand.
    parts, labels = cache.get_full_resid_decomposition(apply_ln=True, return_labels=True)
    assert labels == found.labels
    attrs = cache.logit_attrs(parts[:, :, -1], tokens, other)
    torch.testing.assert_close(attrs, found.contributions, atol=1e-5, rtol=1e-4)
    unembed = hf.get_output_embeddings().weight
    by_hand = (parts[:, :, -1] * (unembed[tokens] - unembed[other])).sum(-1)
    torch.testing.assert_close(attrs, by_hand, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(model.tokens_to_residual_directions(tokens), unembed[tokens])
    text = model.tokenizer.decode([int(tokens[0])])
    if model.tokenizer(text, add_special_tokens=False)["input_ids"] == [int(tokens[0])]:
        torch.testing.assert_close(cache.logit_attrs(parts[:, :1, -1], text), attrs[:, :1] + (parts[:, :1, -1] * unembed[other[0]]).sum(-1))
    with pytest.raises(InputTypeError, match="integers"):
        cache.logit_attrs(parts[:, :, -1], torch.tensor([0.5, 1.0]))
    with pytest.raises(InputError, match="one per prompt"):
        attribution.logit_attribution(model, cache, [1, 2, 3])
    with pytest.raises(InputError, match="needs the logits"):
        attribution.logit_attribution(model, model.run_with_cache(PROMPTS, names=["layers_output"]), tokens)
    with pytest.raises(CapabilityUnavailableError, match="neurons"):
        cache.get_full_resid_decomposition(expand_neurons=True)
    with pytest.raises(InputError, match="mode"):
        cache.decompose_resid(mode="heads")


def test_attribution_without_the_softcap_and_from_prompts() -> None:
    """Gemma 2 with its final softcap switched off: the attribution applies (the per-head split
    does not: a norm follows the output projection, and the runtime says so)."""
    path = checkpoint("gemma2")
    model = StandardizedTransformer(path, final_logit_softcapping=None)
    hf = AutoModelForCausalLM.from_pretrained(path, final_logit_softcapping=None)
    _, out = hf_run(model, hf, PROMPTS)
    found = attribution.logit_attribution(model, PROMPTS, 7)
    torch.testing.assert_close(found.contributions.sum(0) + found.constant, out.logits[:, -1, 7], atol=1e-5, rtol=1e-4)
    with pytest.raises(CapabilityUnavailableError, match="does not split per head"):
        attribution.logit_attribution(model, PROMPTS, 7, per_head=True)


# -- the conformance row -------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["llama", "gpt2", "gemma2"])
def test_attribution_row_passes(spec: str) -> None:
    assert conformance.check_attribution(subject(spec)) < 1e-5


def _broken_stack(self, activation_name, layer=-1, sublayer_type=None):
    stacked = _ORIGINAL_STACK(self, activation_name, layer, sublayer_type)
    return stacked.roll(1, 0)  # every layer reports its neighbour's value


_ORIGINAL_STACK = ActivationCache.stack_activation


def _broken_heads(model, layer, heads_output):
    results, bias = _ORIGINAL_HEADS(model, layer, heads_output)
    return results * torch.tensor([0.0] + [1.0] * (results.shape[2] - 1)).reshape(1, 1, -1, 1), bias  # drops head 0


_ORIGINAL_HEADS = attribution.head_results


@pytest.mark.parametrize(
    "target, attribute, broken, message",
    [
        (ActivationCache, "stack_activation", _broken_stack, "stack_activation('layers_output')"),
        (attribution, "head_results", _broken_heads, "summed over heads + bias"),
        # A LayerNorm treated as an RMSNorm: the parts' shares are not centred.
        (attribution.FrozenNorm, "normalize", lambda self, parts: parts / self.scale, "parts + constant vs logits"),
    ],
)
def test_attribution_row_fails_on_a_broken_value(target, attribute, broken, message, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(target, attribute, broken)
    monkeypatch.setattr(attribution, "SELF_CHECK_RTOL", float("inf"))  # the helpers' own checks off: the row must catch it
    with pytest.raises(ConformanceError, match=message.replace("(", r"\(").replace(")", r"\)").replace("+", r"\+")):
        conformance.check_attribution(subject("gpt2"))


def test_attribution_constant_carries_the_norm_bias() -> None:
    """GPT-2's final LayerNorm bias (zero in the tiny checkpoint, set here on both copies) reaches
    the logits only through the constant part."""
    path = checkpoint("gpt2")
    model = StandardizedTransformer(path)
    hf = AutoModelForCausalLM.from_pretrained(path)
    bias = torch.randn(model.hidden_size, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        model.dispatch()
        model._module.transformer.ln_f.bias.copy_(bias)
        hf.transformer.ln_f.bias.copy_(bias)
    _, out = hf_run(model, hf, PROMPTS)
    found = attribution.logit_attribution(model, PROMPTS, 11)
    torch.testing.assert_close(found.constant, (hf.lm_head.weight[11] @ bias).expand(2), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(found.contributions.sum(0) + found.constant, out.logits[:, -1, 11], atol=1e-5, rtol=1e-4)
