"""Real published configs: the corpus, the shrinker that keeps everything but sizes, tiny
checkpoints built from them (``nnspec tiny --from-config``), and the config keys specs may read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nnspec.errors import TinyCheckpointError
from nnspec.runtime.registry import adapter_by_name, model_types, spec_names
from nnspec.verification import realconfigs, shrink, tiny

CORPUS = realconfigs.corpus()
SIZE_KEYS = {key for keys in shrink.SIZE_KEYS.values() for key in keys}


def _flat(config: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_corpus_is_sourced_and_complete() -> None:
    files = {p.name for p in realconfigs.CONFIG_DIR.glob("*.json")}
    listed = {real.file.name for real in CORPUS.values()}
    assert files == listed, f"unlisted: {files - listed}, missing: {listed - files}"
    assert len(CORPUS) >= 100
    for hub_id, real in CORPUS.items():
        assert (real.repo.count("/") == 1 and real.path) or (real.index_id and real.note), f"{hub_id}: no source"
        config = real.load()
        assert "architectures" in config, f"{hub_id}: copies must be complete (architectures missing)"
    served = set(model_types())
    unserved = sorted({real.model_type for real in CORPUS.values()} - served)
    assert not unserved, f"corpus configs of model types no spec serves: {unserved}"


@pytest.mark.parametrize("hub_id", sorted(CORPUS))
def test_shrink_changes_only_sizes(hub_id: str) -> None:
    config = CORPUS[hub_id].load()
    shrunk = shrink.shrink_config(config, 384, {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2})
    before, after = _flat(config), _flat(shrunk.config)
    removed = {key for key in before if any(key == d or key.startswith(d + ".") for d in shrunk.dropped)}
    assert set(before) - set(after) == removed and all(d in config for d in shrunk.dropped)
    assert set(after) <= set(before), "the shrinker adds no key"
    for key, value in before.items():
        if key in removed or after[key] == value:
            continue
        leaf = key.rsplit(".", 1)[-1]
        assert key in shrunk.changed, f"{key} changed without being reported"
        sized = (
            leaf in SIZE_KEYS or leaf in shrink.LAYER_COUNT_KEYS or leaf in shrink.LAYER_INDEX_KEYS
            or leaf.endswith("_token_id") or leaf.endswith("_token_index") or leaf in ("long_factor", "short_factor")
            or leaf in ("word_embed_proj_dim", "n_group", "topk_group")
            or (isinstance(value, list) and len(value) == _layers(config))
            or shrink.is_size_key(leaf)  # per-layer lists of nested configs (multimodal text_config)
        )
        assert sized, f"{hub_id}: {key} is not a size, yet it changed from {value!r} to {after[key]!r}"
    heads, kv = _attention_class(config), _attention_class(shrunk.config)
    assert heads == kv, f"{hub_id}: attention class {heads} became {kv}"
    assert ("head_dim" in config) == ("head_dim" in shrunk.config)


def _layers(config: dict) -> int:
    return next((config[k] for k in shrink.SIZE_KEYS["layers"] if isinstance(config.get(k), int)), -1)


def _attention_class(config: dict) -> str:
    heads = next((config[k] for k in shrink.SIZE_KEYS["heads"] if isinstance(config.get(k), int)), None)
    kv = next((config[k] for k in shrink.SIZE_KEYS["kv_heads"] if isinstance(config.get(k), int)), None)
    if kv is None or heads is None or kv >= heads:
        return "mha"
    return "mqa" if kv == 1 else "gqa"


def test_shrink_keeps_layer_patterns_and_rope_lists() -> None:
    special = {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2}
    pattern = ["sliding_attention"] * 5 + ["full_attention"]
    gemma = {"model_type": "gemma3_text", "num_hidden_layers": 18, "layer_types": pattern * 3, "hidden_size": 640,
             "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 256, "vocab_size": 262144}
    out = shrink.shrink_config(gemma, 384, special).config
    assert out["num_hidden_layers"] == 6 and out["layer_types"] == pattern, "a full period of the pattern is kept"
    assert out["num_key_value_heads"] == 1 and out["head_dim"] == shrink.HEAD_DIM
    phi = {"model_type": "phi3", "hidden_size": 3072, "num_attention_heads": 32, "num_hidden_layers": 32,
           "max_position_embeddings": 131072, "original_max_position_embeddings": 4096,
           "rope_scaling": {"type": "longrope", "long_factor": [1.0] * 48, "short_factor": [1.0] * 48}}
    out = shrink.shrink_config(phi, 384, special).config
    assert len(out["rope_scaling"]["long_factor"]) == shrink.HEAD_DIM // 2
    assert out["max_position_embeddings"] / out["original_max_position_embeddings"] == 131072 / 4096
    nxt = {"model_type": "qwen3_next", "num_hidden_layers": 48, "full_attention_interval": 4, "hidden_size": 2048}
    assert shrink.shrink_config(nxt, 384, special).config["num_hidden_layers"] == 4
    with pytest.raises(TinyCheckpointError, match="model_type"):
        shrink.shrink_config({"hidden_size": 4}, 384, special)


def test_specs_read_only_keys_every_config_of_their_types_has() -> None:
    """A spec reads a config key without a fallback only if the default config of each model type
    it serves has it (published configs may omit anything a class does not set itself)."""
    from transformers import AutoConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    from nnspec.runtime.adapter import has_config
    from nnspec.runtime.structure import config_keys_read

    missing = []
    for name in spec_names():
        spec = adapter_by_name(name).spec
        for model_type in spec.model_types:
            if model_type not in CONFIG_MAPPING_NAMES:
                continue
            default = AutoConfig.for_model(model_type).get_text_config()  # what the runtime reads
            missing += [f"{name} ({model_type}): {where} = {key!r}" for where, key in config_keys_read(spec)
                        if not has_config(default, key)]
    assert not missing, "keys read with no fallback that a config may lack:\n" + "\n".join(missing)


#: Behaviour keys a spec's tiny config may state because the model type's default config cannot
#: build or run without them; each holds the value published checkpoints use.
NEEDED_TO_BUILD = {
    # the default attention config lacks rope_theta (read at build) and leaves clip_qkv null (the
    # forward clamps with it); databricks/dbrx-* publish 500000 and 8
    "dbrx": ("attn_config.rope_theta", "attn_config.clip_qkv"),
    # rotary parameters keyed by layer type; the default is flat, which the model cannot read
    "cohere_compass_text": ("rope_parameters",),
    # the default text config states no split of the rotary frequencies between the three position
    # streams, and the built-in split needs head_dim 128; Qwen2.5-VL and Qwen3-VL checkpoints
    # publish theirs (16, 24, 24 and 24, 20, 20), stated here scaled to head_dim 16
    # (before transformers 5 the text config reads the same dict as rope_scaling)
    "qwen2_5_vl": ("rope_parameters", "rope_scaling"),
    "qwen3_vl": ("rope_parameters", "rope_scaling"),
    "qwen3_vl_moe": ("rope_parameters", "rope_scaling"),
    # the exceptions to "the value published checkpoints use": the matrix runs on the CPU, where
    # releases before 5.2 (Jamba) and 5.15 (Zamba) raise with the kernels switch on instead of
    # falling back to the slow path; the published configs (which turn it on) are rows of their own
    "jamba": ("use_mamba_kernels",),
    "zamba": ("use_mamba_kernels",),
    # transformers 5.0 to 5.3 call the shared rotary embedding in every forward but build it only
    # with use_mem_rope, so a checkpoint built there needs it on (it adds rotary positions to the
    # shared attention)
    "zamba2": ("use_mem_rope",),
}


def test_tiny_configs_hold_only_sizes() -> None:
    """Behaviour comes from real configs and variants; a spec's own tiny config states sizes."""
    from nnspec.compiler.loader import BUNDLED_DIR, read_toml

    wrong = []
    for name in spec_names():
        config = read_toml(BUNDLED_DIR / f"{name}.toml").get("tiny", {}).get("config", {})
        for key, value in config.items():
            if isinstance(value, dict) and key.endswith("config"):  # a nested sub-config: its keys
                wrong += [f"{name}: tiny.config.{key}.{k}" for k in value
                          if not shrink.is_size_key(k) and f"{key}.{k}" not in NEEDED_TO_BUILD.get(name, ())]
            elif not shrink.is_size_key(key) and key not in NEEDED_TO_BUILD.get(name, ()):
                wrong.append(f"{name}: tiny.config.{key}")
    assert not wrong, "behaviour keys in [tiny.config] (move them to a variant or rely on real configs):\n" + "\n".join(wrong)


