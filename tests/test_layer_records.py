"""Per-layer branch facts are computed once per model, as one tuple of layer records."""

from __future__ import annotations

import pytest

import nnspec.runtime.structure as structure
from nnspec import StandardizedTransformer
from nnspec.errors import InputError

from .conftest import checkpoint


@pytest.mark.parametrize("name", ["llama", "jamba"])
def test_layer_facts_are_computed_once_per_layer(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"attention": 0, "mlp": 0}
    real_attention, real_mlp = structure.attention_for_layer, structure.mlp_for_layer

    def attention(*args: object) -> object:
        calls["attention"] += 1
        return real_attention(*args)  # type: ignore[arg-type]

    def mlp(*args: object) -> object:
        calls["mlp"] += 1
        return real_mlp(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(structure, "attention_for_layer", attention)
    monkeypatch.setattr(structure, "mlp_for_layer", mlp)
    model = StandardizedTransformer(str(checkpoint(name)))
    assert calls == {"attention": model.num_layers, "mlp": model.num_layers}
    records = model._structure.layers
    assert [r.index for r in records] == list(range(model.num_layers))
    # The model indexes the same records: its per-layer answers come from them.
    assert model.mixer_kinds == [r.attention.kind for r in records]
    assert all(model.branch("mlp", i) is r.mlp for i, r in enumerate(records))


def test_a_branch_name_other_than_attention_or_mlp_is_refused() -> None:
    model = StandardizedTransformer(str(checkpoint("llama")))
    with pytest.raises(InputError, match="'attention' or 'mlp'"):
        model._structure.layers[0].branch("mixer")
