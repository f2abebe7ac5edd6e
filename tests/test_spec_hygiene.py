"""Spec files state each fact once: `unset` removes inherited entries, children repeat no parent
value, shared attention sources are named once, every spec has a description."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tomllib

from nnspec.compiler.loader import BUNDLED_DIR, load_all, load_spec_file
from nnspec.compiler.schema import SOURCE_SETS
from nnspec.errors import SpecValidationError
from nnspec.scaffold.draft import closest_parent
from nnspec.verification.tiny import tiny_config_values


@pytest.fixture(scope="module")
def loaded() -> dict:
    return load_all()


def raw(name: str) -> dict:
    return tomllib.loads((BUNDLED_DIR / f"{name}.toml").read_text(encoding="utf-8"))


def write(tmp_path: Path, text: str, name: str = "child") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(f'name = "{name}"\nextends = "llama"\ndescription = "d"\nmodel_types = ["llama"]\n' + text, encoding="utf-8")
    return path


def test_every_spec_has_a_one_line_description(loaded: dict) -> None:
    for name in loaded:
        description = raw(name).get("description", "")
        assert description.strip() and "\n" not in description, name


def test_children_repeat_no_parent_tiny_value(loaded: dict) -> None:
    for name in loaded:
        parent = raw(name).get("extends")
        if parent is None:
            continue
        inherited = loaded[parent].spec.tiny.config
        repeated = [k for k, v in raw(name).get("tiny", {}).get("config", {}).items() if k in inherited and inherited[k] == v]
        assert not repeated, f"{name} repeats {parent}'s tiny.config {repeated}"


def test_spec_files_hold_no_deletion_markers_or_pass_counts() -> None:
    for path in sorted(BUNDLED_DIR.glob("*.toml")):
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
        assert "" not in data.get("tiny", {}).get("config", {}).values(), path.name
        assert "" not in data.get("variants", {}).values(), path.name
        assert not re.search(r"#.*\d+/\d+ checks pass", text), path.name
        # the shared attention sources are named (`sources = "attention_interface"`), not copied
        assert '{ name = "attention_interface" }, { name = "nn_functional_dropout" }' not in text, path.name


def test_unset_removes_inherited_entries(tmp_path: Path, loaded: dict) -> None:
    llama = loaded["llama"].spec
    key = next(iter(llama.tiny.config))
    variant = next(iter(llama.variants))
    spec = load_spec_file(write(tmp_path, f'unset = ["tiny.config.{key}", "variants.{variant}"]\n'), [BUNDLED_DIR]).spec
    assert key not in spec.tiny.config and variant not in spec.variants
    assert key not in tiny_config_values(spec)
    rest = {k: v for k, v in llama.tiny.config.items() if k != key}
    assert spec.tiny.config == rest and set(spec.variants) == set(llama.variants) - {variant}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[tiny.config]\nhidden_size = ""\n', r'tiny\.config\.hidden_size: "" is not a deletion marker.*unset = \["tiny\.config\.hidden_size"\]'),
        ('[variants]\nmulti_query = ""\n', r'variants\.multi_query: "".*unset = \["variants\.multi_query"\]'),
        ('unset = ["tiny.config.no_such_key"]\n', r"unset: 'tiny\.config\.no_such_key': the parent spec 'llama' sets no such entry"),
        ('unset = ["tiny.config.hidden_size"]\n[tiny.config]\nhidden_size = 32\n', r"also set by this spec"),
        ('unset = ["attention.probabilities"]\n', r"not one of tiny\.config\.NAME, variants\.NAME"),
    ],
)
def test_bad_deletions_are_refused_naming_file_and_form(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(SpecValidationError, match=expected) as info:
        load_spec_file(path, [BUNDLED_DIR])
    assert info.value.file == str(path)


def test_unset_needs_a_parent(tmp_path: Path) -> None:
    path = tmp_path / "root.toml"
    text = (BUNDLED_DIR / "gpt2.toml").read_text(encoding="utf-8").replace('name = "gpt2"', 'name = "root"')
    path.write_text('unset = ["variants.x"]\n' + text, encoding="utf-8")
    with pytest.raises(SpecValidationError, match="unset: removes inherited entries, so it needs `extends`"):
        load_spec_file(path, [BUNDLED_DIR])


def test_named_sources_expand_and_yield_to_stated_ones(tmp_path: Path, loaded: dict) -> None:
    llama = loaded["llama"].spec.attention
    for field, source in SOURCE_SETS["attention_interface"].items():
        assert getattr(llama, field).model_dump(exclude_defaults=True) == source, field
    child = load_spec_file(write(tmp_path, '[attention]\nprobabilities = ""\n'), [BUNDLED_DIR]).spec.attention
    assert child.probabilities is None and child.queries == llama.queries and child.sources is None


def test_scaffold_reduction_states_only_differences(loaded: dict) -> None:
    """A draft equal to llama but for one tiny size and one missing tiny key states just those."""
    llama = loaded["llama"].spec
    tiny = dict(llama.tiny.config)
    dropped = next(iter(tiny))
    changed = next(k for k in tiny if k != dropped)
    tiny.pop(dropped)
    tiny[changed] = 12345
    draft = {"name": "x", "model_types": ["llama"], "attention": llama.attention.model_dump(mode="json", exclude={"sources"}),
             "mlp": llama.mlp.model_dump(mode="json"), "tiny": {"config": tiny}}
    parent, reduced = closest_parent(draft, {"llama": loaded["llama"]}, prefer="llama")
    assert parent == "llama"
    assert reduced["tiny"] == {"config": {changed: 12345}} and reduced["unset"] == [f"tiny.config.{dropped}"]
    assert "attention" not in reduced and "mlp" not in reduced
