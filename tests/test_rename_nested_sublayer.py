"""A branch module inside a list named like its standard alias (``self_attn.0``) gets no alias."""

from __future__ import annotations

from nnspec.runtime.adapter import rename_dict
from nnspec.runtime.registry import adapter_for_model_type


def test_nested_sublayer_is_not_aliased_over_its_parent():
    spec = adapter_for_model_type("longcat_flash").spec
    aliases = rename_dict(spec)
    assert "self_attn.0" not in aliases  # `self_attn` stays the ModuleList of both sublayers
    assert aliases.get("model.norm") == "ln_final"


def test_ordinary_paths_keep_their_aliases():
    aliases = rename_dict(adapter_for_model_type("gpt2").spec)
    assert aliases["attn"] == "self_attn" and aliases["transformer.h"] == "layers"
