"""Tiny offline checkpoints: built from the spec's [tiny] config, cached by content, loaded back
through the real from_pretrained path."""

from __future__ import annotations

from pathlib import Path

import pytest

from nnspec.errors import TinyCheckpointError
from nnspec.runtime.registry import adapter_by_name
from nnspec.verification import tiny


def test_cache_is_keyed_by_spec_variant_and_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NNSPEC_CACHE", str(tmp_path))
    spec = adapter_by_name("gpt2").spec
    first = tiny.checkpoint(spec)
    assert tiny.checkpoint(spec) == first and first.parent == tmp_path / "tiny"
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    assert tiny.checkpoint(spec) == first and (first / "model.safetensors").stat().st_mtime_ns == stamp, "no rebuild"
    changed = spec.model_copy(update={"tiny": spec.tiny.model_copy(update={"config": {**spec.tiny.config, "n_layer": 2}})})
    assert tiny.checkpoint(changed) != first
    assert not [p for p in first.parent.iterdir() if p.name.startswith(".")], "no staging folders left"


def test_tokenizers_cover_both_styles() -> None:
    byte_level, metaspace = tiny.tokenizer("byte_level"), tiny.tokenizer("metaspace")
    assert byte_level.decode(byte_level("Hello world").input_ids) == "Hello world"
    ids = metaspace("Hello world").input_ids
    assert ids[0] == metaspace.bos_token_id and metaspace.decode(ids, skip_special_tokens=True) == "Hello world"
    assert len(byte_level) <= tiny.VOCAB_SIZE and len(metaspace) <= tiny.VOCAB_SIZE


def test_variant_overrides_and_bad_config(tmp_path: Path) -> None:
    spec = adapter_by_name("falcon").spec
    assert tiny.tiny_config_values(spec, "sequential")["parallel_attn"] is False
    with pytest.raises(TinyCheckpointError, match="no variant 'sequentail'.*did you mean 'sequential'"):
        tiny.tiny_config_values(spec, "sequentail")
    broken = spec.model_copy(update={"tiny": spec.tiny.model_copy(update={"config": {"hidden_size": 65}})})
    with pytest.raises(TinyCheckpointError, match="spec 'falcon'"):
        tiny.build(broken, tmp_path / "x")


def test_a_real_config_checkpoint_is_rebuilt_when_the_shrinker_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A published config's tiny checkpoint depends on how sizes are shrunk: one built by another
    version of the shrinker is not reused."""
    monkeypatch.setenv("NNSPEC_CACHE", str(tmp_path))
    built: list[str] = []
    monkeypatch.setattr(tiny, "build_from_config", lambda config, staging, name: built.append(name) or Path(staging))
    monkeypatch.setattr(tiny, "publish", lambda path, make: (make(path), path.mkdir(parents=True), (path / tiny._MARKER).touch()))
    first = tiny.real_checkpoint("gpt2")
    assert tiny.real_checkpoint("gpt2") == first and len(built) == 1
    tiny._shrinker_digest.cache_clear()
    monkeypatch.setattr(tiny, "_shrinker_digest", lambda: "another-shrinker")
    assert tiny.real_checkpoint("gpt2") != first and len(built) == 2
