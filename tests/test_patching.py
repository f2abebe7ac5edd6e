"""Activation patching sweeps: every sweep against one plain trace per patch, two against plain
transformers with forward hooks, and every bad argument refused before any work."""

from __future__ import annotations

import pytest
import torch

from nnspec import StandardizedTransformer
from nnspec.errors import (
    CapabilityUnavailableError,
    InputError,
    InputTypeError,
    LayerIndexError,
    PositionError,
    UnknownNameError,
)
from nnspec.patching import (
    SWEEPS,
    get_act_patch,
    get_act_patch_attn_head_all_pos_every,
    get_act_patch_attn_head_out_all_pos,
    get_act_patch_attn_head_out_by_pos,
    get_act_patch_attn_out,
    get_act_patch_block_every,
    get_act_patch_mlp_out,
    get_act_patch_resid_post,
    get_act_patch_resid_pre,
)

from .conftest import checkpoint, subject

SEQ = 5


def _ids(seed: int, batch: int = 2) -> torch.Tensor:
    return torch.randint(10, 300, (batch, SEQ), generator=torch.Generator().manual_seed(seed))


CLEAN, CORRUPTED = _ids(1), _ids(2)


def metric(logits: torch.Tensor) -> torch.Tensor:
    """A logit difference at the last position, summed over the batch."""
    return (logits[:, -1, 7] - logits[:, -1, 9]).sum()


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def arch(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def model_of():
    """Eager float32 nnspec models (attention probabilities available), loaded once."""
    return lambda name: subject(name).model


def one_trace_per_patch(model, name: str, layers: list[int], positions, heads, seq_axis: int, head_axis) -> torch.Tensor:
    """The plain way: a clean trace per layer, then one corrupted trace per patch assigning the value."""
    accessor = getattr(model, name)
    rows = []
    for layer in layers:
        with model.trace(CLEAN):
            clean = accessor[layer].save()
        per_layer = []
        for position in positions:
            per_position = []
            for head in heads:
                with model.trace(CORRUPTED):
                    value = accessor[layer]
                    patched = value.clone()
                    index = [slice(None)] * value.ndim
                    if position is not None:
                        index[seq_axis] = position
                    if head is not None:
                        index[head_axis] = head
                    patched[tuple(index)] = clean[tuple(index)]
                    accessor[layer] = patched
                    logits = model.logits.save()
                per_position.append(metric(logits).item())
            per_layer.append(per_position)
        rows.append(per_layer)
    return torch.tensor(rows)


@pytest.mark.parametrize("sweep", [s for s in SWEEPS if s != "mixer_out"])
def test_every_sweep_matches_one_trace_per_patch(arch: str, model_of, sweep: str) -> None:
    model = model_of(arch)
    spec = SWEEPS[sweep]
    layers = [0, model.num_layers - 1]
    positions = [0, 3, -1] if spec.by_position else None
    counts = getattr(model, spec.heads)
    heads = [0, counts[0] - 1] if spec.by_head else None
    got = get_act_patch(model, sweep, CORRUPTED, CLEAN, metric, layers=layers, positions=positions, heads=heads, batch_size=4)
    want = one_trace_per_patch(
        model, spec.value, layers, positions or [None], heads or [None], spec.seq_axis, spec.head_axis
    )
    want = want.reshape(got.shape)  # (layers, [positions], [heads])
    assert got.shape == (len(layers),) + ((3,) if spec.by_position else ()) + ((2,) if spec.by_head else ())
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    # The patches move the metric by far more than the tolerance: a wrong position, head or layer shows.
    assert (want.max() - want.min()).item() > 1e-4


def test_default_arguments_sweep_everything(model_of) -> None:
    model = model_of("llama")
    got = get_act_patch_resid_pre(model, CORRUPTED, CLEAN, metric, batch_size=5)
    want = one_trace_per_patch(model, "layers_input", list(range(model.num_layers)), range(SEQ), [None], 1, None)
    torch.testing.assert_close(got, want[..., 0], atol=1e-5, rtol=1e-5)
    heads = get_act_patch_attn_head_out_all_pos(model, CORRUPTED, CLEAN, metric)
    assert heads.shape == (model.num_layers, model.num_heads)
    by_pos = get_act_patch_attn_head_out_by_pos(model, CORRUPTED, CLEAN, metric, batch_size=7)
    assert by_pos.shape == (model.num_layers, SEQ, model.num_heads) and not by_pos.isnan().any()
    block = get_act_patch_block_every(model, CORRUPTED, CLEAN, metric, layers=[1], positions=[-1])
    assert block.shape == (3, 1, 1)
    torch.testing.assert_close(block[0], got[1:2, -1:], atol=1e-5, rtol=1e-5)
    # The last block's output at the last position is all the metric reads: patching it gives the clean metric.
    with model.trace(CLEAN):
        clean_logits = model.logits.save()
    last = get_act_patch_resid_post(model, CORRUPTED, CLEAN, metric, layers=[-1], positions=[-1])
    assert last.item() == pytest.approx(metric(clean_logits).item(), abs=1e-5)


def test_every_head_sweep_stacked(model_of) -> None:
    model = model_of("llama")  # 4 query heads, 2 key/value heads
    every = get_act_patch_attn_head_all_pos_every(model, CORRUPTED, CLEAN, metric, layers=[0, 2])
    assert every.shape == (5, 2, 4)
    for row, kind in enumerate(("out", "q", "k", "v", "pattern")):
        single = get_act_patch(model, f"attn_head_{kind}_all_pos", CORRUPTED, CLEAN, metric, layers=[0, 2])
        torch.testing.assert_close(every[row, :, : single.shape[1]], single)
    assert every[2:4, :, 2:].isnan().all() and not every[[0, 1, 4]].isnan().any()


# -- plain transformers, forward hooks replacing the HF module's output ------------------------------

BLOCKS = {"llama": "model.layers", "gpt2": "transformer.h"}
OUT_PROJECTION = {"llama": "self_attn.o_proj", "gpt2": "attn.c_proj"}


def _hidden(output):
    return output[0] if isinstance(output, tuple) else output


def _with(output, hidden):
    return (hidden,) + tuple(output[1:]) if isinstance(output, tuple) else hidden


def hf_resid_post(hf, arch: str, layer: int, position: int) -> float:
    block = hf.get_submodule(BLOCKS[arch])[layer]
    kept = {}
    handle = block.register_forward_hook(lambda m, a, out: kept.setdefault("clean", _hidden(out).clone()))
    with torch.no_grad():
        hf(CLEAN)
    handle.remove()

    def patch(module, args, output):
        hidden = _hidden(output).clone()
        hidden[:, position] = kept["clean"][:, position]
        return _with(output, hidden)

    handle = block.register_forward_hook(patch)
    with torch.no_grad():
        logits = hf(CORRUPTED).logits
    handle.remove()
    return metric(logits).item()


def hf_head_by_pos(hf, arch: str, layer: int, position: int, head: int, head_dim: int) -> float:
    projection = hf.get_submodule(BLOCKS[arch])[layer].get_submodule(OUT_PROJECTION[arch])
    kept = {}
    handle = projection.register_forward_pre_hook(lambda m, args: kept.setdefault("clean", args[0].clone()))
    with torch.no_grad():
        hf(CLEAN)
    handle.remove()
    columns = slice(head * head_dim, (head + 1) * head_dim)

    def patch(module, args):
        merged = args[0].clone()
        merged[:, position, columns] = kept["clean"][:, position, columns]
        return (merged,) + tuple(args[1:])

    handle = projection.register_forward_pre_hook(patch)
    with torch.no_grad():
        logits = hf(CORRUPTED).logits
    handle.remove()
    return metric(logits).item()


def test_matches_plain_transformers_hooks(arch: str) -> None:
    s = subject(arch)
    model, layers = s.model, list(range(s.model.num_layers))
    got = get_act_patch_resid_post(model, CORRUPTED, CLEAN, metric)
    want = torch.tensor([[hf_resid_post(s.hf, arch, i, p) for p in range(SEQ)] for i in layers])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    heads = get_act_patch_attn_head_out_by_pos(model, CORRUPTED, CLEAN, metric, positions=[1, -1])
    want = torch.tensor([
        [[hf_head_by_pos(s.hf, arch, i, p, h, model.head_dim) for h in range(model.num_heads)] for p in (1, SEQ - 1)]
        for i in layers
    ])
    torch.testing.assert_close(heads, want, atol=1e-5, rtol=1e-5)


# -- inputs, metrics, batching ------------------------------------------------------------------------


def _equal_length_prompts(model, count: int) -> list[str]:
    """``count`` prompts of one token length (the tiny tokenizer is trained locally)."""
    words = ["cat", "dog", "red", "sun", "sea", "map", "car", "hat", "pen", "cup", "box", "bag"]
    by_length: dict[int, list[str]] = {}
    for a in words:
        for b in words:
            prompt = f"The {a} and the {b}"
            by_length.setdefault(len(model.tokenizer(prompt)["input_ids"]), []).append(prompt)
            if any(len(v) >= count for v in by_length.values()):
                return next(v for v in by_length.values() if len(v) >= count)[:count]
    raise AssertionError("no prompts of one length")


def test_prompts_tokens_and_cache_agree(model_of) -> None:
    model = model_of("llama")
    clean, corrupted = _equal_length_prompts(model, 4)[:2], _equal_length_prompts(model, 4)[2:]
    from_prompts = get_act_patch_attn_out(model, corrupted, clean, metric)
    encoded = lambda ps: model.tokenizer(ps, return_tensors="pt")  # noqa: E731
    from_tokens = get_act_patch_attn_out(model, encoded(corrupted)["input_ids"], encoded(clean), metric)
    torch.testing.assert_close(from_prompts, from_tokens)
    cache = model.run_with_cache(clean, names=["attentions_output"])
    from_cache = get_act_patch_attn_out(model, corrupted, cache, metric)
    torch.testing.assert_close(from_prompts, from_cache, atol=1e-5, rtol=1e-5)
    # The plain way over the prompt strings themselves, at a position where the prompts differ.
    with model.trace(clean):
        saved = model.attentions_output[1].save()
    with model.trace(corrupted):
        value = model.attentions_output[1].clone()
        value[:, -3] = saved[:, -3]
        model.attentions_output[1] = value
        logits = model.logits.save()
    assert from_prompts[1, -3].item() == pytest.approx(metric(logits).item(), abs=1e-6)
    assert abs(from_prompts[1, -3].item() - from_prompts[1, -2].item()) > 1e-4
    with pytest.raises(UnknownNameError, match=r"run_with_cache\(prompts, names=\['mlps_output'\]\)"):
        get_act_patch_mlp_out(model, corrupted, cache, metric)


def test_per_prompt_metric_and_batch_size(model_of) -> None:
    model = model_of("gpt2")
    per_prompt = get_act_patch_mlp_out(model, CORRUPTED, CLEAN, lambda l: l[:, -1, 7] - l[:, -1, 9], batch_size=1)
    assert per_prompt.shape == (model.num_layers, SEQ, 2)
    summed = get_act_patch_mlp_out(model, CORRUPTED, CLEAN, metric, batch_size=100)
    torch.testing.assert_close(per_prompt.sum(-1), summed, atol=1e-5, rtol=1e-5)
    ordered = get_act_patch_mlp_out(model, CORRUPTED, CLEAN, metric, layers=[2, 0], positions=[4, 0])
    torch.testing.assert_close(ordered, summed[[2, 0]][:, [4, 0]], atol=1e-5, rtol=1e-5)


def test_layers_without_the_branch_are_nan_or_refused() -> None:
    model = StandardizedTransformer(str(checkpoint("nemotron_h")))  # mamba, MLP, attention, MLP blocks
    ids, other = torch.randint(10, 200, (1, 4)), torch.randint(10, 200, (1, 4))
    attention = get_act_patch_attn_out(model, other, ids, metric)
    assert attention[[0, 1, 3]].isnan().all() and not attention[2].isnan().any()
    mlp = get_act_patch_mlp_out(model, other, ids, metric)
    assert mlp[[0, 2]].isnan().all() and not mlp[[1, 3]].isnan().any()
    mixer = get_act_patch(model, "mixer_out", other, ids, metric)
    assert mixer[[1, 3]].isnan().all() and not mixer[[0, 2]].isnan().any()
    with model.trace(ids):
        clean = model.mixers_output[0].save()
    with model.trace(other):
        value = model.mixers_output[0].clone()
        value[:, 1] = clean[:, 1]
        model.mixers_output[0] = value
        logits = model.logits.save()
    assert mixer[0, 1].item() == pytest.approx(metric(logits).item(), abs=1e-6)
    with pytest.raises(CapabilityUnavailableError, match=r"layer 0.*no MLP|layer 0 has no MLP"):
        get_act_patch_mlp_out(model, other, ids, metric, layers=[0])


# -- bad input ----------------------------------------------------------------------------------------


def test_bad_arguments_are_refused(model_of) -> None:
    model = model_of("llama")
    run = lambda sweep="resid_pre", corrupted=CORRUPTED, clean=CLEAN, m=metric, **kw: get_act_patch(  # noqa: E731
        model, sweep, corrupted, clean, m, **kw
    )
    with pytest.raises(UnknownNameError, match="'resid_pre'"):
        run("resid_pree")
    with pytest.raises(UnknownNameError, match="resid_mid.*not offered"):
        run("resid_mid")
    with pytest.raises(LayerIndexError, match=r"layers\[3\].*valid: 0\.\.2"):
        run(layers=[0, 3])
    with pytest.raises(PositionError, match=r"positions: 5 .*valid: 0\.\.4"):
        run(positions=[5])
    with pytest.raises(InputError, match=r"heads: 4 is out of range: layer 0 has 4 heads \(valid: 0\.\.3\)"):
        run("attn_head_out_all_pos", heads=[4])
    with pytest.raises(InputError, match=r"heads: 2 .*key/value heads \(valid: 0\.\.1\)"):
        run("attn_head_k_all_pos", heads=[2])
    with pytest.raises(InputError, match="positions: sweep 'attn_head_out_all_pos' patches every position"):
        run("attn_head_out_all_pos", positions=[1])
    with pytest.raises(InputError, match="heads: sweep 'resid_pre' does not patch single heads"):
        run(heads=[1])
    with pytest.raises(InputError, match="clean is 4 tokens long and corrupted 5"):
        run(clean=CLEAN[:, :4])
    with pytest.raises(InputError, match="clean has 1 prompts and corrupted 2"):
        run(clean=CLEAN[:1])
    with pytest.raises(InputError, match="different attention masks"):
        run(clean={"input_ids": CLEAN, "attention_mask": torch.tensor([[0, 1, 1, 1, 1], [1] * 5])})
    with pytest.raises(InputError, match="corrupted: the prompts tokenize to different lengths"):
        run(corrupted=["a", "a much longer prompt than the other"], clean=["a", "b"])
    with pytest.raises(InputTypeError, match="integer token ids"):
        run(clean=CLEAN.float())
    with pytest.raises(InputError, match=r"metric\(logits\).*returned shape \(2, 5\)"):
        run(m=lambda logits: logits[:, :, 0])
    with pytest.raises(InputTypeError, match="metric: expected a callable"):
        run(m="logit_diff")
    with pytest.raises(InputError, match="batch_size: expected a positive"):
        run(batch_size=0)
    with pytest.raises(TypeError, match="unexpected keyword argument 'head'"):
        get_act_patch_resid_pre(model, CORRUPTED, CLEAN, metric, head=[1])


def test_missing_capabilities_are_refused() -> None:
    sdpa = StandardizedTransformer(str(checkpoint("gpt2")))  # sdpa attention: no probabilities
    with pytest.raises(CapabilityUnavailableError, match="eager"):
        get_act_patch(sdpa, "attn_head_pattern_all_pos", CORRUPTED, CLEAN, metric)
    bloom = StandardizedTransformer(str(checkpoint("bloom")))
    with pytest.raises(CapabilityUnavailableError, match="attention_heads_output is not available.*BLOOM folds heads"):
        get_act_patch_attn_head_out_all_pos(bloom, CORRUPTED, CLEAN, metric)
