"""Generated adapters state, readably, what each standard name reads on their architecture, with the
spec line each fact comes from; importing them validates nothing; overrides are explicit branches."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nnspec.compiler import codegen
from nnspec.compiler.loader import BUNDLED_DIR
from nnspec.compiler.records import Read
from nnspec.errors import NnspecError

GENERATED = codegen.GENERATED_DIR

# Written by hand from the HF modeling code of each architecture, not from the specs.
ATTENTION_OUTPUT = {
    "bloom": "attentions_output = Read('transformer.h.{i}.self_attention', 'contribution', element=0, minus_residual='residual')",
    "falcon": "attentions_output = Read('transformer.h.{i}.self_attention', 'contribution', element=0)",
    "gemma2": "attentions_output = Read('model.layers.{i}.post_attention_layernorm', 'contribution', element=0)",
    "qwen3_next": "attentions_output = Read('model.layers.{i}.self_attn', 'contribution', element=0)",
}


@pytest.mark.parametrize("name", sorted(ATTENTION_OUTPUT))
def test_generated_source_states_what_attentions_output_reads(name: str) -> None:
    text = (GENERATED / f"{name}.py").read_text()
    assert ATTENTION_OUTPUT[name] in text
    line = next(l for l in text.splitlines() if l.strip().startswith("attentions_output = "))
    assert re.search(r"# \w+\.toml:\d+ attention\.(module|contribution)", line), line


def test_hybrid_layers_state_their_own_mixer() -> None:
    text = (GENERATED / "qwen3_next.py").read_text()
    assert "per_layer_key = 'layer_types'" in text
    assert "'attentions_output': Read('model.layers.{i}.linear_attn', 'contribution', element=0)" in text
    assert "'mixer_kind': 'linear'" in text


def test_spec_line_comments_point_at_the_key() -> None:
    """Every ``file.toml:N key`` comment names a line of that spec that writes the key."""
    pattern = re.compile(r"(\w+\.toml):(\d+) ([\w.\[\]]+)")
    checked = 0
    for path in sorted(GENERATED.glob("*.py")):
        for match in pattern.finditer(path.read_text()):
            file, number, key = match.group(1), int(match.group(2)), match.group(3)
            line = (BUNDLED_DIR / file).read_text().splitlines()[number - 1]
            last = re.sub(r"\[\d+\]$", "", key.split(".")[-1])
            if last == "overrides":
                assert "[[overrides]]" in line, (path.name, match.group(0), line)
            else:
                assert last in line or f"[{key.rsplit('.', 1)[0]}" in line, (path.name, match.group(0), line)
            checked += 1
    assert checked > 1000


def test_version_overrides_are_branches_the_runtime_follows() -> None:
    from transformers import AutoConfig

    from nnspec.runtime.registry import adapter_by_name

    text = (GENERATED / "gemma2.py").read_text()
    assert "if version_in(versions, 'transformers', '<5'):" in text
    config = AutoConfig.for_model("gemma2")
    adapter = adapter_by_name("gemma2")
    assert adapter.effective(config, {"transformers": "4.57.1"}).layer.returns == "tuple"
    assert adapter.effective(config, {"transformers": "5.2.0"}).layer.returns == "tensor"
    assert adapter.overrides_for(config, {"transformers": "5.2.0"}) == []


def test_config_overrides_are_branches_the_runtime_follows() -> None:
    from transformers import AutoConfig

    from nnspec.runtime.registry import adapter_by_name

    text = (GENERATED / "falcon.py").read_text()
    assert "if config_is(config, 'alibi', True):" in text
    adapter = adapter_by_name("falcon")
    plain, alibi = AutoConfig.for_model("falcon"), AutoConfig.for_model("falcon", alibi=True)
    assert adapter.effective(plain).attention.score == "scaled_dot_product"
    assert adapter.effective(alibi).attention.score == "other"


def test_importing_generated_adapters_validates_nothing() -> None:
    """Every generated module imports and its records read without a single Spec.model_validate;
    reading ``spec`` validates once."""
    script = textwrap.dedent(
        """
        from nnspec.compiler.schema import Spec
        calls = []
        original = Spec.model_validate.__func__
        Spec.model_validate = classmethod(lambda cls, *a, **k: (calls.append(1), original(cls, *a, **k))[1])
        from nnspec.runtime.registry import adapter_by_name, spec_names
        adapters = [adapter_by_name(n) for n in spec_names()]
        assert all(a.attentions_output is not None and a.rename is not None for a in adapters)
        assert calls == [], f"{len(calls)} validations on import"
        assert adapter_by_name("bloom").spec is adapter_by_name("bloom").spec and len(calls) == 1, calls
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_a_user_spec_file_is_compiled_the_same_way(tmp_path: Path) -> None:
    spec = tmp_path / "my_llama.toml"
    spec.write_text(
        'name = "my_llama"\nextends = "llama"\nmodel_types = ["my_llama"]\n\n'
        '[attention]\ncontribution = "post_attention_layernorm"\n\n'
        '[[overrides]]\nwhen = { config = { use_post = false } }\nset = { attention = { contribution = "" } }\n'
    )
    from nnspec.runtime.adapter import Adapter

    adapter = Adapter.from_file(spec)
    assert adapter.attentions_output == Read("model.layers.{i}.post_attention_layernorm", "contribution", element=0)
    assert type(adapter).overrides_for is not Adapter.overrides_for.__func__  # its own branches

    class Config:
        use_post = False

    assert adapter.effective(Config()).attention.contribution is None
    Config.use_post = True
    assert adapter.effective(Config()).attention.contribution == "post_attention_layernorm"


