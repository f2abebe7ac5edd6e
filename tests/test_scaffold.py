"""nnspec scaffold: drafts that pass are written with what passed, and bad targets fail clearly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nnspec.compiler.loader import load_spec_file
from nnspec.scaffold.discover import ScaffoldError
from nnspec.scaffold.draft import discover, scaffold, to_toml

from .conftest import checkpoint


def nnspec(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nnspec", *args], capture_output=True, text=True)


def test_unknown_model_type_and_unreadable_path(tmp_path: Path) -> None:
    result = nnspec("scaffold", "lama", "-o", str(tmp_path / "x.toml"))
    assert result.returncode == 2 and "'lama' is not a causal-LM model type" in result.stderr and "'llama'" in result.stderr
    result = nnspec("scaffold", str(tmp_path / "missing"), "-o", str(tmp_path / "x.toml"))
    assert result.returncode == 2 and "no such checkpoint directory" in result.stderr
    assert not (tmp_path / "x.toml").exists()


def test_model_without_a_block_list_is_refused() -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4, vocab_size=128)
    model = LlamaForCausalLM(config)
    model.model.layers = torch.nn.ModuleList(list(model.model.layers)[:2])  # two blocks for a 3-layer config
    with pytest.raises(ScaffoldError, match="no list of 3 blocks"):
        discover(model, "llama")


def test_scaffold_a_checkpoint_writes_a_spec_that_passes(tmp_path: Path) -> None:
    out = tmp_path / "gemma2_draft.toml"
    path, results, parent = scaffold(str(checkpoint("gemma2")), out, name="gemma2_draft")
    assert path == out and parent is not None
    assert results and all(r.passed for r in results), [r for r in results if not r.passed]
    text = out.read_text()
    assert text.startswith("# gemma2_draft: drafted by `nnspec scaffold")
    assert f"conformance at draft time: {len(results)}/{len(results)} checks pass" in text
    spec = load_spec_file(out).spec
    assert spec.attention.contribution == "post_attention_layernorm" and spec.logits.transforms[0].op == "softcap"


def test_scaffold_finds_residual_facts_by_testing_them(tmp_path: Path) -> None:
    """BLOOM's branches add the residual themselves; Falcon adds attention into the MLP output in
    place; OPT's MLP is inline and flattened: each is found, not assumed."""
    facts = {}
    for name in ("bloom", "falcon", "opt"):
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(checkpoint(name), attn_implementation="eager").eval()
        facts[name] = discover(model, name)
    assert facts["bloom"].attention["includes_residual"] == "residual" and facts["bloom"].residual == "sequential"
    assert facts["falcon"].mlp.get("clone") is True and facts["falcon"].residual == "parallel"
    assert facts["opt"].mlp == {"module": "", "input": "fc1", "contribution": "fc2", "flattened": True}
    assert "mlp_module" in facts["opt"].limits


def test_scaffold_reports_failures_in_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A draft whose checks fail says so in its header and in the exit status."""
    from nnspec.verification import conformance

    real = conformance.run_checks

    def failing(subject, names=None):
        results = real(subject, names)
        return [r if r.check != "logits" else conformance.CheckResult("logits", False, float("nan"), 0.0, "ConformanceError: boom") for r in results]

    monkeypatch.setattr(conformance, "run_checks", failing)
    out = tmp_path / "llama_draft.toml"
    _, results, _ = scaffold(str(checkpoint("llama")), out, name="llama_draft")
    text = out.read_text()
    assert "FAILS logits: ConformanceError: boom" in text and "Review the failing rows" in text
    assert not all(r.passed for r in results)


def test_toml_writer_round_trips() -> None:
    import tomllib

    body = {"name": "x", "model_types": ["x"], "attention": {"queries": {"ops": [{"name": "a"}], "io": "input", "index": 1}},
            "tiny": {"config": {"hidden_size": 64, "layer_types": ["a", "b"]}}, "variants": {"v": {"k": 1.5}, "old": ""}}
    assert tomllib.loads(to_toml(body, ["header"])) == body
