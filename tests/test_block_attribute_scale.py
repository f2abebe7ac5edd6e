"""A branch scale read from an attribute every block holds ({ block_attribute = NAME })."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from nnspec.compiler.schema import BlockAttribute, Branch
from nnspec.errors import ModelStructureError
from nnspec.runtime.structure import block_attribute_value


class _Block(torch.nn.Module):
    def __init__(self, factor):
        super().__init__()
        self.residual_scale = factor


def test_schema_accepts_block_attribute_and_keeps_other_forms():
    assert Branch(module="mlp", scale={"block_attribute": "residual_scale"}).scale == BlockAttribute(
        block_attribute="residual_scale"
    )
    assert Branch(module="mlp", scale="residual_multiplier").scale == "residual_multiplier"
    assert Branch(module="mlp", scale=0.5).scale == 0.5
    with pytest.raises(ValidationError):
        Branch(module="mlp", scale={"block_attribute": "not a name"})
    with pytest.raises(ValidationError):
        Branch(module="mlp", scale={"attribute": "residual_scale"})


def test_value_is_read_from_every_block():
    blocks = torch.nn.ModuleList([_Block(0.25), _Block(0.25)])
    assert block_attribute_value(blocks, "residual_scale", "mlp.scale", "spec") == 0.25
    blocks = torch.nn.ModuleList([_Block(torch.tensor(2.0))])
    assert block_attribute_value(blocks, "residual_scale", "mlp.scale", "spec") == 2.0


@pytest.mark.parametrize(
    "blocks, message",
    [
        ([_Block(0.25), torch.nn.Identity()], "does not have"),
        ([_Block("x")], "not a number"),
        ([_Block(True)], "not a number"),
        ([_Block(0.25), _Block(0.5)], "differs between blocks"),
        ([], "no blocks"),
    ],
)
def test_errors_name_the_spec_key(blocks, message):
    with pytest.raises(ModelStructureError, match=message) as info:
        block_attribute_value(torch.nn.ModuleList(blocks), "residual_scale", "attention.scale", "my.toml")
    assert "attention.scale" in str(info.value)
