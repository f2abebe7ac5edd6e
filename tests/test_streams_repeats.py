"""Spec facts for several residual streams (`layer.streams`), looped sections of blocks
(`layer.repeats`) and a project_on_vocab limit: validation and what the runtime derives from them."""

from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from nnspec.compiler.schema import LayerIO, Limits, Repeats, Spec
from nnspec.errors import ModelStructureError
from nnspec.runtime.model import _layer_passes, _residual_shape

BASE = {
    "name": "x", "model_types": ["x"],
    "modules": {"embed_tokens": "model.embed_tokens", "layers": "model.layers", "ln_final": "model.norm"},
    "attention": {"module": "self_attn"}, "mlp": {"module": "mlp"},
}


def spec(**layer):
    return Spec.model_validate({**BASE, "layer": layer})


def test_repeats_needs_exactly_one_extent():
    with pytest.raises(ValidationError, match="exactly one of `end`"):
        Repeats(start=1, passes=2)
    with pytest.raises(ValidationError, match="exactly one of `end`"):
        Repeats(start=1, end=3, count=2, passes=2)
    with pytest.raises(ValidationError, match="passes"):
        Repeats(start=1, end=3, passes=0)


def test_streams_must_be_several():
    with pytest.raises(ValidationError, match="2 or more"):
        LayerIO(streams=1)
    assert LayerIO(streams="hc_count").stream_layout == "concatenated"


def test_project_on_vocab_limit_is_declared():
    assert Limits(project_on_vocab="why").declared() == {"project_on_vocab": "why"}


def test_residual_shape_from_config():
    config = SimpleNamespace(hc_count=4)
    assert _residual_shape(spec(), config, "x.toml", 64) == (64,)
    assert _residual_shape(spec(streams="hc_count"), config, "x.toml", 64) == (256,)
    assert _residual_shape(spec(streams=3, stream_layout="stacked"), config, "x.toml", 64) == (3, 64)
    with pytest.raises(ModelStructureError, match="hc_mult"):
        _residual_shape(spec(streams="hc_mult"), config, "x.toml", 64)


def test_layer_passes_from_config():
    config = SimpleNamespace(first=1, last=3, size=2, times=3)
    by_end = spec(repeats={"start": "first", "end": "last", "passes": "times"})
    by_count = spec(repeats={"start": "first", "count": "size", "passes": "times"})
    assert _layer_passes(by_end, config, "x.toml", 5) == [1, 3, 3, 1, 1]
    assert _layer_passes(by_count, config, "x.toml", 5) == [1, 3, 3, 1, 1]
    assert _layer_passes(spec(), config, "x.toml", 3) == [1, 1, 1]
    with pytest.raises(ModelStructureError, match="does not fit"):
        _layer_passes(spec(repeats={"start": 2, "end": 9, "passes": 2}), config, "x.toml", 5)
