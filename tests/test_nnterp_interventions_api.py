"""nnterp's ``interventions``, ``prompt_utils`` and ``display`` API on nnspec: the calls nnterp users
write (argument names, order, defaults, shapes), values against plain transformers run with
forward hooks, and bad input refused before any forward."""

from __future__ import annotations

import inspect
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from nnspec import StandardizedTransformer
from nnspec.errors import CapabilityUnavailableError, InputError, InputTypeError, PositionError, ShapeMismatchError
from nnspec.interventions import (
    TargetPrompt,
    TargetPromptBatch,
    it_repeat_prompt,
    logit_lens,
    patch_object_attn_lens,
    patchscope_generate,
    patchscope_lens,
    repeat_prompt,
)
from nnspec.nnsight_utils import get_token_activations
from nnspec.prompt_utils import (
    Prompt,
    TargetTokenizationError,
    TokenizationError,
    get_first_tokens,
    next_token_probs_unsqueeze,
    run_prompts,
)

from .conftest import checkpoint

ATOL = 1e-5


@pytest.fixture(scope="module")
def pair() -> tuple:
    path = checkpoint("llama")
    hf = AutoModelForCausalLM.from_pretrained(path).eval()
    return StandardizedTransformer(path), hf


@pytest.fixture(scope="module")
def model(pair) -> StandardizedTransformer:
    return pair[0]


def _hidden(output):
    return output[0] if isinstance(output, tuple) else output


def _with_hidden(output, hidden):
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


@torch.no_grad()
def hf_block_outputs(hf, tokenizer, prompt: str) -> list[torch.Tensor]:
    """Each decoder layer's output for one prompt, ``(seq, hidden)`` per layer (forward hooks)."""
    outs = []
    handles = [layer.register_forward_hook(lambda m, a, o: outs.append(_hidden(o)[0].clone())) for layer in hf.model.layers]
    try:
        hf(**tokenizer(prompt, return_tensors="pt"))
    finally:
        for h in handles:
            h.remove()
    return outs


@torch.no_grad()
def hf_probs_with_block_patch(hf, tokenizer, prompt: str, layer: int, position: int, value: torch.Tensor) -> torch.Tensor:
    """Next-token probabilities of one prompt with decoder layer ``layer``'s output replaced at ``position``."""

    def hook(module, args, output):
        hidden = _hidden(output).clone()
        hidden[0, position] = value
        return _with_hidden(output, hidden)

    handle = hf.model.layers[layer].register_forward_hook(hook)
    try:
        logits = hf(**tokenizer(prompt, return_tensors="pt")).logits
    finally:
        handle.remove()
    return logits[0, -1].softmax(-1)


def _attn_hidden(args, kwargs):
    return kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]


@torch.no_grad()
def hf_attention_inputs(hf, tokenizer, prompt: str) -> list[torch.Tensor]:
    """What each layer's attention module reads for one prompt, ``(seq, hidden)`` per layer."""
    seen = []
    handles = [
        layer.self_attn.register_forward_pre_hook(lambda m, a, k: seen.append(_attn_hidden(a, k)[0].clone()), with_kwargs=True)
        for layer in hf.model.layers
    ]
    try:
        hf(**tokenizer(prompt, return_tensors="pt"))
    finally:
        for h in handles:
            h.remove()
    return seen


@torch.no_grad()
def hf_probs_with_attention_patch(hf, tokenizer, prompt: str, layers: range, position: int, values: list) -> torch.Tensor:
    """Next-token probabilities with the attention input of ``layers`` replaced at ``position``."""

    def make(layer):
        def hook(module, args, kwargs):
            hidden = _attn_hidden(args, kwargs).clone()
            hidden[0, position] = values[layer]
            if "hidden_states" in kwargs:
                return args, {**kwargs, "hidden_states": hidden}
            return (hidden, *args[1:]), kwargs

        return hook

    handles = [hf.model.layers[l].self_attn.register_forward_pre_hook(make(l), with_kwargs=True) for l in layers]
    try:
        logits = hf(**tokenizer(prompt, return_tensors="pt")).logits
    finally:
        for h in handles:
            h.remove()
    return logits[0, -1].softmax(-1)


