"""The ``nnspec`` command line: tiny checkpoints, on-demand checks, the matrix report, listings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import checkpoint


def nnspec(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nnspec", *args], capture_output=True, text=True)


def test_tiny_builds_a_loadable_checkpoint(tmp_path: Path) -> None:
    result = nnspec("tiny", "phi", str(tmp_path / "phi"))
    assert result.returncode == 0, result.stderr
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    assert AutoConfig.from_pretrained(tmp_path / "phi").model_type == "phi"
    AutoModelForCausalLM.from_pretrained(tmp_path / "phi")
    assert len(AutoTokenizer.from_pretrained(tmp_path / "phi")("Hello world").input_ids) > 0


def test_tiny_unknown_spec_and_variant(tmp_path: Path) -> None:
    result = nnspec("tiny", "lama", str(tmp_path / "x"))
    assert result.returncode == 2 and "did you mean 'llama'" in result.stderr
    result = nnspec("tiny", "llama", str(tmp_path / "x"), "--variant", "tied")
    assert result.returncode == 2 and "tied_embeddings" in result.stderr


def test_check_runs_every_check_on_a_local_model() -> None:
    result = nnspec("check", str(checkpoint("mistral")))
    assert result.returncode == 0, result.stdout + result.stderr
    from nnspec.verification.conformance import CHECKS

    assert result.stdout.count("pass ") == len(CHECKS)


@pytest.mark.long
def test_matrix_writes_markdown_and_json(tmp_path: Path) -> None:
    result = nnspec("matrix", "--specs", "bloom", "--jobs", "1", "--out", str(tmp_path), "--quiet")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 failed" in result.stdout
    report = json.loads((tmp_path / "matrix.json").read_text())
    names = [(r["spec"], r["variant"]) for r in report["rows"]]
    assert names == [("bloom", None), ("bloom", "post_layernorm_residual"), ("bloom", "hub:bigscience/bloom-560m")]
    assert all(c["passed"] for r in report["rows"] for c in r["results"])
    markdown = (tmp_path / "matrix.md").read_text()
    assert "| bloom / post_layernorm_residual |" in markdown and "transformers 5" in markdown
    assert "| bloom / bigscience/bloom-560m |" in markdown, "real-config rows are named by their Hub id"
    plain = nnspec("matrix", "--specs", "bloom", "--no-real", "--no-variants", "--jobs", "1", "--out", str(tmp_path), "--quiet")
    assert plain.returncode == 0 and [r["variant"] for r in json.loads((tmp_path / "matrix.json").read_text())["rows"]] == [None]


def test_list_shows_every_spec() -> None:
    result = nnspec("list")
    assert result.returncode == 0
    for name in ("gpt2", "gemma2", "mixtral", "falcon"):
        assert name in result.stdout
