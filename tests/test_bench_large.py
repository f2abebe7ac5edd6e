"""The large-model benchmark (benchmarks/large.py): its argument checks, its refusal without CUDA,
and the whole run on a toy checkpoint through the same code path, with the worker processes
replaced by in-process servers (the real run spawns one process per load)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import large  # noqa: E402
import large_worker  # noqa: E402


def refused(capsys: pytest.CaptureFixture[str], argv: list[str], monkeypatch: pytest.MonkeyPatch) -> str:
    """Run ``large.main(argv)``, which must exit with a usage error before any work; its message."""

    def no_work(args: Any) -> None:
        raise AssertionError("the run started despite a bad argument")

    monkeypatch.setattr(large, "run", no_work)
    with pytest.raises(SystemExit) as exit_info:
        large.main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--device", "gpu"], "--device 'gpu': expected one of cpu, cuda"),
        (["--device", "cud"], "did you mean cuda"),
        (["--config", "llama-3.2-1bb"], "--config 'llama-3.2-1bb': unknown checkpoint; known: llama-3.2-1b, tiny-llama (did you mean llama-3.2-1b"),
        (["--candidates", "nnspek"], "--candidates: unknown candidate 'nnspek'; known: transformers, nnsight, nnspec (did you mean nnspec?)"),
        (["--repeats", "0"], "--repeats 0: expected a whole number of at least 1"),
        (["--forwards", "-2"], "--forwards -2: expected a whole number of at least 1"),
        (["--batch", "0"], "--batch 0: expected"),
        (["--tokens", "0"], "--tokens 0: expected"),
        (["--config", "tiny-llama", "--tokens", "513"], "--tokens 513: tiny-llama has 512 positions"),
        (["--timeout", "0"], "--timeout 0.0: expected a positive number of seconds"),
        (["--repeats", "three"], "argument --repeats: invalid int value: 'three'"),
    ],
)
def test_bad_arguments_are_refused_naming_the_flag(capsys, monkeypatch, argv, expected):
    assert expected in refused(capsys, argv, monkeypatch)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is visible here")
def test_cuda_is_refused_without_a_gpu(capsys, monkeypatch, tmp_path):
    message = refused(capsys, ["--device", "cuda", "--json", str(tmp_path / "x.json")], monkeypatch)
    assert "--device cuda: no CUDA device is visible" in message and "drop --device" in message
    assert not (tmp_path / "x.json").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is visible here")
def test_the_gpu_make_target_command_refuses_from_the_shell(tmp_path):
    makefile = (ROOT / "Makefile").read_text()
    assert "benchmarks/large.py --device cuda --timeout" in makefile
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "large.py"), "--device", "cuda", "--json", str(tmp_path / "x.json")],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2
    assert "--device cuda: no CUDA device is visible" in done.stderr
    assert not (tmp_path / "x.json").exists()


def test_defaults_follow_the_device_and_the_floor_is_always_run():
    p = large.parser()
    args = large.check_args(p.parse_args([]), p)
    assert (args.batch, args.tokens, args.forwards, args.repeats) == (2, 32, 3, 3)
    assert args.json.name == "large-cpu.json" and args.config == "llama-3.2-1b"
    args = large.check_args(p.parse_args(["--candidates", "nnspec", "--batch", "3"]), p)
    assert args.candidates == ["transformers", "nnspec"] and args.batch == 3


def test_the_large_preset_has_the_published_shape():
    config = large.config_for("llama-3.2-1b")
    shape = (config.num_hidden_layers, config.hidden_size, config.intermediate_size, config.num_attention_heads,
             config.num_key_value_heads, config.vocab_size, config.tie_word_embeddings)
    assert shape == (16, 2048, 8192, 32, 8, 128256, True)


def test_timeout_stops_the_run(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(large, "run", lambda args: time.sleep(30))
    started = time.perf_counter()
    assert large.main(["--config", "tiny-llama", "--timeout", "0.3", "--json", str(tmp_path / "x.json")]) == 124
    assert time.perf_counter() - started < 5
    assert "--timeout 0.3" in capsys.readouterr().err and not (tmp_path / "x.json").exists()


# -- the whole run on a toy checkpoint ----------------------------------------------------------


class InProcess:
    """Stands in for ``compare.Worker``: the same requests, served by a ``large_worker.Server`` in
    this process (its constructor's process-wide settings skipped)."""

    corrupt: set[str] = set()

    def __init__(self, name: str, python: Path, log: Path, script: Path) -> None:
        assert script.name == "large_worker.py"
        self.server = large_worker.Server.__new__(large_worker.Server)
        self.server.candidate = large_worker.CANDIDATES[name]()
        self.server.device = "cpu"
        self.name = name
        self.process = self

    def ask(self, op: str, **fields: Any) -> dict[str, Any]:
        answer = self.server.handle({"op": op, **fields})
        if op == "answer" and self.name in self.corrupt:  # a candidate whose answer is wrong
            stacked = torch.load(fields["file"])
            stacked[-1, 0, 0, 0] += 1
            torch.save(stacked, fields["file"])
        return answer

    def kill(self) -> None:
        self.server.candidate = None

    def wait(self) -> None:
        pass


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    cache = tmp_path_factory.mktemp("large-cache")
    return cache, large.build("tiny-llama", cache)


def test_the_checkpoint_is_bfloat16_safetensors_with_a_tokenizer(toy):
    from safetensors import safe_open
    from transformers import AutoTokenizer

    cache, folder = toy
    assert large.build("tiny-llama", cache) == folder  # built once, then found
    with safe_open(str(folder / "model.safetensors"), "pt") as handle:
        dtypes = {handle.get_slice(k).get_dtype() for k in handle.keys()}
    assert dtypes == {"BF16"}
    assert AutoTokenizer.from_pretrained(str(folder))("hello world")["input_ids"]


def test_every_candidate_reads_the_hidden_states_plain_transformers_computes(toy):
    from transformers import AutoModelForCausalLM

    _, folder = toy
    inputs = large_worker.token_batch(2, 7)
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.bfloat16)
    with torch.no_grad():
        hidden = model(**inputs, output_hidden_states=True).hidden_states
    for name, cls in large_worker.CANDIDATES.items():
        candidate = cls()
        candidate.warm(str(folder))
        candidate.build(str(folder), "model.layers")
        candidate.inputs = inputs
        states = candidate.read()
        assert len(states) == 2 and states[0].dtype == torch.bfloat16, name
        assert torch.equal(states[0], hidden[1]), name
        # The last hidden state transformers returns has the final norm applied.
        assert torch.equal(model.model.norm(states[1]), hidden[2]), name