# -- signatures: nnterp's argument names, order and defaults ------------------------------------------

NNTERP_SIGNATURES = {
    logit_lens: [("nn_model", None), ("prompts", None), ("remote", False), ("return_inv_logits", False)],
    repeat_prompt: [("words", None), ("rel", " "), ("sep", "\n"), ("placeholder", "?"), ("index_to_patch", -1)],
    it_repeat_prompt: [
        ("tokenizer", None), ("words", None), ("rel", " "), ("sep", "\n"), ("placeholder", "?"),
        ("complete_prompt", True), ("add_user_instr", True), ("use_system_prompt", True),
    ],
    patchscope_lens: [
        ("nn_model", None), ("source_prompts", None), ("target_patch_prompts", None), ("layers", None),
        ("latents", None), ("remote", False),
    ],
    patchscope_generate: [
        ("nn_model", None), ("prompts", None), ("target_patch_prompt", None), ("max_length", 50), ("layers", None),
        ("remote", False), ("max_batch_size", 32),
    ],
    patch_object_attn_lens: [
        ("nn_model", None), ("source_prompts", None), ("target_prompts", None), ("attn_idx_patch", None), ("num_patches", 5),
    ],
    get_first_tokens: [("words", None), ("llm_or_tokenizer", None), ("use_hacky_implementation", False)],
    next_token_probs_unsqueeze: [("nn_model", None), ("prompt", None), ("remote", False)],
    run_prompts: [
        ("nn_model", None), ("prompts", None), ("batch_size", 32), ("get_probs_func", None), ("func_kwargs", None),
        ("remote", False), ("tqdm", None),
    ],
    Prompt.from_strings: [("prompt", None), ("target_strings", None), ("tokenizer", None)],
    Prompt.has_no_collisions: [("self", None), ("ignore_targets", None)],
    Prompt.get_target_probs: [("self", None), ("probs", None), ("layer", None)],
    Prompt.run: [("self", None), ("nn_model", None), ("get_probs", None)],
    TargetPromptBatch.from_target_prompts: [("prompts_", None)],
    TargetPromptBatch.from_target_prompt: [("prompt", None), ("batch_size", None)],
    TargetPromptBatch.from_prompts: [("prompts", None), ("index_to_patch", None)],
    TargetPromptBatch.auto: [("target_prompt", None), ("batch_size", None)],
}


@pytest.mark.parametrize("function", list(NNTERP_SIGNATURES), ids=lambda f: f.__qualname__)
def test_signature_starts_like_nnterp(function) -> None:
    params = [p for p in inspect.signature(function).parameters.values() if p.kind is not p.VAR_KEYWORD]
    expected = NNTERP_SIGNATURES[function]
    got = [(p.name, None if p.default is p.empty else p.default) for p in params[: len(expected)]]
    assert got == expected


def test_display_signatures_like_nnterp() -> None:
    from nnspec.display import plot_topk_tokens, prompts_to_df

    params = list(inspect.signature(plot_topk_tokens).parameters.values())[:9]
    assert [(p.name, p.default) for p in params[2:]] == [
        ("k", 4), ("title", None), ("use_token_ids", False), ("file", None), ("save_html", True), ("height", 300), ("width", 400)
    ]
    assert [p.name for p in params[:2]] == ["next_token_probs", "tokenizer"]
    assert list(inspect.signature(prompts_to_df).parameters) == ["prompts", "tokenizer"]


# -- the calls nnterp's own suite makes -------------------------------------------------------------