def nnspec(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nnspec", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


@pytest.mark.long
def test_tiny_from_config_cli_and_refusals(tmp_path: Path) -> None:
    hub_id = "Qwen/Qwen2.5-3B"
    out = tmp_path / "qwen"
    done = nnspec("tiny", "--from-config", hub_id, str(out))
    assert done.returncode == 0, done.stderr
    written = json.loads((out / "config.json").read_text())
    original = CORPUS[hub_id].load()
    assert "head_dim" not in written and written["use_sliding_window"] == original["use_sliding_window"]
    again = nnspec("tiny", "--from-config", hub_id, str(out))
    assert again.returncode == 2 and "not empty" in again.stderr and "Traceback" not in again.stderr
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    refused = nnspec("tiny", "gpt2", str(mine), "--force")
    assert refused.returncode == 2 and "not a tiny checkpoint written by nnspec" in refused.stderr
    assert (mine / "notes.txt").read_text() == "keep me" and len(list(mine.iterdir())) == 1
    assert nnspec("tiny", "--from-config", hub_id, str(out), "--force").returncode == 0
    bad = tmp_path / "bad.json"
    bad.write_text('{"model_type": ')
    result = nnspec("tiny", "--from-config", str(bad), str(tmp_path / "x"))
    assert result.returncode == 2 and "malformed JSON at line 1" in result.stderr
    bad.write_text('{"model_type": "qwen9", "hidden_size": 8}')
    result = nnspec("tiny", "--from-config", str(bad), str(tmp_path / "x"))
    assert result.returncode == 2 and "'qwen9' is not known" in result.stderr and "qwen2" in result.stderr
    assert not (tmp_path / "x").exists()


def test_hub_id_is_read_through_the_hub_cache(tmp_path: Path) -> None:
    """A Hub id outside the corpus goes through huggingface_hub, so a private cache serves it offline."""
    snapshot = tmp_path / "hub" / "models--someone--tiny-llama" / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("a" * 40)
    (snapshot / "config.json").write_text(CORPUS["Qwen/Qwen2.5-3B"].file.read_text())
    env = {"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    done = nnspec("tiny", "--from-config", "someone/tiny-llama", str(tmp_path / "out"), env=env)
    assert done.returncode == 0, done.stderr
    missing = nnspec("tiny", "--from-config", "someone/absent", str(tmp_path / "out2"), env=env)
    assert missing.returncode == 2 and "cannot read config.json of 'someone/absent'" in missing.stderr


def test_real_checkpoint_is_cached_and_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NNSPEC_CACHE", str(tmp_path))
    path = tiny.real_checkpoint("Qwen/Qwen2.5-3B")
    assert tiny.real_checkpoint("Qwen/Qwen2.5-3B") == path
    marker = json.loads((path / "nnspec-tiny.json").read_text())
    assert marker["source"] == "Qwen/Qwen2.5-3B" and "hidden_size" in marker["changed"]
    with pytest.raises(TinyCheckpointError, match="did you mean 'Qwen/Qwen2.5-3B'"):
        tiny.real_checkpoint("Qwen/Qwen2.5-3")
