"""The standard-name table is the one list the model class, the cache, gradients and collection follow."""

from __future__ import annotations

import pytest
import torch

from nnspec import StandardizedTransformer
from nnspec.errors import InputError, UnknownNameError
from nnspec.runtime import names
from nnspec.runtime.accessors import AttentionProbabilitiesAccessor, ValueAccessor

from .conftest import checkpoint


def _declared() -> dict[str, object]:
    out: dict[str, object] = {}
    for cls in reversed(StandardizedTransformer.__mro__):
        out.update(vars(cls).get("__annotations__", {}))
    return out


def test_every_per_layer_name_is_declared_on_the_class_and_back() -> None:
    declared = {
        name for name, annotation in _declared().items()
        if str(annotation).startswith(("ValueAccessor", "AttentionProbabilitiesAccessor"))
    }
    table = {n.name for n in names.NAMES if n.per_layer and n.kind != "derived"}
    assert declared == table, f"declared only: {sorted(declared - table)}; table only: {sorted(table - declared)}"


def test_model_level_names_are_properties_whose_setters_match_the_table() -> None:
    for entry in names.NAMES:
        if entry.per_layer:
            continue
        prop = getattr(StandardizedTransformer, entry.name)
        assert isinstance(prop, property), entry.name
        assert (prop.fset is not None) == entry.settable, f"{entry.name}: settable={entry.settable} in the table"


def test_read_order_is_a_total_order_of_distinct_positions() -> None:
    orders = [n.order for n in names.NAMES if n.order is not None]
    assert sorted(orders) == list(range(len(orders)))
    assert names.LAYER_ORDER[0] == "layers_input" and names.LAYER_ORDER[-1] == "layers_output"
    # A branch's input comes before everything inside it, its output after.
    for internal in names.ATTENTION_INTERNALS:
        assert names.LAYER_ORDER.index("attentions_input") < names.LAYER_ORDER.index(internal) < names.LAYER_ORDER.index("attentions_output")


@pytest.fixture(scope="module")
def model() -> StandardizedTransformer:
    return StandardizedTransformer(str(checkpoint("llama")))


def test_installed_accessors_follow_the_table(model: StandardizedTransformer) -> None:
    for entry in names.NAMES:
        if entry.per_layer and entry.kind != "derived":
            accessor = getattr(model, entry.name)
            kind = AttentionProbabilitiesAccessor if entry.name == "attention_probabilities" else ValueAccessor
            assert isinstance(accessor, kind), entry.name


def test_gradients_accept_exactly_the_table_s_gradient_values(model: StandardizedTransformer) -> None:
    metric = lambda logits: logits[:, -1].sum()  # noqa: E731
    for name in ("layers_output", "mlps_input"):
        assert name in names.GRADIENT_VALUES
        grads = model.gradients("Hello world", metric, names=(name,), layers=[0])
        assert all(isinstance(g, torch.Tensor) for g in grads.values())
    refused = [n.name for n in names.NAMES if n.per_layer and not n.gradients and n.cached]
    assert "queries" in refused
    with pytest.raises((UnknownNameError, InputError), match="queries"):
        model.gradients("Hello world", metric, names=("queries",), layers=[0])


def test_default_cache_holds_the_table_s_default_names(model: StandardizedTransformer) -> None:
    cache = model.run_with_cache("Hello world", layers=[0])
    held = {key.rsplit(".", 1)[0] for key in cache.keys() if key.rsplit(".", 1)[-1].isdigit()}
    # On an attention-only model the mixer values equal the attention ones and are left out.
    assert held == set(names.CACHED_BY_DEFAULT) - {"mixers_input", "mixers_output"}
