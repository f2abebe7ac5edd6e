"""nnterp's functional API, ModuleAccessor, RenameConfig and load_model against plain transformers.

Ground truth: a separately loaded AutoModelForCausalLM with forward hooks on the modules named in
the table below (written by hand, not read from the specs), its hidden states and its logits.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Optional

import pytest
import torch
from nnsight import NNsight
from transformers import AutoModelForCausalLM, AutoTokenizer

from nnspec import StandardizedTransformer
from nnspec.errors import (
    CapabilityUnavailableError,
    InputError,
    InputTypeError,
    LayerIndexError,
    ShapeMismatchError,
    UnsupportedArchitectureError,
)
from nnspec.nnsight_utils import (
    ModuleAccessor,
    collect_last_token_activations_session,
    collect_token_activations_batched,
    compute_next_token_probs,
    get_attention,
    get_attention_output,
    get_embed_tokens,
    get_layer,
    get_layer_input,
    get_layer_output,
    get_layers,
    get_logits,
    get_mlp,
    get_mlp_output,
    get_next_token_probs,
    get_num_layers,
    get_token_activations,
    get_unembed,
    get_unembed_norm,
    load_model,
    project_on_vocab,
    set_layer_output,
)
from nnspec.rename_utils import (
    RenameConfig,
    RenamingError,
    check_model_renaming,
    get_hidden_size,
    get_ignores,
    get_num_attention_heads,
    get_rename_dict,
    get_vocab_size,
)
from tests.conftest import checkpoint

# Hand-written module paths of each tiny architecture: blocks, attention / MLP inside a block,
# final norm, token embedding, the module holding the blocks; and for nnspec's attentions_output
# the module whose output the block adds (Gemma 2 adds its post-attention norm's output).
PATHS = {
    "llama": ("model.layers", "self_attn", "mlp", "model.norm", "model.embed_tokens", "model", "self_attn"),
    "gpt2": ("transformer.h", "attn", "mlp", "transformer.ln_f", "transformer.wte", "transformer", "attn"),
    "opt": ("model.decoder.layers", "self_attn", None, "model.decoder.final_layer_norm", "model.decoder.embed_tokens",
            "model", "self_attn"),
    "bloom": ("transformer.h", "self_attention", "mlp", "transformer.ln_f", "transformer.word_embeddings", "transformer",
              None),
    "gemma2": ("model.layers", "self_attn", "mlp", "model.norm", "model.embed_tokens", "model", "post_attention_layernorm"),
    "qwen2_moe": ("model.layers", "self_attn", "mlp", "model.norm", "model.embed_tokens", "model", "self_attn"),
}
SPECS = list(PATHS)
PROMPT = "The quick brown fox jumps"
PROMPTS = ["Hello world", "The quick brown fox jumps over", "Hi"]
ATOL = 1e-5


@functools.cache
def loaded(name: str) -> tuple[Any, Any, Any, Any]:
    """(plain NNsight model from load_model, StandardizedTransformer, plain HF model, tokenizer)."""
    path = str(checkpoint(name))
    hf = AutoModelForCausalLM.from_pretrained(path).eval()
    return load_model(path), StandardizedTransformer(path), hf, AutoTokenizer.from_pretrained(path)


def first(value: Any) -> torch.Tensor:
    return value[0] if isinstance(value, (tuple, list)) else value


def hf_run(name: str, prompt: str = PROMPT, edit: Optional[tuple[str, Any]] = None) -> dict[str, Any]:
    """Plain transformers: block inputs/outputs, attention/MLP module outputs, contribution-module
    outputs (by hooks), hidden states and logits; ``edit`` = (module path, fn(output) -> output)."""
    _, _, hf, tok = loaded(name)
    layers, attn, mlp, *_, contribution = PATHS[name]
    blocks = hf.get_submodule(layers)
    seen: dict[str, Any] = {}
    handles = []

    def keep(key: str) -> Any:
        def hook(module: Any, args: tuple, kwargs: dict, output: Any) -> None:
            seen[key] = (args[0] if args else next(iter(kwargs.values())), output)

        return hook

    for i, block in enumerate(blocks):
        handles.append(block.register_forward_hook(keep(f"block{i}"), with_kwargs=True))
        handles.append(block.get_submodule(attn).register_forward_hook(keep(f"attn{i}"), with_kwargs=True))
        if mlp:
            handles.append(block.get_submodule(mlp).register_forward_hook(keep(f"mlp{i}"), with_kwargs=True))
        if contribution and contribution != attn:
            handles.append(block.get_submodule(contribution).register_forward_hook(keep(f"contrib{i}"), with_kwargs=True))
    if edit is not None:
        handles.append(hf.get_submodule(edit[0]).register_forward_hook(lambda m, a, o: edit[1](o)))
    try:
        with torch.no_grad():
            out = hf(**tok(prompt, return_tensors="pt"), output_hidden_states=True)
    finally:
        for handle in handles:
            handle.remove()
    seen["hidden_states"] = out.hidden_states
    seen["logits"] = out.logits
    return seen


def close(a: Any, b: Any) -> bool:
    return a.shape == b.shape and torch.allclose(a, b, atol=ATOL)


# -- the functional API on a plain NNsight model and on a StandardizedTransformer ----------------


@pytest.mark.parametrize("name", SPECS)
def test_functions_on_plain_nnsight_model_match_transformers(name: str) -> None:
    raw, _, _, _ = loaded(name)
    truth = hf_run(name)
    n = get_num_layers(raw)
    assert n == len(truth["hidden_states"]) - 1
    has_mlp = PATHS[name][2] is not None
    got: list[Any] = []
    with raw.trace(PROMPT):
        for i in range(n):
            got.append((
                get_layer_input(raw, i).save(),
                get_attention_output(raw, i).save(),
                get_mlp_output(raw, i).save() if has_mlp else None,
                get_layer_output(raw, i).save(),
            ))
        projected = project_on_vocab(raw, got[-1][3]).save()
        logits = get_logits(raw).save()
        probs = get_next_token_probs(raw).save()
    for i, (layer_in, attn_out, mlp_out, layer_out) in enumerate(got):
        block_in, block_out = truth[f"block{i}"]
        assert close(layer_in, block_in), f"{name}: get_layer_input({i})"
        assert close(attn_out, first(truth[f"attn{i}"][1])), f"{name}: get_attention_output({i}) is the module output"
        if has_mlp:
            assert close(mlp_out, first(truth[f"mlp{i}"][1])), f"{name}: get_mlp_output({i})"
        assert close(layer_out, first(block_out)), f"{name}: get_layer_output({i})"
        if i < n - 1:
            assert close(layer_out, truth["hidden_states"][i + 1])
    assert close(logits, truth["logits"])
    assert close(projected, truth["logits"]), f"{name}: project_on_vocab(last layer output) == logits"
    assert close(probs, truth["logits"][:, -1].softmax(-1))


@pytest.mark.parametrize("name", SPECS)
def test_functions_on_standardized_transformer_keep_nnspec_meaning(name: str) -> None:
    _, st, _, _ = loaded(name)
    truth = hf_run(name)
    n = get_num_layers(st)
    got: list[Any] = []
    with st.trace(PROMPT):
        for i in range(n):
            got.append((get_layer_input(st, i).save(), get_attention_output(st, i).save(), get_mlp_output(st, i).save(),
                        get_layer_output(st, i).save()))
        projected = project_on_vocab(st, got[-1][3]).save()
        logits = get_logits(st).save()
        probs = get_next_token_probs(st).save()
    contribution = PATHS[name][6]
    for i, (layer_in, attn_out, mlp_out, layer_out) in enumerate(got):
        assert close(layer_in, truth["hidden_states"][i]) if i == 0 else close(layer_in, first(truth[f"block{i}"][0]))
        assert torch.allclose(layer_in + attn_out + mlp_out, layer_out, atol=1e-4), f"{name}: contributions add up"
        if contribution is not None:
            key = f"contrib{i}" if contribution != PATHS[name][1] else f"attn{i}"
            assert close(attn_out, first(truth[key][1])), f"{name}: get_attention_output({i}) is the contribution"
        if i < n - 1:
            assert close(layer_out, truth["hidden_states"][i + 1])
    assert close(logits, truth["logits"]) and close(projected, truth["logits"])
    assert close(probs, truth["logits"][:, -1].softmax(-1))


@pytest.mark.parametrize("name", ["llama", "gpt2", "bloom"])
def test_set_layer_output_matches_a_transformers_hook(name: str) -> None:
    raw, st, _, _ = loaded(name)

    def doubled(output: Any) -> Any:
        return (output[0] * 2, *output[1:]) if isinstance(output, tuple) else output * 2

    truth = hf_run(name, edit=(f"{PATHS[name][0]}.0", doubled))["logits"]
    for model in (raw, st):
        with model.trace(PROMPT):
            set_layer_output(model, 0, get_layer_output(model, 0) * 2)
            logits = get_logits(model).save()
        assert close(logits, truth), f"{name}: set_layer_output on {type(model).__name__}"
    with pytest.raises(ShapeMismatchError):
        with raw.trace(PROMPT):
            set_layer_output(raw, 0, torch.zeros(1, 2, 3))


@pytest.mark.parametrize("name", SPECS)
def test_module_getters_return_the_spec_modules(name: str) -> None:
    raw, st, hf, _ = loaded(name)
    layers, attn, mlp, norm, embed, backbone, _ = PATHS[name]
    root = raw._module
    assert get_layers(raw)._module is root.get_submodule(layers)
    assert get_layer(raw, -1)._module is root.get_submodule(layers)[-1]
    assert get_attention(raw, 1)._module is root.get_submodule(layers)[1].get_submodule(attn)
    assert get_unembed_norm(raw)._module is root.get_submodule(norm)
    assert get_embed_tokens(raw)._module is root.get_submodule(embed)
    assert get_unembed(raw)._module is root.lm_head
    assert get_attention(st, 1)._module is st._module.get_submodule(layers)[1].get_submodule(attn)
    if mlp is None:
        for model in (raw, st):
            with pytest.raises(CapabilityUnavailableError, match="no MLP module"):
                get_mlp(model, 0)
    else:
        assert get_mlp(raw, 2)._module is root.get_submodule(layers)[2].get_submodule(mlp)
    with pytest.raises(LayerIndexError):
        get_layer(raw, 99)
    with pytest.raises(ShapeMismatchError):
        project_on_vocab(raw, torch.zeros(2, 7))

    accessor = ModuleAccessor(hf)
    assert accessor.get_layers() is hf.get_submodule(layers) and isinstance(accessor.get_layers(), torch.nn.ModuleList)
    assert accessor.layers is hf.get_submodule(layers)
    assert accessor.get_attention(1) is hf.get_submodule(layers)[1].get_submodule(attn)
    assert accessor.get_unembed_norm() is hf.get_submodule(norm) and accessor.ln_final is hf.get_submodule(norm)
    assert accessor.get_embed_tokens() is hf.get_submodule(embed) and accessor.embed_tokens is hf.get_submodule(embed)
    assert accessor.get_unembed() is hf.lm_head and accessor.lm_head is hf.lm_head
    assert accessor.model is hf.get_submodule(backbone)
    assert isinstance(accessor.nn_model, NNsight)
    if mlp is None:
        with pytest.raises(CapabilityUnavailableError, match="'opt' spec"):
            accessor.get_mlp(0)
        assert get_ignores(hf) == ["mlp"]
    else:
        assert accessor.get_mlp(2) is hf.get_submodule(layers)[2].get_submodule(mlp)
        assert get_ignores(hf) == []
    with pytest.raises(AttributeError, match="Attribute config is not a module"):
        accessor.config
    with pytest.raises(AttributeError):
        accessor.no_such_module


# -- activation collection ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["llama", "gpt2"])
def test_token_activations_match_each_prompt_alone(name: str) -> None:
    raw, st, _, _ = loaded(name)
    truths = [hf_run(name, p) for p in PROMPTS]
    n = get_num_layers(raw)
    layers = list(range(n - 1))
    expected = torch.stack([torch.stack([t["hidden_states"][i + 1][0, -1] for t in truths]) for i in layers])
    for model in (raw, st):
        acts = get_token_activations(model, PROMPTS, layers=layers)
        assert close(acts, expected), f"{name}: get_token_activations on {type(model).__name__}"
        batched = collect_token_activations_batched(model, PROMPTS, 2, layers=layers)
        assert close(batched, expected)
        first_tokens = get_token_activations(model, PROMPTS, layers=[0], idx=0)
        assert close(first_tokens[0], torch.stack([t["hidden_states"][1][0, 0] for t in truths]))
        probs = compute_next_token_probs(model, PROMPTS)
        assert close(probs, torch.stack([t["logits"][0, -1].softmax(-1) for t in truths]))
    attn = collect_token_activations_batched(raw, PROMPTS, 1, layers=[1], get_activations=get_attention_output)
    assert close(attn[0], torch.stack([first(t["attn1"][1])[0, -1] for t in truths]))
    session = collect_last_token_activations_session(raw, PROMPTS, 2, layers=layers)
    assert close(session, expected)
    with raw.trace(PROMPTS[0]) as tracer:
        inside = get_token_activations(raw, layers=[0], tracer=tracer).save()
    assert close(inside[0], truths[0]["hidden_states"][1][:, -1])
    with pytest.raises(InputError, match="prompts"):
        get_token_activations(raw)
    with pytest.raises(InputError, match="batch_size"):
        collect_token_activations_batched(raw, PROMPTS, 0)


# -- RenameConfig ---------------------------------------------------------------------------------


def test_rename_config_equivalent_to_the_spec_gives_identical_values() -> None:
    _, st, _, _ = loaded("gpt2")
    path = str(checkpoint("gpt2"))
    config = RenameConfig(
        model_name="transformer", layers_name=["layers", "h"], attn_name=["self_attn", "attn"], mlp_name="mlp",
        ln_final_name="ln_f", lm_head_name="lm_head", attn_head_config_key=["n_heads", "n_head"],
        hidden_size_config_key=64, vocab_size_config_key="vocab_size",
    )
    renamed = StandardizedTransformer(path, rename_config=config)
    assert renamed.spec.modules == st.spec.modules and renamed.spec.attention.module == "attn"
    assert (renamed.num_heads, renamed.hidden_size, renamed.vocab_size) == (st.num_heads, st.hidden_size, st.vocab_size)
    outputs = []
    for model in (st, renamed):
        with model.trace(PROMPT):
            outputs.append((model.attentions_output[1].save(), model.mlps_output[2].save(), model.logits.save()))
    for a, b in zip(*outputs):
        assert torch.equal(a, b)
    llama = StandardizedTransformer(str(checkpoint("llama")), rename_config=RenameConfig(model_name="model", layers_name="layers"))
    assert llama.spec.modules.layers == "model.layers"


def test_rename_config_naming_a_missing_module_raises_before_any_forward() -> None:
    path = str(checkpoint("gpt2"))
    cases = [
        (RenameConfig(attn_name="atn"), r"attn_name='atn'.*closest: 'attn'"),
        (RenameConfig(layers_name="hh"), r"layers_name='hh'"),
        (RenameConfig(ln_final_name=["ln_final", "norm_f"]), r"ln_final_name=.*closest: 'transformer.ln_f'"),
        (RenameConfig(lm_head_name="unembed"), r"lm_head_name='unembed'"),
        (RenameConfig(model_name="decoder"), r"model_name='decoder'"),
        (RenameConfig(layers_name="wte"), r"not a non-empty list of blocks"),
        (RenameConfig(hidden_size_config_key="hiden_size"), r"hidden_size_config_key='hiden_size'.*closest"),
        (RenameConfig(hidden_size_config_key=32), r"hidden_size_config_key=32 but the config's 'hidden_size' is 64"),
    ]
    for config, message in cases:
        with pytest.raises(RenamingError, match=message):
            StandardizedTransformer(path, rename_config=config)
    with pytest.raises(InputError, match="attn_prob_source"):
        StandardizedTransformer(path, rename_config=RenameConfig(attn_prob_source=lambda m, r=False: m))
    with pytest.raises(InputTypeError, match="RenameConfig"):
        StandardizedTransformer(path, rename_config={"attn_name": "attn"})
    with pytest.raises(InputTypeError, match="attn_name"):
        StandardizedTransformer(path, rename_config=RenameConfig(attn_name=3))
    _, _, hf, _ = loaded("gpt2")
    with pytest.raises(RenamingError, match="mlp_name='ffn'"):
        ModuleAccessor(hf, rename_config=RenameConfig(mlp_name="ffn"))
    accessor = ModuleAccessor(hf, rename_config=RenameConfig(ignore_mlp=True))
    with pytest.raises(CapabilityUnavailableError):
        accessor.get_mlp(0)


def test_rename_utils_read_the_specs_and_the_config() -> None:
    _, _, hf, _ = loaded("gpt2")
    aliases = get_rename_dict()
    assert aliases["transformer.h"] == "layers" and aliases["model.layers"] == "layers"
    assert aliases["self_attention"] == "self_attn" and aliases["transformer"] == "model"
    assert get_rename_dict(RenameConfig(attn_name=["foo", "bar"]))["bar"] == "self_attn"
    assert get_num_attention_heads(hf) == 4 and get_hidden_size(hf) == 64 and get_vocab_size(hf) == hf.config.vocab_size
    assert get_num_attention_heads(hf, rename_config=RenameConfig(attn_head_config_key=7)) == 7
    assert get_hidden_size(hf, rename_config=RenameConfig(hidden_size_config_key=["absent", "n_embd"])) == 64
    raw, _, _, _ = loaded("llama")
    assert get_num_attention_heads(raw) == 4
    check_model_renaming(raw, "llama", [], True)
    broken = AutoModelForCausalLM.from_pretrained(str(checkpoint("llama")))
    del broken.model.layers[1].self_attn
    with pytest.raises(RenamingError, match="self_attn"):
        check_model_renaming(NNsight(broken), "broken llama", [], True)


def test_unsupported_architecture_is_named() -> None:
    class Config:
        model_type = "no_such_type"

    module = torch.nn.Linear(2, 2)
    module.config = Config()
    with pytest.raises(UnsupportedArchitectureError, match="no_such_type"):
        get_num_layers(NNsight(module))
    with pytest.raises(InputTypeError, match="NNsight model"):
        get_num_layers(module)


# -- loading --------------------------------------------------------------------------------------


def test_load_model_through_a_private_hub_cache(tmp_path: Path) -> None:
    source = checkpoint("llama")
    repo = tmp_path / "hub" / "models--org--tiny-llama"
    snapshot = repo / "snapshots" / ("b" * 40)
    snapshot.mkdir(parents=True)
    for file in source.iterdir():
        (snapshot / file.name).write_bytes(file.read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("b" * 40)
    script = textwrap.dedent(f"""
        import torch
        from transformers import AutoModelForCausalLM
        from nnspec.nnsight_utils import load_model, get_layer_output, get_logits
        model = load_model("org/tiny-llama")
        with model.trace("Hello world"):
            hidden = get_layer_output(model, 0).save()
            logits = get_logits(model).save()
        hf = AutoModelForCausalLM.from_pretrained({str(source)!r})
        ids = model.tokenizer("Hello world", return_tensors="pt")
        with torch.no_grad():
            out = hf(**ids, output_hidden_states=True)
        assert torch.allclose(hidden, out.hidden_states[1], atol=1e-5)
        assert torch.allclose(logits, out.logits, atol=1e-5)
        print("ok", type(model).__name__)
    """)
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ok LanguageModel" in done.stdout


def test_name_tables_and_utils() -> None:
    from transformers import OPTForCausalLM

    import nnspec
    from nnspec import rename_utils, utils
    from nnspec.logging import logger

    assert "transformer.h" in rename_utils.LAYER_NAMES and "self_attention" in rename_utils.ATTENTION_NAMES
    assert "transformer" in rename_utils.MODEL_NAMES and "model.decoder.final_layer_norm" in rename_utils.LN_NAMES
    assert OPTForCausalLM in rename_utils.IGNORE_MLP_MODELS
    assert "transformer.layers" in rename_utils.expand_path_with_model(["model.layers"])
    assert nnspec.get_rename_dict is get_rename_dict and nnspec.ModuleAccessor is ModuleAccessor
    assert utils.unpack_tuple((1, 2)) == 1 and utils.dummy_inputs()["input_ids"].shape == (1, 3)
    assert utils.NNSIGHT_VERSION and utils.TRANSFORMERS_VERSION and logger.name == "nnspec"
    raw, _, _, _ = loaded("llama")
    shapes = []
    assert utils.try_with_scan(raw, lambda: shapes.append(tuple(get_layer_output(raw, 0).shape)), RuntimeError("x"), True)
    assert shapes == [(1, 3, 64)]
