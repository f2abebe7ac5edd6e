"""Attention sinks, hand-written attention sources and folded-head probabilities: each is proven
by the conformance rows, and a spec that states the fact wrongly must make those rows fail."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nnspec.errors import ModelStructureError
from nnspec.verification import conformance

from .conftest import checkpoint

MUTATIONS = {
    # Without the sink, the edited softmax has one column more than the probabilities, and the
    # scores no longer recompute the probabilities.
    "gpt_oss": ('[attention]\nsinks = ""\n', {"attention_probabilities", "qkv"}),
    # Keys read as they enter q @ k^T are (batch, heads, head_dim, seq) without transpose_last.
    "mpt": ('[attention]\nkeys = { ops = [{ name = "torch_matmul", occurrence = 0 }], io = "input", index = 1 }\n', {"qkv"}),
    # XGLM splits queries after keys and values: the first split is the keys, not the queries.
    "xglm": ('[attention]\nqueries = { ops = [{ name = "transpose", occurrence = 0 }] }\n', {"qkv"}),
    # Llama 4's MoE returns (output, router logits) with tokens flattened.
    "llama4_text": ("[mlp]\nflattened = false\nelement = 1\n", {"contribution", "edit_mlps_output"}),
    # Inkling's branches reach the residual through a short convolution.
    "inkling_text": ('[attention]\ncontribution = "self_attn"\n', {"contribution"}),
    # The sink gate of granite_swa scales the per-head output after probabilities @ values.
    "granite_swa": ("[attention]\ngated_output = false\n", {"qkv"}),
}


@pytest.mark.parametrize("base", sorted(MUTATIONS))
def test_lifted_limit_checks_fail_on_a_wrong_spec(base: str, tmp_path: Path) -> None:
    patch, expected = MUTATIONS[base]
    right = conformance.load_subject(base, checkpoint(base))
    passed = {r.check for r in conformance.run_checks(right, sorted(expected)) if r.passed}
    assert passed == expected, passed
    spec_file = tmp_path / f"{base}_wrong.toml"
    spec_file.write_text(f'name = "{base}_wrong"\nextends = "{base}"\nmodel_types = ["{base}"]\n{patch}')
    wrong = conformance.load_subject(base, checkpoint(base), spec=str(spec_file))
    failed = {r.check for r in conformance.run_checks(wrong, sorted(expected)) if not r.passed}
    assert failed == expected, failed


def test_sink_probabilities_leave_the_sink_share_out() -> None:
    """With sinks, the probabilities over the real keys sum to less than 1 (the rest is the sink's)."""
    subject = conformance.load_subject("gpt_oss", checkpoint("gpt_oss"))
    with subject.model.trace(subject.input_ids):
        probs = subject.model.attention_probabilities[0].save()
    totals = probs.sum(-1)
    assert bool((totals < 1).all()) and bool((totals > 0).all())


def test_sinks_must_name_an_attribute_of_the_attention(tmp_path: Path) -> None:
    spec_file = tmp_path / "gpt_oss_wrong.toml"
    spec_file.write_text('name = "gpt_oss_wrong"\nextends = "gpt_oss"\nmodel_types = ["gpt_oss"]\n[attention]\nsinks = "sink_logits"\n')
    from nnspec import StandardizedTransformer

    with pytest.raises(ModelStructureError, match=r"attention\.sinks = 'sink_logits'"):
        StandardizedTransformer(checkpoint("gpt_oss"), spec=str(spec_file))


class _Softmax(torch.nn.Module):
    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.softmax(scores, dim=-1)


def test_softmax_edit_applies_to_real_keys_and_unfolds_heads() -> None:
    """The ground-truth hook edits the real keys' columns (the sink column kept) and edits a
    softmax computed with heads folded into the batch in the standard layout."""
    module = _Softmax()
    edit = lambda p: p * torch.arange(1, p.shape[1] + 1, dtype=p.dtype).view(1, -1, 1, 1)  # noqa: E731
    scores = torch.randn(2 * 3, 4, 5)
    with conformance._softmax_edit(module, edit, shape=torch.Size((2, 3, 4, 5))) as calls:
        folded = module(scores)
    assert calls[0] == 1
    assert torch.allclose(folded, edit(scores.softmax(-1).view(2, 3, 4, 5)).view(6, 4, 5))
    scores = torch.randn(2, 3, 4, 6)
    with conformance._softmax_edit(module, edit, sink=True) as calls:
        out = module(scores)
    full = scores.softmax(-1)
    assert calls[0] == 1
    assert torch.allclose(out[..., -1], full[..., -1]) and torch.allclose(out[..., :-1], edit(full[..., :-1]))


def test_transpose_last_round_trips() -> None:
    from nnspec.compiler.records import Read
    from nnspec.runtime.sources import SourcePort

    port = SourcePort("keys[0]", lambda: None, Read("model.layers.{i}.self_attn", "source", layout=("transpose_last",)))
    raw = torch.randn(2, 3, 16, 9)
    standard = port._standard(raw)
    assert standard.shape == (2, 3, 9, 16) and torch.equal(port._raw(standard, raw), raw)
