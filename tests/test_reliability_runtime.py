"""Bad input to the model gets a named nnspec error before the forward; nothing is silently wrong
(padding, positions, dtypes, element choices); the model's state is safe (dtype moves, nested
and concurrent traces, copies)."""

from __future__ import annotations

import copy
import threading
import time
from pathlib import Path

import pytest
import torch

from nnspec import StandardizedTransformer
from nnspec.errors import InputError, ModelStructureError, ShapeMismatchError

from .conftest import checkpoint


@pytest.fixture(scope="module")
def gpt2() -> StandardizedTransformer:
    return StandardizedTransformer(checkpoint("gpt2"))


@pytest.mark.parametrize(
    "bad,message",
    [
        ([], "prompts: the list is empty"),
        ("", "prompt: an empty string"),
        (["Hello", ""], r"prompts\[1\]: an empty string"),
        (torch.tensor([[1, 5000]]), r"token id 5000 is outside the vocabulary \(valid: 0..383\)"),
        (torch.zeros(1, 0, dtype=torch.long), "holds no tokens"),
        ("word " * 300, "longer than this model's 256 learned positions"),
    ],
)
def test_bad_prompts_are_refused_before_the_forward(gpt2: StandardizedTransformer, bad: object, message: str) -> None:
    with pytest.raises(InputError, match=message):
        with gpt2.trace(bad):
            gpt2.logits.save()


def test_right_padding_is_never_silently_used(gpt2: StandardizedTransformer) -> None:
    prompts = ["Hello", "The capital of France is"]
    alone = []
    for prompt in prompts:
        with gpt2.trace(prompt):
            alone.append(gpt2.next_token_probs.save())
    gpt2.tokenizer.padding_side = "right"
    try:
        with pytest.warns(UserWarning, match="pads its batches on the left"):
            with gpt2.trace(prompts):
                batch = gpt2.next_token_probs.save()
        assert gpt2.tokenizer.padding_side == "right", "the user's setting is left as it is"
    finally:
        gpt2.tokenizer.padding_side = "left"
    for row in range(2):
        assert torch.allclose(batch[row], alone[row][0], atol=1e-5)


def test_steer_positions_count_each_prompts_own_tokens(gpt2: StandardizedTransformer) -> None:
    vector = torch.randn(gpt2.hidden_size, generator=torch.Generator().manual_seed(3))
    prompts = ["Hi", "Once upon a time there was a model"]
    with gpt2.trace(prompts):
        gpt2.steer(layers=1, steering_vector=vector, factor=4.0, positions=0)
        batch = gpt2.logits.save()
    with gpt2.trace(prompts[0]):
        gpt2.steer(layers=1, steering_vector=vector, factor=4.0, positions=0)
        alone = gpt2.logits.save()
    with gpt2.trace(prompts[0]):
        plain = gpt2.logits.save()
    assert not torch.allclose(alone, plain, atol=1e-4), "the edit moves the short prompt's logits"
    mask = gpt2.tokenizer(prompts, return_tensors="pt", padding=True)["attention_mask"][0].bool()
    assert torch.allclose(batch[0][mask], alone[0], atol=1e-5)


def test_assignment_casts_only_losslessly(gpt2: StandardizedTransformer) -> None:
    with gpt2.trace("Hello world"):
        hidden = gpt2.layers_output[0]
        gpt2.layers_output[0] = hidden.detach().round().to(torch.float64)  # whole numbers: exact in float32
        out = gpt2.logits.save()
    assert out.dtype == torch.float32
    with pytest.raises(InputError, match="torch.float64 tensor does not convert without loss"):
        with gpt2.trace("Hello world"):
            gpt2.layers_output[0] = torch.randn(gpt2.layers_output[0].shape, dtype=torch.float64)


def test_vectors_of_the_wrong_shape_are_named(gpt2: StandardizedTransformer) -> None:
    with pytest.raises(ShapeMismatchError, match=r"steer\(steering_vector=...\): expected shape \(64,\), got \(1, 64\)"):
        with gpt2.trace("Hello"):
            gpt2.steer(layers=0, steering_vector=torch.zeros(1, gpt2.hidden_size))
    with pytest.raises(ShapeMismatchError, match=r"skip_with=...\): expected a residual-stream tensor"):
        with gpt2.trace("Hello"):
            gpt2.skip_layers(0, 1, skip_with=torch.zeros(gpt2.hidden_size))


def test_model_arguments_are_checked_at_construction() -> None:
    start = time.perf_counter()
    with pytest.raises(InputError, match="model: expected a hub id"):
        StandardizedTransformer(None)  # type: ignore[arg-type]
    assert time.perf_counter() - start < 1, "refused at once, no Hub retries"
    with pytest.raises(InputError, match=r"dtpye=...\): not an argument.*did you mean 'dtype'"):
        StandardizedTransformer(checkpoint("gpt2"), dtpye=torch.float32)
    model = StandardizedTransformer(checkpoint("gpt2"), tokenizer_kwargs={"padding_side": "left"}, output_attentions=False)
    with model.trace("Hello"):
        model.logits.save()


