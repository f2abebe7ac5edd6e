"""``--dtype`` / ``--device`` on the commands that load models (``check``, ``matrix``): bad values are
one-line usage errors naming the flag, raised before anything loads; good ones reach both loads of
the conformance subject (nnspec and plain transformers), and the tolerances follow the dtype."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from nnspec.cli import main
from nnspec.errors import ConformanceError, InputError
from nnspec.verification import conformance, matrix

from .conftest import checkpoint, one_line


@pytest.fixture
def nothing_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading a subject or starting the matrix fails the test: the flags must be checked first."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was loaded before the arguments were checked")

    monkeypatch.setattr(conformance, "load_subject", refuse)
    monkeypatch.setattr(matrix, "run_matrix", refuse)


BAD = [
    (["--dtype", "float13"], "--dtype float13: not a dtype nnspec loads weights in", "choose auto, float32, float16 or bfloat16"),
    (["--device", "tpu"], "--device tpu: not a device name", "use cpu, cuda, cuda:N, mps or auto"),
    (["--device", "meta"], "--device meta: the meta device holds no weights", "use cpu, cuda, cuda:N, mps or auto"),
]
if not torch.cuda.is_available():
    BAD.append((["--device", "cuda"], "--device cuda: no cuda device is visible", "use --device cpu"))


@pytest.mark.parametrize("command", ["check", "matrix"])
@pytest.mark.parametrize(("arguments", "flag", "choices"), BAD, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_bad_values_are_refused_before_loading(
    command: str, arguments: list[str], flag: str, choices: str, nothing_loads: None, capsys: pytest.CaptureFixture
) -> None:
    words = [command, str(checkpoint("llama"))] if command == "check" else [command, "--specs", "llama"]
    assert main([*words, *arguments]) == 2
    line = one_line(capsys, command)
    assert flag in line and choices in line


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[conformance.Subject]:
    """Every subject ``nnspec check`` loads, kept for inspection."""
    seen: list[conformance.Subject] = []
    real = conformance.load_subject

    def spy(*args: Any, **kwargs: Any) -> conformance.Subject:
        seen.append(real(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(conformance, "load_subject", spy)
    return seen


@pytest.mark.parametrize(("flag", "dtype"), [(None, torch.float32), ("bfloat16", torch.bfloat16)])
def test_check_passes_in_float32_and_bfloat16(
    flag: str | None, dtype: torch.dtype, loads: list[conformance.Subject], capsys: pytest.CaptureFixture
) -> None:
    extra = ["--dtype", flag, "--device", "cpu"] if flag else []
    code = main(["check", str(checkpoint("llama")), *extra])
    out = capsys.readouterr().out
    assert code == 0, out
    rows = [line for line in out.splitlines() if line.startswith(("pass", "FAIL"))]
    assert len(rows) == len(conformance.CHECKS) and all(r.startswith("pass") for r in rows), out
    (subject,) = loads
    # Both loads in the dtype asked for, on the CPU: the weights themselves, not the flag, say so.
    for model in (subject.hf, subject.model._module):
        assert {p.dtype for p in model.parameters()} == {dtype}
        assert {p.device.type for p in model.parameters()} == {"cpu"}
    assert subject.reference.logits.dtype == dtype


def test_tolerances_follow_the_dtype() -> None:
    subject = conformance.load_subject("llama-bf16", checkpoint("llama"), dtype=torch.bfloat16)
    assert subject.dtype == torch.bfloat16
    rounded = ["contribution", "attention_probabilities"]
    # bfloat16 rounding is over float32's tolerance: compared as float32, the bfloat16 subject fails.
    for name in rounded:
        with conformance.comparing_in(torch.float32), pytest.raises(ConformanceError, match="atol=1e-05, rtol=0.0001"):
            conformance.CHECKS[name](subject)
    # run_checks compares in the subject's dtype: it passes, and the tolerance still refuses a real
    # disagreement (10% off).
    assert all(r.passed for r in conformance.run_checks(subject, rounded))
    value = subject.reference.logits
    with conformance.comparing_in(torch.bfloat16), pytest.raises(ConformanceError, match="atol=0.02, rtol=0.05"):
        conformance.assert_close("probe", "logits", value * 1.1, value)
    assert conformance.tolerance() == conformance.TOLERANCE  # float32 again after the block


def test_a_dtype_without_tolerances_is_refused_before_loading() -> None:
    with pytest.raises(InputError, match=r"dtype=torch.float64: the conformance checks load models in 'auto'"):
        conformance.load_subject("x", "/no/such/folder", dtype=torch.float64)


def test_matrix_loads_every_subject_as_asked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    asked: list[dict[str, Any]] = []

    def record(name: str, path: Any, **kwargs: Any) -> conformance.Subject:
        asked.append(kwargs)
        raise RuntimeError("recorded")

    monkeypatch.setattr(conformance, "load_subject", record)
    words = ["matrix", "--specs", "llama", "--no-variants", "--no-real", "--jobs", "1", "--quiet", "--out", str(tmp_path)]
    assert main([*words, "--dtype", "bf16", "--device", "cpu"]) == 1  # every row failed: the load was stopped
    assert asked == [{"dtype": torch.bfloat16, "device_map": "cpu"}]
    assert "RuntimeError: recorded" in capsys.readouterr().out
    asked.clear()
    assert main(words) == 1
    assert asked == [{}]  # nothing given: load_subject's defaults (float32 on the CPU)


@pytest.mark.parametrize("flag, value", [("--dtype", "float13"), ("--device", "tpu")])
def test_collect_refuses_bad_placement_before_reading_prompts(
    flag: str, value: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from nnspec import activation_store

    def never(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the prompts were read before the options were checked")

    monkeypatch.setattr(activation_store, "load_dataset_prompts", never)
    out = tmp_path / "store"
    assert main(["collect", "gpt2", "--dataset", "some/dataset", "--out", str(out), flag, value]) == 2
    assert flag in one_line(capsys, "collect")
    assert not out.exists()
