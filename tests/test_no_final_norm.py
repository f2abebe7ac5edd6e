"""Specs may declare that a model has no final norm module, and modules may return lists."""

from __future__ import annotations

import pytest
import torch

from nnspec.compiler.schema import ModulePaths
from nnspec.errors import CapabilityUnavailableError
from nnspec.runtime.ports import pick, replace


def test_ln_final_may_be_empty() -> None:
    paths = ModulePaths(embed_tokens="transformer.wte", layers="transformer.h", ln_final="", lm_head="lm_head")
    assert paths.ln_final is None
    assert paths.final() == []


def test_optional_must_still_name_a_final_module() -> None:
    with pytest.raises(ValueError, match="only final modules may be optional"):
        ModulePaths(embed_tokens="e", layers="h", ln_final="", optional=["transformer.ln_f"])


def test_list_outputs_are_picked_and_replaced_as_lists() -> None:
    a, b = torch.zeros(2), torch.ones(2)
    assert pick([a, b], 0) is a
    out = replace([a, b], 0, b)
    assert isinstance(out, list) and out[0] is b and out[1] is b
    assert isinstance(replace((a, b), 1, a), tuple)


def test_model_without_final_norm(tmp_path) -> None:
    from nnspec import StandardizedTransformer
    from nnspec.runtime.registry import adapter_by_name
    from nnspec.verification import tiny

    path = tiny.build(adapter_by_name("openai_gpt").spec, tmp_path / "m")
    model = StandardizedTransformer(str(path))
    with pytest.raises(CapabilityUnavailableError, match="no final norm"):
        model.ln_final
    ids = torch.tensor([[1, 2, 3, 4]])
    with model.trace(ids):
        last = model.layers_output[-1].save()
        logits = model.logits.save()
    torch.testing.assert_close(model.project_on_vocab(last), logits)