def test_wrong_tuple_element_names_the_spec_key(tmp_path: Path) -> None:
    spec = tmp_path / "llama_elem.toml"
    spec.write_text('name = "llama_elem"\nextends = "llama"\nmodel_types = ["llama"]\n[attention]\nelement = 1\n')
    model = StandardizedTransformer(checkpoint("llama"), spec=str(spec), attn_implementation="sdpa")
    with pytest.raises(ModelStructureError, match=r"llama_elem.toml: attention.element = 1: the module returned a tuple of 2 .*NoneType"):
        with model.trace("Hello"):
            model.attentions_output[0].save()


def test_state_is_safe() -> None:
    model = StandardizedTransformer(checkpoint("llama"))
    model.to(torch.bfloat16)  # before the first trace: kept
    with model.trace("Hello"):
        hidden = model.layers_output[0].save()
    assert hidden.dtype == torch.bfloat16
    assert model.project_on_vocab(torch.zeros(model.hidden_size)).dtype == torch.bfloat16
    with pytest.raises(InputError, match="opened inside another trace"):
        with model.trace("Hello"):
            with model.trace("World"):
                model.logits.save()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            for _ in range(3):
                with model.trace("Hello world"):
                    model.logits.save()
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, "traces from two threads run one after the other"
    with pytest.raises(TypeError, match="deepcopy of a StandardizedTransformer is not supported"):
        copy.deepcopy(model)


def test_reading_inside_a_skipped_layer_says_so(gpt2: StandardizedTransformer) -> None:
    from nnspec.errors import OutOfOrderReadError

    with pytest.raises(OutOfOrderReadError, match=r"attentions_output\[1\] cannot be read: layer 1 is skipped"):
        with gpt2.trace("Hello"):
            gpt2.skip_layers(1, 1)
            gpt2.attentions_output[1].save()


@pytest.mark.parametrize(
    "patch,message",
    [
        ('[attention]\nmodule = "mlp"\n[mlp]\nmodule = "attn"\n', "are attention.module and mlp.module swapped"),
        ('[mlp]\nmodule = "attn"\n', "attention.module and mlp.module are both 'attn'"),
        ('[[overrides]]\nwhen = { config = { reorder_and_upcast = true } }\nset = { residual = { kind = "parallel" } }\n',
         r"overrides\[\d\].when.config names 'reorder_and_upcast'.*could never apply.*reorder_and_upcast_attn"),
        ('[attention]\nscale = "activation_function"\n', r"attention.scale = 'activation_function' names a config value that is not a number"),
    ],
)
def test_spec_mistakes_are_named_at_load(tmp_path: Path, patch: str, message: str) -> None:
    spec = tmp_path / "gpt2_bad.toml"
    spec.write_text(f'name = "gpt2_bad"\nextends = "gpt2"\nmodel_types = ["gpt2"]\n{patch}')
    with pytest.raises(ModelStructureError, match=message):
        StandardizedTransformer(checkpoint("gpt2"), spec=str(spec))


def test_spec_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    from nnspec.errors import SpecSyntaxError

    spec = tmp_path / "latin.toml"
    spec.write_bytes('name = "latin"\nextends = "gpt2"\nmodel_types = ["gpt2"]\ndescription = "caf\u00e9"\n'.encode("latin-1"))
    with pytest.raises(SpecSyntaxError, match=r"latin.toml: not UTF-8 text \(byte 0xe9"):
        StandardizedTransformer(checkpoint("gpt2"), spec=str(spec))


def test_pickle_refuses_clearly(gpt2: StandardizedTransformer) -> None:
    import pickle

    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(gpt2)


def test_cache_keys_as_tuples_and_bad_keys(gpt2: StandardizedTransformer) -> None:
    from nnspec.errors import UnknownNameError

    cache = gpt2.run_with_cache("Hello world", names=["layers_input"])
    assert cache["layers_input", -1] is cache["layers_input.2"]
    assert cache["resid_pre", 0] is cache["layers_input.0"]  # TransformerLens's short name
    with pytest.raises(UnknownNameError, match=r"'resid_pree' is not a standard name or a TransformerLens hook name"):
        cache["resid_pree", 0]
    with pytest.raises(UnknownNameError, match="a tuple key is"):
        cache["layers_input", 0, 1]


def test_hidden_element_out_of_range_names_the_spec_key(tmp_path: Path) -> None:
    spec = tmp_path / "bloom_elem.toml"
    # Without the parent's version overrides: one states which tuple element a skipped block returns
    # for older releases, which would contradict the element this spec moves.
    spec.write_text('name = "bloom_elem"\nextends = "bloom"\ninherit_overrides = false\nmodel_types = ["bloom"]\n'
                    '[layer]\nhidden_element = 5\n')
    model = StandardizedTransformer(checkpoint("bloom"), spec=str(spec))
    with pytest.raises(ModelStructureError, match=r"bloom_elem.toml: layer.hidden_element = 5: the module returned a tuple"):
        with model.trace("Hello"):
            model.layers_output[0].save()
