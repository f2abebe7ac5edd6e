"""nnspec scaffold: per-layer config lists follow the tiny layer count, and a draft extends the
bundled spec that serves its model type (or, when it takes that spec's own name, that spec's parent,
saying so in its header)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoConfig

from nnspec.compiler.loader import BUNDLED_DIR
from nnspec.scaffold.tinyconfig import tiny_overrides

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib


def nnspec(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nnspec", *args], capture_output=True, text=True)


def test_per_layer_lists_follow_the_tiny_layer_count() -> None:
    overrides = tiny_overrides("gpt_neo")
    config = AutoConfig.for_model("gpt_neo", **overrides)  # transformers validates the lengths itself
    assert config.num_layers == 3 and config.attention_layers == ["global", "local", "global"]
    # A class that derives a per-layer list from the new layer count keeps deriving it.
    assert "mlp_layer_types" not in tiny_overrides("deepseek_v32")


def test_gpt_neo_drafts_a_spec_that_extends_the_bundled_one_and_passes(tmp_path: Path) -> None:
    result = nnspec("scaffold", "gpt_neo", "--name", "neo_draft", "-o", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "FAIL" not in result.stdout
    text = (tmp_path / "neo_draft.toml").read_text()
    body = tomllib.loads(text)
    assert body["extends"] == "gpt_neo" and "the bundled spec serving gpt_neo" in text
    assert len(body["tiny"]["config"]["attention_layers"]) == body["tiny"]["config"]["num_layers"]


@pytest.mark.long
def test_a_served_type_extends_the_spec_serving_it(tmp_path: Path) -> None:
    served = tomllib.loads((BUNDLED_DIR / "qwen2.toml").read_text())
    assert "qwen2" in served["model_types"]  # ground truth: the bundled file says it serves qwen2
    result = nnspec("scaffold", "qwen2", "--no-check", "-o", str(tmp_path / "my_qwen2.toml"))
    assert result.returncode == 0, result.stderr
    body = tomllib.loads((tmp_path / "my_qwen2.toml").read_text())
    assert body["name"] == "my_qwen2" and body["extends"] == "qwen2"
    # Under the model type's own name the draft cannot extend the bundled qwen2 (a spec cannot extend
    # itself): it extends qwen2's own parent, and its header says how to extend qwen2 instead.
    result = nnspec("scaffold", "qwen2", "--no-check", "-o", str(tmp_path))
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "qwen2.toml").read_text()
    assert tomllib.loads(text)["extends"] == served["extends"]
    assert "served by the bundled spec 'qwen2'" in text and "--name NEW_NAME" in text


def test_an_unbuildable_default_config_is_one_line_naming_the_keys(tmp_path: Path) -> None:
    result = nnspec("scaffold", "mamba2", "--name", "m2", "-o", str(tmp_path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and "cannot build a tiny mamba2 model" in line and "num_heads" in line
    assert not (tmp_path / "m2.toml").exists()
