"""Bad spec files: each error names the file, the key path and (for a wrong name) the closest ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from nnspec.compiler.loader import BUNDLED_DIR, load_all, load_spec_file
from nnspec.errors import (
    SpecError,
    SpecInheritanceError,
    SpecNotFoundError,
    SpecSyntaxError,
    SpecValidationError,
)

VALID = (BUNDLED_DIR / "gpt2.toml").read_text()


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


def test_bundled_specs_all_load() -> None:
    specs = load_all()
    assert {"gpt2", "gpt_neox", "gptj", "opt", "bloom", "llama", "mistral", "qwen2", "gemma2", "phi", "falcon", "mixtral"} <= set(specs)


def test_malformed_toml_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "broken", 'name = "broken"\n[modules\nlayers = "x"\n')
    with pytest.raises(SpecSyntaxError) as info:
        load_spec_file(path)
    assert str(path) in str(info.value) and "line 2" in str(info.value)


def test_unknown_key_suggests_closest(tmp_path: Path) -> None:
    path = write(tmp_path, "gpt2x", VALID.replace('name = "gpt2"', 'name = "gpt2x"').replace("[mlp]\n", "[mlp]\ncontributon = 'mlp'\n"))
    with pytest.raises(SpecValidationError) as info:
        load_spec_file(path)
    message = str(info.value)
    assert str(path) in message and "mlp.contributon: unknown key" in message and "'contribution'" in message


def test_unknown_top_level_table(tmp_path: Path) -> None:
    path = write(tmp_path, "gpt2x", VALID.replace('name = "gpt2"', 'name = "gpt2x"') + "\n[modles]\nx = 1\n")
    with pytest.raises(SpecValidationError, match=r"modles: unknown key \(did you mean 'modules'"):
        load_spec_file(path)


def test_wrong_type_names_key_and_value(tmp_path: Path) -> None:
    path = write(tmp_path, "gpt2x", VALID.replace('name = "gpt2"', 'name = "gpt2x"').replace('module = "attn"', "module = 3"))
    with pytest.raises(SpecValidationError) as info:
        load_spec_file(path)
    assert "attention.module" in str(info.value) and "got 3" in str(info.value)


def test_invalid_literal_value(tmp_path: Path) -> None:
    path = write(tmp_path, "gpt2x", VALID.replace('name = "gpt2"', 'name = "gpt2x"') + '\n[residual]\nkind = "paralel"\n')
    with pytest.raises(SpecValidationError, match=r"residual.kind.*'sequential', 'parallel' or 'post_norm'"):
        load_spec_file(path)


def test_missing_required_field(tmp_path: Path) -> None:
    text = VALID.replace('name = "gpt2"', 'name = "gpt2x"').replace('layers = "transformer.h"\n', "")
    path = write(tmp_path, "gpt2x", text)
    with pytest.raises(SpecValidationError, match=r"modules.layers: required key is missing"):
        load_spec_file(path)


def test_name_must_match_file(tmp_path: Path) -> None:
    path = write(tmp_path, "other", VALID)
    with pytest.raises(SpecValidationError, match="must equal the file name stem 'other'"):
        load_spec_file(path)


def test_extends_unknown_spec_suggests(tmp_path: Path) -> None:
    path = write(tmp_path, "child", 'name = "child"\nextends = "lama"\nmodel_types = ["child"]\n')
    with pytest.raises(SpecInheritanceError) as info:
        load_spec_file(path)
    assert "extends" in str(info.value) and "'llama'" in str(info.value) and str(path) in str(info.value)


def test_extends_cycle(tmp_path: Path) -> None:
    write(tmp_path, "a", 'name = "a"\nextends = "b"\nmodel_types = ["a"]\n')
    b = write(tmp_path, "b", 'name = "b"\nextends = "a"\nmodel_types = ["b"]\n')
    with pytest.raises(SpecInheritanceError, match="extends cycle: b -> a -> b"):
        load_spec_file(b)


def test_child_states_only_what_differs(tmp_path: Path) -> None:
    path = write(tmp_path, "child", 'name = "child"\nextends = "llama"\nmodel_types = ["child"]\n[mlp]\nclone = true\n')
    loaded = load_spec_file(path)
    assert loaded.lineage == ("llama", "child")
    assert loaded.spec.modules.layers == "model.layers" and loaded.spec.mlp.clone and loaded.spec.mlp.module == "mlp"
    assert loaded.spec.model_types == ["child"] and loaded.spec.description == ""


def test_inherited_key_error_blames_the_child(tmp_path: Path) -> None:
    path = write(tmp_path, "child", 'name = "child"\nextends = "llama"\nmodel_types = ["child"]\n[layer]\nhidden_element = -1\n')
    with pytest.raises(SpecValidationError) as info:
        load_spec_file(path)
    assert str(path) in str(info.value) and "layer.hidden_element" in str(info.value)


def test_missing_file() -> None:
    with pytest.raises(SpecNotFoundError, match="nope.toml: file not found"):
        load_spec_file("/nonexistent/nope.toml")


def test_override_is_validated_against_the_merged_spec(tmp_path: Path) -> None:
    text = VALID.replace('name = "gpt2"', 'name = "gpt2x"') + (
        '\n[[overrides]]\nwhen = { transformers = ">=5" }\nset = { residual = { kind = "diagonal" } }\n'
    )
    with pytest.raises(SpecValidationError, match=r"overrides\[\d\].set.residual.kind"):
        load_spec_file(write(tmp_path, "gpt2x", text))


def test_override_unknown_key_and_bad_specifier(tmp_path: Path) -> None:
    base = VALID.replace('name = "gpt2"', 'name = "gpt2x"')
    bad_key = base + '\n[[overrides]]\nwhen = { transformers = ">=5" }\nset = { modules = { ln_finall = "x" } }\n'
    with pytest.raises(SpecValidationError, match=r"overrides\[\d\].set.modules.ln_finall: unknown key.*'ln_final'"):
        load_spec_file(write(tmp_path, "gpt2x", bad_key))
    bad_version = base + '\n[[overrides]]\nwhen = { transformers = "five" }\nset = {}\n'
    with pytest.raises(SpecValidationError, match="not a version specifier"):
        load_spec_file(write(tmp_path, "gpt2x", bad_version))


def test_errors_share_one_base_class(tmp_path: Path) -> None:
    path = write(tmp_path, "broken", "= 1")
    with pytest.raises(SpecError):
        load_spec_file(path)
