"""Memory of batched collection and of ``run_with_cache``: once a batch is handed over, no tensor of
the forward that produced it is still alive (neither through a saved view of a whole layer output
nor through the frames a ``tracer.stop()`` leaves in a reference cycle), and the per-batch step
gives the plain transformers values."""

from __future__ import annotations

import gc
import weakref
from contextlib import contextmanager
from typing import Any, Iterator

import pytest
import torch
from transformers import AutoModelForCausalLM

from nnspec import StandardizedTransformer
from nnspec.activations import collect_activations, iter_batches
from nnspec.errors import InputError, InputTypeError
from nnspec.runtime.batching import positions_from_mask
from nnspec.runtime.rawmodel import hf_module

from .conftest import checkpoint

PROMPTS = ["The capital of France is", "Hi", "One two three four five six seven", "A cat", "Seven", "The end of it"]


@pytest.fixture(scope="module")
def model() -> StandardizedTransformer:
    model = StandardizedTransformer(checkpoint("gpt2"))
    model.dispatch()  # the real weights now, so the hooks below go on the modules that run
    return model


@pytest.fixture(scope="module")
def hf() -> Any:
    return AutoModelForCausalLM.from_pretrained(checkpoint("gpt2")).eval()


@contextmanager
def watched(model: StandardizedTransformer) -> Iterator[list[weakref.ref]]:
    """Weak references to the tensor outputs of every module of the forwards run inside (block
    outputs, embeddings, attention and MLP outputs...), with the automatic garbage collector off,
    so only what the code under test frees is freed."""
    refs: list[weakref.ref] = []

    def keep(module: Any, args: Any, output: Any) -> None:
        for value in output if isinstance(output, tuple) else (output,):
            if isinstance(value, torch.Tensor):
                refs.append(weakref.ref(value))

    handles = [module.register_forward_hook(keep) for module in hf_module(model).modules()]
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield refs
    finally:
        for handle in handles:
            handle.remove()
        if enabled:
            gc.enable()
        gc.collect()


def alive(refs: list[weakref.ref], kept: tuple[torch.Tensor, ...] = ()) -> list[tuple]:
    """Shapes of the watched tensors still alive, leaving out those sharing memory with ``kept``."""
    own = {t.untyped_storage().data_ptr() for t in kept}
    return [tuple(t.shape) for t in (r() for r in refs) if t is not None and t.untyped_storage().data_ptr() not in own]


def test_no_forward_tensor_outlives_its_batch(model: StandardizedTransformer) -> None:
    layers = list(range(model.num_layers))
    with watched(model) as refs:
        batches = iter_batches(model, PROMPTS, layers, batch_size=3)
        first = next(batches)
        assert refs, "the hook saw no block output"
        assert first.shape == (model.num_layers, 3, model.hidden_size)
        assert alive(refs) == [], "the first batch's forward is still held after it was yielded"
        seen = len(refs)
        next(batches)
        assert len(refs) > seen
        assert alive(refs) == [], "the second batch's forward is still held after it was yielded"


def test_run_with_cache_frees_its_stopped_forward(model: StandardizedTransformer) -> None:
    with watched(model) as refs:
        cache = model.run_with_cache(PROMPTS[:2], names=["layers_output"], layers=[1])
        assert len(refs) > 4
        # only the cached block output is left of the forward
        assert alive(refs, kept=(cache["layers_output", 1],)) == []


def test_batches_match_plain_transformers(model: StandardizedTransformer, hf: Any) -> None:
    encoded = model.tokenizer(PROMPTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        states = hf(**encoded, position_ids=positions_from_mask(encoded["attention_mask"]), output_hidden_states=True).hidden_states
    lengths = encoded["attention_mask"].sum(1)
    seq = encoded["input_ids"].shape[1]
    # hidden_states[i + 1] is block i's output except the last, which is after the final norm
    blocks = hf.get_submodule(model.spec.modules.layers)
    last_out: list[torch.Tensor] = []
    handle = blocks[-1].register_forward_hook(lambda m, a, o: last_out.append(o[0] if isinstance(o, tuple) else o))
    try:
        with torch.no_grad():
            hf(**encoded, position_ids=positions_from_mask(encoded["attention_mask"]))
    finally:
        handle.remove()
    full = [states[i + 1] for i in range(model.num_layers - 1)] + last_out
    layers = [model.num_layers - 1, 0]
    expected_last = torch.stack([full[i][:, -1] for i in layers], 0)
    first_token = seq - lengths  # left padding: the prompt's own token 0
    expected_first = torch.stack([full[i][torch.arange(len(PROMPTS)), first_token] for i in layers], 0)

    got = torch.cat(list(iter_batches(model, PROMPTS, layers, batch_size=4)), 1)
    torch.testing.assert_close(got, expected_last, rtol=1e-4, atol=1e-5)
    got_pos = torch.cat(list(iter_batches(model, PROMPTS, layers, positions=[0, -1], batch_size=4)), 1)
    assert got_pos.shape == (2, len(PROMPTS), 2, model.hidden_size)
    torch.testing.assert_close(got_pos[:, :, 0], expected_first, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got_pos[:, :, 1], expected_last, rtol=1e-4, atol=1e-5)

    # the preallocated result (a list) and the concatenated one (a generator) agree, in dtype too
    listed = collect_activations(model, PROMPTS, layers, batch_size=4, progress=False, dtype=torch.float16)
    streamed = collect_activations(model, (p for p in PROMPTS), layers, batch_size=4, progress=False, dtype=torch.float16)
    assert listed.dtype == streamed.dtype == torch.float16
    torch.testing.assert_close(listed, expected_last.half(), rtol=1e-3, atol=1e-3)
    assert torch.equal(listed, streamed)


class Liar:
    """A sized iterable whose length is smaller than what it yields."""

    def __len__(self) -> int:
        return 2

    def __iter__(self) -> Iterator[str]:
        return iter(PROMPTS[:3])


def test_bad_arguments_raise_before_any_forward(model: StandardizedTransformer) -> None:
    with watched(model) as refs:
        with pytest.raises(InputError, match="layers_output"):
            iter_batches(model, PROMPTS, value="layer_output")
        with pytest.raises(InputError, match="batch_size"):
            iter_batches(model, PROMPTS, batch_size=0)
        with pytest.raises(InputTypeError, match="batch_size"):
            iter_batches(model, PROMPTS, batch_size=2.0)  # type: ignore[arg-type]
        with pytest.raises(InputTypeError, match="dtype"):
            iter_batches(model, PROMPTS, dtype="float16")  # type: ignore[arg-type]
        with pytest.raises(InputError, match="empty"):
            iter_batches(model, [])
        assert refs == []
    with pytest.raises(InputError, match="empty"):
        collect_activations(model, iter([]), progress=False)
    with pytest.raises(InputError, match="more than len"):
        collect_activations(model, Liar(), batch_size=2, progress=False)