def test_the_whole_run_checks_answers_and_writes_json_and_page(toy, monkeypatch, tmp_path, capsys):
    import compare

    cache, _ = toy
    monkeypatch.setattr(compare, "Worker", InProcess)
    out = tmp_path / "large-cpu.json"
    page = tmp_path / "benchmarks.md"
    argv = ["--config", "tiny-llama", "--repeats", "2", "--forwards", "1", "--tokens", "5", "--cache", str(cache),
            "--json", str(out), "--page", str(page)]
    assert large.main(argv) == 0
    results = json.loads(out.read_text())
    cells = results["candidates"]
    assert list(cells) == ["transformers", "nnsight", "nnspec"]
    # By hand: embeddings 512 x 64 (tied); per layer q, o 64 x 64, k, v 64 x 32, MLP 3 x 64 x 128,
    # two norms of 64; the final norm.
    assert results["checkpoint"]["parameters"] == 512 * 64 + 2 * (2 * 64 * 64 + 2 * 64 * 32 + 3 * 64 * 128 + 2 * 64) + 64
    assert results["checkpoint"]["bytes"] == (cache / "tiny-llama-bf16" / "model.safetensors").stat().st_size
    for name, cell in cells.items():
        assert cell["equal"] is True and cell["max_diff"] == 0.0 and cell["shape"] == [2, 2, 5, 64], name
        assert len(cell["load"]) == 2 and len(cell["forward"]) == 2, name
        assert cell["load_rss_median"] > 0 and cell["forward_rss_peak_median"] >= cell["forward_rss_before_median"]
    assert results["ratios"]["forward_nnspec_over_transformers"] == pytest.approx(
        cells["nnspec"]["forward_median"] / cells["transformers"]["forward_median"])
    text = page.read_text()
    assert "## Large model" in text and "### On the CPU" in text and "equal to the floor's" in text
    assert "forward, nnspec / floor" in capsys.readouterr().out

    # A candidate whose answer differs is reported and its forwards are not timed.
    monkeypatch.setattr(InProcess, "corrupt", {"nnspec"})
    assert large.main([*argv, "--repeats", "1", "--no-page"]) == 1
    cell = json.loads(out.read_text())["candidates"]["nnspec"]
    assert cell["equal"] is False and cell["max_diff"] > 0 and cell["forward"] == []
