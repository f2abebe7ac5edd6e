"""Fuzzing: random spec files and random arguments to the public API. The only allowed outcomes
are a correct value or an nnspec error that names what was wrong; never a raw error from deep
inside torch, transformers or NNsight."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from nnspec import StandardizedTransformer
from nnspec.errors import NnspecError

from .conftest import checkpoint

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)

# -- spec files -----------------------------------------------------------------------------------

KEYS = {
    "": ["name", "extends", "description", "model_types", "nmae", "inherit_overrides"],
    "config": ["num_layers", "num_heads", "num_kv_heads", "head_dim", "hidden_size", "vocab_size", "hiden_size"],
    "modules": ["embed_tokens", "layers", "ln_final", "lm_head", "before_lm_head", "optional", "lnfinal"],
    "layer": ["returns", "hidden_element"],
    "attention": ["module", "element", "contribution", "scale", "includes_residual", "kind", "clone", "flattened", "score"],
    "mlp": ["module", "input", "contribution", "element", "scale", "clone", "flattened", "modul"],
    "residual": ["kind"],
    "limits": ["contribution", "qkv", "padding", "other"],
}
PATHS = ["transformer.h", "transformer.wte", "transformer.ln_f", "attn", "mlp", "lm_head", "ln_1", "h.0", "bad path", "x..y"]
VALUES = st.one_of(
    st.sampled_from(PATHS), st.integers(-3, 5), st.booleans(), st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.sampled_from(["", "tensor", "tuple", "sequential", "parallel", "post_norm", "softmax", "linear", "n_embd", "gpt2"]),
    st.lists(st.sampled_from(PATHS), max_size=2),
)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(float(value)) if isinstance(value, float) and math.isfinite(value) else str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


@st.composite
def spec_files(draw: Any) -> str:
    lines = ['name = "fuzz"', 'extends = "gpt2"', 'model_types = ["gpt2"]']
    top, tables = [], []
    for table, keys in KEYS.items():
        chosen = draw(st.lists(st.sampled_from(keys), max_size=3, unique=True))
        body = [f"{key} = {_toml_value(draw(VALUES))}" for key in chosen if key not in ("name", "extends", "model_types")]
        if not body:
            continue
        if table:
            tables += [f"[{table}]", *body]
        else:
            top += body  # top-level keys must come before the first table
    lines += top + tables
    if draw(st.booleans()):
        lines.append("this is [not toml")
    return "\n".join(lines) + "\n"


@FUZZ
@given(text=spec_files())
def test_random_spec_files_load_or_fail_with_a_named_error(text: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("spec") / "fuzz.toml"
    path.write_text(text, encoding="utf-8")
    try:
        model = StandardizedTransformer(checkpoint("gpt2"), spec=str(path))
    except NnspecError as exc:
        assert "fuzz.toml" in str(exc) or "gpt2" in str(exc), f"the error names no file: {exc}"
        return
    try:
        with model.trace("Hello world"):
            out = model.layers_output[0].save()
        assert out.shape[-1] == model.hidden_size
    except NnspecError:
        pass


# -- the public API -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gpt2() -> StandardizedTransformer:
    return StandardizedTransformer(checkpoint("gpt2"))


PROMPTS = st.one_of(
    st.text(max_size=30),
    st.lists(st.text(max_size=12), max_size=3),
    st.sampled_from([[], "", [""], "Hello world", ["Hi", "The capital of France is"]]),
)
LAYERS = st.one_of(st.integers(-6, 6), st.lists(st.integers(-6, 6), max_size=3), st.none(), st.sampled_from([1.5, "2", True]))


@FUZZ
@given(prompts=PROMPTS, layers=LAYERS)
def test_logit_lens_and_cache_on_random_arguments(gpt2: StandardizedTransformer, prompts: Any, layers: Any) -> None:
    from nnspec.interventions import logit_lens

    try:
        probs = logit_lens(gpt2, prompts, layers=layers)
    except NnspecError:
        pass
    else:
        assert probs.ndim == 3 and torch.allclose(probs.sum(-1), torch.ones(probs.shape[:2]), atol=1e-4)
    try:
        cache = gpt2.run_with_cache(prompts, names=["layers_output"], layers=layers)
    except NnspecError:
        pass
    else:
        assert all(v.shape[-1] == gpt2.hidden_size for v in cache.values())


@FUZZ
@given(
    prompts=PROMPTS,
    layer=LAYERS,
    shape=st.sampled_from([(64,), (1, 64), (63,), (2, 3, 64), ()]),
    positions=st.one_of(st.none(), st.integers(-4, 4), st.lists(st.integers(-4, 4), max_size=2)),
    factor=st.floats(-3, 3, allow_nan=False),
)
def test_steer_on_random_arguments(gpt2: StandardizedTransformer, prompts: Any, layer: Any, shape: tuple,
                                   positions: Any, factor: float) -> None:
    vector = torch.ones(shape)
    try:
        with gpt2.trace(prompts):
            gpt2.steer(layers=layer, steering_vector=vector, factor=factor, positions=positions)
            logits = gpt2.logits.save()
    except NnspecError:
        return
    assert torch.isfinite(logits).all()


@FUZZ
@given(index=st.one_of(st.integers(-8, 8), st.sampled_from([1.0, "0", None, slice(0, 1)])),
       value=st.sampled_from(["ok", "float64", "int", "shape", "list"]))
def test_value_accessors_on_random_indices_and_values(gpt2: StandardizedTransformer, index: Any, value: str) -> None:
    try:
        with gpt2.trace("Hello world"):
            hidden = gpt2.layers_output[index]
            new = {
                "ok": hidden * 2,
                "float64": torch.randn(hidden.shape, dtype=torch.float64),
                "int": torch.ones(hidden.shape, dtype=torch.long),
                "shape": torch.zeros(3),
                "list": [1, 2],
            }[value]
            gpt2.layers_output[index] = new
            out = gpt2.logits.save()
    except NnspecError:
        return
    assert torch.isfinite(out).all()