def test_records_name_the_modules_the_runtime_reads(llama_path: Path) -> None:
    """The record's module path is the module the loaded model's port reads (ground truth: the
    envoy the runtime binds, against HF's own module names)."""
    from nnspec import StandardizedTransformer

    model = StandardizedTransformer(llama_path)
    adapter = model._adapter
    hf_names = {name for name, _ in model._module.named_modules()}
    for name in ("attentions_output", "mlps_output", "attentions_input", "layers_output"):
        record = adapter.record(name)
        assert record.at(1) in hf_names
        port = getattr(model, name).port(1)
        assert port.envoy._module is model._module.get_submodule(record.at(1)), name


#: Architectures whose records take different paths: per-layer hybrids (attention, state space,
#: linear attention, layers without an MLP), vision-language wrappers, parallel and post-norm
#: residuals, branches that add the residual themselves, post-norms after a branch.
VARIED = ["gpt2", "bloom", "falcon", "gemma2", "gptj", "opt", "qwen3_next", "jamba", "mamba", "nemotron_h",
          "llava", "gemma3", "phi", "olmo2", "granitemoehybrid", "lfm2"]


@pytest.mark.parametrize("name", VARIED)
def test_every_layer_s_records_name_the_modules_the_runtime_reads(name: str) -> None:
    """On every layer, each residual and branch value's record names the module whose envoy the
    loaded model's port binds (or the port refuses where the record says the layer lacks it)."""
    from nnspec import StandardizedTransformer
    from nnspec.compiler.records import Read
    from nnspec.runtime.adapter import text_config

    from .conftest import checkpoint

    model = StandardizedTransformer(str(checkpoint(name)))
    config = text_config(model._module.config)
    checked = 0
    for i in range(model.num_layers):
        for value in ("layers_input", "layers_output", "attentions_input", "attentions_output", "mlps_input",
                      "mlps_output", "mixers_input", "mixers_output"):
            record = model._adapter.record(value, config, i)
            try:
                port = getattr(model, value).port(i)
            except NnspecError:
                assert not isinstance(record, Read), f"{value}[{i}]: the port refuses, the record reads {record}"
                continue
            assert isinstance(record, Read), f"{value}[{i}]: the port reads, the record says {record}"
            assert port.envoy._module is model._module.get_submodule(record.at(i)), f"{value}[{i}]: {record.at(i)}"
            checked += 1
    assert checked >= 4 * model.num_layers


def test_the_runtime_binds_what_the_generated_class_states(llama_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ports are built from the adapter class's records: change a record on the class and the
    loaded model reads what the changed record says (ground truth: the output of the module it
    names, taken with a forward hook of plain torch)."""
    import torch

    from nnspec import StandardizedTransformer
    from nnspec.compiler.records import Read, Refused
    from nnspec.runtime.registry import adapter_by_name

    cls = type(adapter_by_name("llama"))
    monkeypatch.setattr(cls, "attentions_output", Read("model.layers.{i}.mlp", "contribution", element=0))
    monkeypatch.setattr(cls, "layers_input", Read("model.layers.{i}.post_attention_layernorm", "input"))
    monkeypatch.setattr(cls, "padding", Refused("a stated refusal."), raising=False)
    model = StandardizedTransformer(llama_path)
    with model.trace("The river bank"):
        block_in = model.layers_input[1].save()  # the norm's input comes before the MLP's output
        attention = model.attentions_output[1].save()
    seen: dict[str, torch.Tensor] = {}
    hf = model._module
    hooks = [
        hf.get_submodule("model.layers.1.mlp").register_forward_hook(lambda m, a, out: seen.__setitem__("mlp", out)),
        hf.get_submodule("model.layers.1.post_attention_layernorm").register_forward_hook(
            lambda m, a, out: seen.__setitem__("norm_in", a[0])),
    ]
    try:
        with torch.no_grad():
            hf(**model.tokenizer("The river bank", return_tensors="pt"))
    finally:
        for hook in hooks:
            hook.remove()
    assert torch.allclose(attention, seen["mlp"], atol=1e-6) and torch.allclose(block_in, seen["norm_in"], atol=1e-6)
    with pytest.raises(NnspecError, match="a stated refusal"):
        with model.trace(["a b c d", "a"]):
            model.layers_output[0].save()


def test_an_applied_override_binds_the_effective_spec_s_records() -> None:
    """Where an override holds, the records come from the effective spec compiled in memory, the
    same way `nnspec compile` writes them; else the class's own."""
    from nnspec.compiler.describe import records
    from nnspec.compiler.records import Refused
    from nnspec.runtime.registry import adapter_by_name

    adapter = adapter_by_name("bloom")

    class Config:
        apply_residual_connection_post_layernorm = True

    effective = adapter.effective(Config())
    bound = adapter.records_for(effective)
    assert isinstance(bound.base["attentions_output"], Refused)
    assert dict(bound.base) == {d.name: d.record for d in records(effective)}
    assert adapter.records_for(adapter.spec).base["attentions_output"] is type(adapter).attentions_output
