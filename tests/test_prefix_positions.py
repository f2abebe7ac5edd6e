"""Models whose blocks see positions in front of the input (``layer.prefix``: CPM-Ant's learned
prompt tokens), modules that take their input tensor in several slots, and head counts that differ
between layers (Dots 3 Note's sliding layers)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nnspec.compiler.schema import LayerIO
from nnspec.errors import CapabilityUnavailableError, ModelStructureError, ShapeMismatchError
from tests.conftest import checkpoint


@pytest.mark.parametrize("bad", [0, -3, True])
def test_prefix_must_be_a_key_or_a_positive_count(bad: object) -> None:
    with pytest.raises(ValueError, match="prefix must be"):
        LayerIO(prefix=bad)
    assert LayerIO(prefix="prompt_length").prefix == "prompt_length"
    assert LayerIO(prefix=4).prefix == 4


@pytest.fixture(scope="module")
def cpmant() -> tuple:
    from transformers import AutoModelForCausalLM

    from nnspec import StandardizedTransformer

    path = checkpoint("cpmant")
    hf = AutoModelForCausalLM.from_pretrained(str(path), attn_implementation="eager", dtype=torch.float32).eval()
    model = StandardizedTransformer(str(path), attn_implementation="eager", dtype=torch.float32)
    return hf, model


def test_values_cover_the_input_positions(cpmant: tuple) -> None:
    hf, model = cpmant
    prompt_length = hf.config.prompt_length
    assert model.prefix_positions == prompt_length > 0
    ids = torch.tensor([[5, 17, 42, 9, 33]])
    with torch.no_grad():
        reference = hf(ids, output_hidden_states=True)
    with model.trace(ids):
        embeddings = model.token_embeddings.save()
        first_in = model.layers_input[0].save()
        attention = model.attentions_output[0].save()
        out = model.layers_output[1].save()
        last = model.layers_output[-1].save()
        logits = model.logits.save()
    assert first_in.shape == out.shape == embeddings.shape == attention.shape == (1, 5, model.hidden_size)
    torch.testing.assert_close(first_in, reference.hidden_states[0])
    torch.testing.assert_close(out, reference.hidden_states[2])
    torch.testing.assert_close(embeddings, hf.get_input_embeddings()(ids))
    assert logits.shape == (1, 5, hf.config.vocab_size)
    torch.testing.assert_close(model.project_on_vocab(last), reference.logits)


def test_writes_keep_the_prefix_positions(cpmant: tuple) -> None:
    hf, model = cpmant
    ids = torch.tensor([[5, 17, 42, 9, 33]])
    prompt_length = model.prefix_positions
    seen: dict[str, torch.Tensor] = {}
    handle = hf.cpmant.encoder.layers[1].register_forward_pre_hook(
        lambda module, args: seen.__setitem__("x", args[0].detach().clone())
    )
    try:
        with torch.no_grad():
            hf(ids)
    finally:
        handle.remove()
    delta = torch.randn(1, 5, model.hidden_size, generator=torch.Generator().manual_seed(3))
    with model.trace(ids):
        model.layers_output[0] = model.layers_output[0] + delta
        block_input = model.layers[1].input.save()
    torch.testing.assert_close(block_input[:, :prompt_length], seen["x"][:, :prompt_length])
    torch.testing.assert_close(block_input[:, prompt_length:], seen["x"][:, prompt_length:] + delta)
    with pytest.raises(ShapeMismatchError, match=r"expected shape \(1, 5, "):
        with model.trace(ids):
            model.layers_output[0] = torch.zeros(1, 5 + prompt_length, model.hidden_size)


def test_the_mixer_input_reaches_every_slot_it_is_read_from(cpmant: tuple) -> None:
    # CPM-Ant's attention is called as attention(h, h, ...): queries from the first slot, keys and
    # values from the second. Changing the branch input must change both.
    _, model = cpmant
    ids = torch.tensor([[5, 17, 42, 9, 33]])
    with model.trace(ids):
        clean = model.mixers_output[0].save()
    with model.trace(ids):
        value = model.mixers_input[0].clone()
        value[:, 0] += 10.0
        model.mixers_input[0] = value
        edited = model.mixers_output[0].save()
    assert (edited[:, 1:] - clean[:, 1:]).abs().max() > 1e-3


def test_skip_and_gradients_with_a_prefix(cpmant: tuple) -> None:
    from nnspec.gradients import gradients

    _, model = cpmant
    ids = torch.tensor([[5, 17, 42, 9, 33]])
    with model.trace(ids):
        model.skip_layer(1, skip_with=torch.zeros(1, 5, model.hidden_size))
        skipped = model.layers_output[1].save()
    assert skipped.shape == (1, 5, model.hidden_size) and skipped.abs().max() == 0
    hf, _ = cpmant
    metric = lambda logits: logits[:, -1].sum()  # noqa: E731
    grads = gradients(model, "Hello world", metric, names=("layers_output", "mlps_input"), layers=[1])
    ids = model.tokenizer("Hello world", return_tensors="pt")["input_ids"]
    kept: dict[str, torch.Tensor] = {}

    def keep(module: torch.nn.Module, args: tuple, output: tuple) -> None:
        output[0].retain_grad()
        kept["h"] = output[0]

    handle = hf.cpmant.encoder.layers[1].register_forward_hook(keep)
    try:
        metric(hf(ids).logits).backward()
    finally:
        handle.remove()
    expected = kept["h"].grad[:, model.prefix_positions:]
    assert grads["layers_output.1"].shape == grads["mlps_input.1"].shape == expected.shape
    torch.testing.assert_close(grads["layers_output.1"], expected)


def test_a_prefix_key_the_config_lacks_is_refused(tmp_path: Path) -> None:
    from nnspec import StandardizedTransformer

    spec = tmp_path / "cpmant_bad.toml"
    spec.write_text(
        'name = "cpmant_bad"\nextends = "cpmant"\nmodel_types = ["cpmant"]\n\n[layer]\nprefix = "no_such_key"\n',
        encoding="utf-8",
    )
    with pytest.raises(ModelStructureError, match="layer.prefix names config key 'no_such_key'"):
        StandardizedTransformer(str(checkpoint("cpmant")), spec=str(spec))


def test_head_counts_per_layer() -> None:
    from nnspec import StandardizedTransformer

    model = StandardizedTransformer(str(checkpoint("dots3_note_text")), attn_implementation="eager", dtype=torch.float32)
    heads = model.num_heads_per_layer
    assert len(heads) == model.num_layers and len(set(heads)) > 1
    with pytest.raises(CapabilityUnavailableError, match=r"num_heads_per_layer\[i\]"):
        model.num_heads
    queries: list = []
    per_head: list = []
    with model.trace("The capital of France is"):
        for i in range(model.num_layers):
            queries.append(model.queries[i].save())
            per_head.append(model.attention_heads_output[i].save())
    assert [q.shape[1] for q in queries] == heads
    assert [h.shape[2] for h in per_head] == heads


def test_sliding_layer_sizes_are_sizes() -> None:
    from nnspec.verification.shrink import is_size_key

    assert is_size_key("swa_num_attention_heads") and is_size_key("swa_qk_nope_head_dim")
    assert not is_size_key("swa_rope_theta") and not is_size_key("swa_attention_gate_type")
