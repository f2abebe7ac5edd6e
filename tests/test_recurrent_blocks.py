"""Blocks that carry state from block to block and hybrids whose norms differ by layer kind:
``layer.skip_returns`` (a skipped block passes on the state it received), per-layer contribution
paths (``attention.per_layer.contributions`` / ``mlp_contributions``), and tiny checkpoints whose
initialisation zeroes a projection."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from nnspec.compiler.schema import LayerIO, PerLayer
from nnspec.verification import conformance
from nnspec.verification.tiny import _fill_zero_matrices

from .conftest import subject


def test_skip_returns_must_hold_the_hidden_state_at_hidden_element() -> None:
    LayerIO(returns="tuple", hidden_element=0, skip_returns=["hidden", "state", ""])
    with pytest.raises(ValidationError, match="'hidden' once, at hidden_element"):
        LayerIO(returns="tuple", hidden_element=1, skip_returns=["hidden", "state"])
    with pytest.raises(ValidationError, match="needs returns = 'tuple'"):
        LayerIO(returns="tensor", skip_returns=["hidden"])
    with pytest.raises(ValidationError, match="not 'hidden', '' or a forward argument name"):
        LayerIO(returns="tuple", skip_returns=["hidden", "no such"])


def test_skipped_recurrent_blocks_pass_their_state_on() -> None:
    # xLSTM blocks return (hidden, state) and the model reads the state of every block.
    s = subject("xlstm")
    assert s.model.spec.layer.skip_returns == ["hidden", "state"]
    conformance.check_skip_layers(s)
    with s.model.trace(s.input_ids):
        s.model.skip_layer(0)
        logits = s.model.logits.save()
    assert torch.isfinite(logits).all()


def test_per_layer_contributions_are_paths_and_need_the_branch() -> None:
    PerLayer(config_key="layer_types", contributions={"linear_attention": ""}, mlp_contributions={"linear_attention": ""})
    with pytest.raises(ValidationError, match="no MLP"):
        PerLayer(config_key="t", mlp_modules={"a": ""}, mlp_contributions={"a": "post_norm"})
    with pytest.raises(ValidationError, match="no token mixer"):
        PerLayer(config_key="t", kinds={"a": "none"}, contributions={"a": "post_norm"})
    with pytest.raises(ValidationError, match="dotted module path"):
        PerLayer(config_key="t", contributions={"a": "not a path"})


def test_contributions_follow_each_layer_kind() -> None:
    # OLMo hybrid: post norms on attention layers, the modules themselves on DeltaNet layers.
    s = subject("olmo_hybrid")
    m = s.model
    kinds = m.mixer_kinds
    assert kinds == ["linear", "linear", "softmax"]
    assert m.branch("attention", 0).contribution_path == "linear_attn"
    assert m.branch("mlp", 0).contribution_path == "mlp"
    assert m.branch("attention", 2).contribution_path == "post_attention_layernorm"
    assert m.branch("mlp", 2).contribution_path == "post_feedforward_layernorm"
    conformance.check_contribution(s)


def test_zero_initialised_matrices_get_random_values() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.zero_()
    before = model[0].weight.clone()
    assert _fill_zero_matrices(model, seed=0) == ["1.weight"]
    assert model[1].weight.abs().sum() > 0
    assert not model[1].bias.any()  # vectors stay as initialised
    torch.testing.assert_close(model[0].weight, before)