def test_nnterp_suite_calls_interventions(model) -> None:
    n, vocab = model.num_layers, model.vocab_size
    assert logit_lens(model, ["Hello world", "Test prompt"]).shape == (2, n, vocab)
    assert logit_lens(model, "Hello world").shape == (1, n, vocab)
    assert patchscope_lens(model, ["Hello world", "Test prompt"]).shape == (2, n, vocab)
    assert patchscope_lens(model, ["Hello world"], TargetPrompt("The answer is ?", -1)).shape == (1, n, vocab)
    assert patchscope_lens(model, ["Hello", "World"], layers=[0, n // 2, n - 1]).shape == (2, 3, vocab)
    latents = get_token_activations(model, ["Hello world"])
    got = patchscope_lens(model, source_prompts=None, target_patch_prompts=TargetPrompt("Test prompt", -1), layers=[0, 1], latents=latents)
    assert got.shape == (1, 2, vocab)
    out = patchscope_generate(
        model, prompts=["The capital of France"], target_patch_prompt=TargetPrompt("Paris is located in", -1), max_length=5, layers=[0, 1]
    )
    assert sorted(out) == [0, 1] and all(isinstance(v, torch.Tensor) for v in out.values())
    res = patch_object_attn_lens(model, source_prompts=["Hello world"], target_prompts=["Test prompt here"], attn_idx_patch=0, num_patches=1)
    assert res.shape == (1, n, vocab)
    # the keyword nnterp names the model with
    assert logit_lens(nn_model=model, prompts="Hi").shape == (1, n, vocab)
    assert patchscope_lens(nn_model=model, source_prompts="Hi", layers=0).shape == (1, 1, vocab)


def test_nnterp_suite_calls_target_prompts() -> None:
    batch = TargetPromptBatch.from_target_prompts([TargetPrompt("Hello", -1), TargetPrompt("World", 0)])
    assert len(batch) == 2 and batch.prompts == ["Hello", "World"] and torch.equal(batch.index_to_patch, torch.tensor([-1, 0]))
    assert batch[0].prompt == "Hello" and batch[0].index_to_patch == -1 and batch[1].index_to_patch == 0
    assert [t.prompt for t in batch] == ["Hello", "World"]
    auto = TargetPromptBatch.auto(TargetPrompt("Hello", -1), batch_size=3)
    assert len(auto) == 3 and all(p == "Hello" for p in auto.prompts)
    assert TargetPromptBatch.auto(batch, 7) is batch
    one = TargetPromptBatch.from_prompts("Hello", -1)
    assert one.prompts == ["Hello"] and one.index_to_patch[0] == -1
    two = TargetPromptBatch.from_prompts(["Hello", "World"], [-1, 0])
    assert torch.equal(two.index_to_patch, torch.tensor([-1, 0]))
    assert torch.equal(TargetPromptBatch.from_prompts(["a", "b"], torch.tensor([2, 3])).index_to_patch, torch.tensor([2, 3]))
    rep = TargetPromptBatch.from_target_prompt(TargetPrompt("Test", -1), 3)
    assert rep.prompts == ["Test"] * 3 and torch.equal(rep.index_to_patch, torch.tensor([-1, -1, -1]))
    default = repeat_prompt()
    assert default == TargetPrompt("king king\n1135 1135\nhello hello\n?", -1)
    assert repeat_prompt(words=["cat", "dog"], rel="->", sep=" | ", placeholder="X").prompt == "cat->cat | dog->dog | X"


def test_nnterp_suite_calls_prompt_utils(model) -> None:
    assert isinstance(get_first_tokens("hello", model), list) and get_first_tokens("hello", model)
    assert len(get_first_tokens(["hello", "world"], model)) >= 2
    prompt = Prompt.from_strings("The quick brown fox", "jumps", model)
    assert prompt.prompt == "The quick brown fox" and prompt.target_tokens["target"]
    prompt = Prompt.from_strings("Hello world", {"greeting": "hello", "object": "world"}, model)
    assert set(prompt.target_tokens) == {"greeting", "object"}
    clash = Prompt.from_strings("Hello world", {"greeting": "hello", "punctuation": ".", "greeting2": "hello"}, model)
    assert clash.has_no_collisions() is False
    assert clash.has_no_collisions(ignore_targets="greeting") is True
    assert clash.has_no_collisions(ignore_targets=["greeting", "punctuation"]) is True
    two = Prompt.from_strings("The quick brown fox", {"target": "jumps", "animal": "fox"}, model)
    assert two.get_target_probs(torch.rand(1, 3, model.vocab_size))["animal"].shape == (1, 3)
    ran = two.run(model, lambda nn_model, text: logit_lens(nn_model, text))
    assert ran["target"].shape == (1, model.num_layers)
    probs = next_token_probs_unsqueeze(model, "Hello world")
    assert probs.shape == (1, 1, model.vocab_size)
    prompts = [Prompt.from_strings("Hello world", {"target": "!"}, model), Prompt.from_strings("The quick brown", {"target": "fox"}, model)]
    assert run_prompts(model, prompts, batch_size=2)["target"].shape[0] == 2
    by_layer = run_prompts(model, prompts, batch_size=1, get_probs_func=lambda nn_model, batch, **kw: logit_lens(nn_model, batch))
    assert by_layer["target"].shape == (2, model.num_layers)
    assert run_prompts(model, prompts[:1], batch_size=1)["target"].shape[0] == 1


# -- values against plain transformers ----------------------------------------------------------------


def test_logit_lens_inverse_by_hand(pair) -> None:
    model, hf = pair
    prompts = ["The capital of France is", "Hi"]
    probs, inverse = logit_lens(model, prompts, return_inv_logits=True)
    assert torch.equal(probs, logit_lens(model, prompts))
    for row, prompt in enumerate(prompts):
        outs = hf_block_outputs(hf, model.tokenizer, prompt)
        for layer, out in enumerate(outs):
            normed = hf.model.norm(out[-1])
            with torch.no_grad():
                assert torch.allclose(probs[row, layer], hf.lm_head(normed).softmax(-1), atol=ATOL)
                assert torch.allclose(inverse[row, layer], hf.lm_head(-normed).softmax(-1), atol=ATOL)
    sub, sub_inv = logit_lens(model, prompts, return_inv_logits=True, layers=[2, 0])
    assert torch.allclose(sub_inv, inverse[:, [2, 0]], atol=1e-6) and torch.allclose(sub, probs[:, [2, 0]], atol=1e-6)


def test_inverse_logits_negate_the_normalized_state() -> None:
    """With a final LayerNorm that has a bias, negating before or after the norm differ: the
    inverse logits negate the norm's output."""
    path = checkpoint("gpt2")
    hf = AutoModelForCausalLM.from_pretrained(path).eval()
    with torch.no_grad():
        hf.transformer.ln_f.bias.copy_(torch.randn(hf.config.n_embd, generator=torch.Generator().manual_seed(0)))
    model = StandardizedTransformer(hf, tokenizer=AutoTokenizer.from_pretrained(path))
    _, inverse = logit_lens(model, "Hello world", return_inv_logits=True, layers=[1])
    with torch.no_grad():
        states = hf(**model.tokenizer("Hello world", return_tensors="pt"), output_hidden_states=True).hidden_states
        expected = hf.lm_head(-hf.transformer.ln_f(states[2][0, -1])).softmax(-1)
        other = hf.lm_head(hf.transformer.ln_f(-states[2][0, -1])).softmax(-1)
    assert torch.allclose(inverse[0, 0], expected, atol=ATOL)
    assert not torch.allclose(expected, other, atol=1e-3)


def test_patchscope_latents_both_layouts_against_hf(pair) -> None:
    model, hf = pair
    targets = [TargetPrompt("The capital of France is", 2), TargetPrompt("Hello", -1)]
    per_model_layer = torch.randn(model.num_layers, 2, model.hidden_size, generator=torch.Generator().manual_seed(0))
    layers = [2, 0]
    per_requested = per_model_layer[layers]  # latents[k] is for layers[k]
    a = patchscope_lens(model, target_patch_prompts=targets, layers=layers, latents=per_requested)
    b = patchscope_lens(model, target_patch_prompts=targets, layers=layers, latents=per_model_layer)
    c = patchscope_lens(model, target_patch_prompts=targets, layers=layers, latents=list(per_requested))
    assert a.shape == (2, 2, model.vocab_size)
    for s, target in enumerate(targets):
        for k, layer in enumerate(layers):
            expected = hf_probs_with_block_patch(hf, model.tokenizer, target.prompt, layer, target.index_to_patch, per_model_layer[layer, s])
            assert torch.allclose(a[s, k], expected, atol=ATOL)
    assert torch.allclose(b, a, atol=1e-6) and torch.allclose(c, a, atol=1e-6)
    # sources read by the lens itself equal their states given as latents
    sources = ["The capital of England is", "Hi there"]
    states = get_token_activations(model, sources)
    assert torch.allclose(
        patchscope_lens(model, sources, targets, layers=[1]), patchscope_lens(model, None, targets, [1], states), atol=1e-6
    )


def test_patch_object_attn_lens_against_hf(pair) -> None:
    model, hf = pair
    source = "The capital of England is London"
    targets = ["The capital of France is", "Hello there my good friend"]
    index, span = 1, 2
    got = patch_object_attn_lens(model, source, targets, attn_idx_patch=index, num_patches=span)
    assert got.shape == (2, model.num_layers, model.vocab_size)
    values = [x[-1] for x in hf_attention_inputs(hf, model.tokenizer, source)]
    for t, target in enumerate(targets):
        for start in range(model.num_layers):
            patched = range(start, min(model.num_layers, start + span))
            expected = hf_probs_with_attention_patch(hf, model.tokenizer, target, patched, index, values)
            assert torch.allclose(got[t, start], expected, atol=ATOL), (t, start)
    chunked = patch_object_attn_lens(model, [source, source], targets, attn_idx_patch=index, num_patches=span, batch_size=2)
    assert torch.allclose(chunked, got, atol=1e-6)


def test_next_token_probs_unsqueeze_and_run_prompts_against_hf(pair) -> None:
    model, hf = pair
    texts = ["The capital of France is", "Hi"]
    got = next_token_probs_unsqueeze(nn_model=model, prompt=texts, remote=False, ignored_keyword=1)
    prompts = [Prompt.from_strings(t, {"a": "Paris", "b": ["is", "the"]}, model.tokenizer) for t in texts]
    tracked = run_prompts(model, prompts, batch_size=1, get_probs_func=next_token_probs_unsqueeze)
    for row, text in enumerate(texts):
        with torch.no_grad():
            expected = hf(**model.tokenizer(text, return_tensors="pt")).logits[0, -1].softmax(-1)
        assert torch.allclose(got[row, 0], expected, atol=ATOL)
        for category, tokens in prompts[row].target_tokens.items():
            assert tracked[category].shape == (2, 1)
            assert torch.allclose(tracked[category][row, 0], expected[tokens].sum(), atol=ATOL)


def test_get_target_probs_one_layer_counts_from_the_end() -> None:
    prompt = Prompt("x", {"a": [1, 3], "b": [2]})
    probs = torch.rand(2, 3, 5)
    last = prompt.get_target_probs(probs, layer=-1)
    assert torch.allclose(last["a"], probs[:, -1, [1, 3]].sum(-1)) and last["b"].shape == (2,)
    assert torch.allclose(prompt.get_target_probs(probs, layer=1)["b"], probs[:, 1, 2])


def test_first_tokens_hacky_flag_and_error_names(model) -> None:
    both = get_first_tokens(["Paris"], model.tokenizer)
    glued = get_first_tokens(["Paris"], model.tokenizer, use_hacky_implementation=True)
    assert len(both) == 2 and glued == both[:1]
    assert TargetTokenizationError is TokenizationError and issubclass(TokenizationError, ValueError)
    for error in (TokenizationError, TargetTokenizationError):
        with pytest.raises(error, match="tokenizes to nothing"):
            get_first_tokens(["  "], model)


def test_it_repeat_prompt_uses_the_chat_template() -> None:
    tok = AutoTokenizer.from_pretrained(checkpoint("llama"))
    with pytest.raises(InputError, match="no chat template.*repeat_prompt"):
        it_repeat_prompt(tok)
    tok.chat_template = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% if not loop.last %}</>{% endif %}{% endfor %}"
    text = "a a\nb b\n?"
    full = it_repeat_prompt(tok, words=["a", "b"])
    assert full.index_to_patch == -1
    assert full.prompt.startswith("<system>") and full.prompt.endswith(f"</><user>{text}</><assistant>{text}")
    assert full.prompt.count("<user>") == 2 and full.prompt.count("<assistant>") == 2
    open_answer = it_repeat_prompt(tok, words=["a", "b"], complete_prompt=False)
    assert open_answer.prompt.endswith(f"<user>{text}</><assistant>")
    bare = it_repeat_prompt(tok, words=["a", "b"], add_user_instr=False, use_system_prompt=False)
    assert bare.prompt.startswith("<user>") and bare.prompt.count("<user>") == 1 and bare.prompt.endswith(f"{text}</><assistant>{text}")
    system = it_repeat_prompt(tok, words=["a", "b"], add_user_instr=False, complete_prompt=False)
    assert system.prompt.startswith("<system>") and system.prompt.endswith(f"<user>{text}</><assistant>")
    tok.chat_template = "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system role') }}{% endif %}{{ m['content'] }}{% endfor %}"
    with pytest.raises(InputError, match="no system role.*use_system_prompt=False"):
        it_repeat_prompt(tok)
    assert it_repeat_prompt(tok, use_system_prompt=False).prompt.endswith("hello hello\n?")


# -- display: optional dependencies -------------------------------------------------------------------


def test_display_needs_the_extra(model, monkeypatch: pytest.MonkeyPatch) -> None:
    from nnspec.display import plot_topk_tokens, prompts_to_df, topk_tokens

    for name in ("plotly", "plotly.graph_objects", "plotly.subplots", "pandas", "kaleido"):
        monkeypatch.setitem(sys.modules, name, None)  # importing it now fails, installed or not
    probs = torch.rand(2, 3, model.vocab_size)
    with pytest.raises(ImportError, match=r"writes an image, which needs kaleido"):
        plot_topk_tokens(probs, model.tokenizer, file="top.png", show=False)
    with pytest.raises(ImportError, match=r"plot_topk_tokens needs plotly.*nnspec\[display\]"):
        plot_topk_tokens(probs, model.tokenizer, show=False)
    with pytest.raises(ImportError, match=r"prompts_to_df needs pandas.*nnspec\[display\]"):
        prompts_to_df([Prompt.from_strings("x", "Paris", model.tokenizer)], model.tokenizer)
    top = topk_tokens(probs[0, 1], model.tokenizer, k=3)
    assert top["probs"].shape == (1, 1, 3) and torch.equal(top["ids"][0, 0], probs[0, 1].topk(3).indices)
    assert top["tokens"][0][0] == model.tokenizer.convert_ids_to_tokens(probs[0, 1].topk(3).indices.tolist())
    with pytest.raises(InputError, match="k must be"):
        topk_tokens(probs, model.tokenizer, k=0)
    with pytest.raises(ShapeMismatchError, match="next_token_probs"):
        topk_tokens(probs[None], model.tokenizer)


def test_display_with_plotly_and_pandas(model, tmp_path) -> None:
    pytest.importorskip("plotly")
    pd = pytest.importorskip("pandas")
    from nnspec.display import plot_topk_tokens, prompts_to_df

    probs = logit_lens(model, ["Hello", "The capital of France is"])
    fig = plot_topk_tokens(probs, model.tokenizer, k=3, file=tmp_path / "top.html", show=False)
    assert len(fig.data) == 2 and (tmp_path / "top.html").exists()
    assert torch.allclose(torch.tensor(fig.data[1].z), probs[1].topk(3).values, atol=1e-6)
    prompts = [Prompt.from_strings("x", {"t": "Paris"}, model.tokenizer), Prompt.from_strings("y", {"t": ["Rome"]}, model.tokenizer)]
    df = prompts_to_df(prompts, model.tokenizer)
    assert isinstance(df, pd.DataFrame) and list(df.columns) == [0, 1]
    assert df[1]["prompt"] == "y" and df[0]["t_tokens"] == model.tokenizer.convert_ids_to_tokens(prompts[0].target_tokens["t"])


# -- bad input, refused before any forward ----------------------------------------------------------


def test_bad_input_is_refused_before_any_forward(model, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_forward(*args, **kwargs):
        raise AssertionError("a forward ran before the input was checked")

    latents = torch.zeros(model.num_layers, 1, model.hidden_size)
    monkeypatch.setattr(model, "trace", no_forward)
    monkeypatch.setattr(model, "generate", no_forward)
    cases = [
        (InputTypeError, "return_inv_logits must be True or False", lambda: logit_lens(model, "Hi", return_inv_logits="yes")),
        (ShapeMismatchError, r"one per model layer \(3, num_sources, 64\)",
         lambda: patchscope_lens(model, latents=torch.zeros(2, 1, 64), layers=[0, 1, 2])),
        (ShapeMismatchError, "latents: expected", lambda: patchscope_lens(model, latents=torch.zeros(3, 64), layers=[0])),
        (ShapeMismatchError, "differ in shape", lambda: patchscope_lens(model, latents=[torch.zeros(1, 64), torch.zeros(2, 64)], layers=[0, 1])),
        (InputError, "exactly one of source_prompts= and latents=", lambda: patchscope_lens(model, "Hi", latents=latents)),
        (PositionError, "index_to_patch=9 is out of range", lambda: patchscope_lens(model, "Hi", TargetPrompt("Hello", 9), layers=[0])),
        (InputError, "2 target prompts for 1 sources", lambda: patchscope_lens(model, "Hi", [repeat_prompt(), repeat_prompt()])),
        (InputError, "batch_size must be", lambda: patchscope_lens(model, "Hi", layers=[0], batch_size=0)),
        (InputError, "max_length must be", lambda: patchscope_generate(model, "Hi", repeat_prompt(), max_length=0)),
        (PositionError, "index_to_patch=5 is out of range",
         lambda: patchscope_generate(model, "Hi", TargetPrompt("Hello", 5), layers=[0])),
        (InputError, "num_patches must be", lambda: patch_object_attn_lens(model, "Hi", "Hello", 0, num_patches=0)),
        (PositionError, "attn_idx_patch=7 is out of range", lambda: patch_object_attn_lens(model, "Hi", "Hello", 7)),
        (InputError, "2 source prompts for 3 target prompts",
         lambda: patch_object_attn_lens(model, ["a", "b"], ["c", "d", "e"], 0)),
        (InputTypeError, "attn_idx_patch is a str", lambda: patch_object_attn_lens(model, "Hi", "Hello", "0")),
        (InputTypeError, "words is a str", lambda: repeat_prompt("king")),
        (InputTypeError, r"index_to_patch\[1\] is a float", lambda: TargetPromptBatch.from_prompts(["a", "b"], [0, 1.5])),
        (InputError, "2 patch indices for 1 target prompts", lambda: TargetPromptBatch.from_prompts("a", [0, 1])),
        (InputTypeError, r"target prompts\[1\] is a str", lambda: TargetPromptBatch.from_target_prompts([TargetPrompt("a", 0), "b"])),
        (InputTypeError, "tokenizer is a int", lambda: it_repeat_prompt(3)),
        (KeyError, "unknown category 'greting'.*did you mean 'greeting'",
         lambda: Prompt("x", {"greeting": [1]}).has_no_collisions(ignore_targets="greting")),
        (ShapeMismatchError, r"probs: expected \(batch, layers, vocab\)", lambda: Prompt("x", {"a": [1]}).get_target_probs(torch.rand(2, 5))),
        (IndexError, "layer=3 is out of range", lambda: Prompt("x", {"a": [1]}).get_target_probs(torch.rand(2, 3, 5), layer=3)),
        (InputTypeError, r"prompts\[0\] is a str", lambda: run_prompts(model, ["Hi"])),
        (InputError, "batch_size must be", lambda: run_prompts(model, [Prompt("x", {"a": [1]})], batch_size=0)),
        (InputTypeError, "llm_or_tokenizer is a int", lambda: get_first_tokens("a", 3)),
    ]
    for error, message, call in cases:
        with pytest.raises(error, match=message):
            call()


def test_patch_object_attn_lens_names_a_model_without_attention_input(model, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model.attentions_input, "unavailable", "this model's token mixer is a state space")
    with pytest.raises(CapabilityUnavailableError, match="patches the attention input.*state space"):
        patch_object_attn_lens(model, "Hi", "Hello", 0)


def test_run_prompts_checks_what_get_probs_func_returns(model) -> None:
    prompts = [Prompt.from_strings("Hi", "Paris", model.tokenizer)]
    with pytest.raises(ShapeMismatchError, match=r"get_probs_func returned \(1, \d+\) for 1 prompts"):
        run_prompts(model, prompts, get_probs_func=lambda nn_model, batch, **kw: torch.rand(1, model.vocab_size))
