"""The benchmark harness (not its timings): worker protocol, answer comparison, targets and page.

Runs the project-side candidates on a tiny checkpoint; the peer's environment is not built here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))

import compare  # noqa: E402
import page  # noqa: E402
from workloads import BY_NAME, CHECKPOINTS, Checkpoint, collection_prompts, token_batch  # noqa: E402

TINY = Checkpoint("tiny-gpt2", "gpt2", "tiny GPT-2")


@pytest.fixture(scope="module")
def workers(gpt2_path: Path, tmp_path_factory: pytest.TempPathFactory):
    logs = tmp_path_factory.mktemp("logs")
    started = {name: compare.Worker(name, Path(sys.executable), logs / f"{name}.log") for name in ("transformers", "nnspec")}
    try:
        for worker in started.values():
            worker.ask("open", **compare.open_fields(TINY, gpt2_path))
        yield started
    finally:
        for worker in started.values():
            worker.stop()


def test_inputs_are_deterministic() -> None:
    assert torch.equal(token_batch(2, 5)["input_ids"], token_batch(2, 5)["input_ids"])
    prompts = collection_prompts()
    assert len(prompts) == 256 and len(set(prompts)) == 256


def test_workers_answer_alike_and_time(workers, gpt2_path: Path, tmp_path: Path) -> None:
    run = compare.run_workload(BY_NAME["trace_1x8"], TINY, gpt2_path, workers, {}, 3, tmp_path)
    for name in workers:
        cell = run["candidates"][name]
        assert cell["matches"] and cell["diff"] < 1e-5, cell
        assert len(cell["times"]) == BY_NAME["trace_1x8"].repeats(3) == 12 and cell["median"] > 0
    assert page.target(run)["value"] == pytest.approx(run["candidates"]["nnspec"]["median"] / run["candidates"]["transformers"]["median"])


def test_comparison_catches_a_wrong_answer(tmp_path: Path) -> None:
    right, wrong = tmp_path / "right.pt", tmp_path / "wrong.pt"
    torch.save(torch.ones(2, 3), right)
    torch.save(torch.ones(2, 3) + 1e-2, wrong)
    torch.save(torch.ones(3, 2), tmp_path / "shape.pt")
    verdicts = compare.max_abs_diff({"transformers": right, "nnspec": wrong, "other": tmp_path / "shape.pt"}, "transformers")
    assert verdicts["transformers"]["matches"]
    assert not verdicts["nnspec"]["matches"] and verdicts["nnspec"]["diff"] == pytest.approx(1e-2)
    assert verdicts["other"] == {"diff": None, "matches": False, "shape": [3, 2]}


def test_not_applicable_errors_and_memory(workers, gpt2_path: Path, tmp_path: Path) -> None:
    floor = workers["transformers"]
    assert "na" in floor.ask("prepare", workload="load", path=str(gpt2_path))
    with pytest.raises(compare.WorkerError, match="unknown request 'no-such-op'"):
        floor.ask("no-such-op")
    with pytest.raises(compare.WorkerError, match="time before a workload was prepared"):
        floor.ask("time")
    assert "torch" in floor.ask("versions")["versions"]  # still serving after an error
    memory = compare.fresh_memory(workers["nnspec"], BY_NAME["run_with_cache"], TINY, gpt2_path)
    assert memory["rss_peak"] >= memory["rss_before"] > 0


def test_unknown_names_are_refused_with_suggestions() -> None:
    with pytest.raises(SystemExit, match=r"--workloads: unknown name 'logit_len'; did you mean logit_lens"):
        compare._pick("trace_1x8,logit_len", BY_NAME, "--workloads")
    assert compare._pick("gpt2-small", {c.name: c for c in CHECKPOINTS}, "--checkpoints") == ["gpt2-small"]


def _run(workload: str, **medians: float) -> dict:
    return {"checkpoint": "gpt2-small", "arch": "gpt2", "workload": workload, "repeats": 3,
            "candidates": {name: {"median": value, "times": [value]} for name, value in medians.items()}}


def test_targets_and_page() -> None:
    runs = [
        _run("load", nnsight=0.04, nnspec=0.05, nnterp=0.7),
        _run("logit_lens", transformers=1.0, nnspec=1.3, nnterp=1.5),
        _run("patchscope", transformers=3.0, nnspec=0.5, nnterp=4.0),
    ]
    runs[1]["candidates"]["nnterp"].update(matches=False, diff=0.5)
    runs[2]["candidates"]["nnsight"] = {"error": "TypeError: boom"}
    runs[2]["candidates"]["transformers"]["memory"] = {"rss_before": 100 * 2**20, "rss_peak": 150 * 2**20}
    runs[2]["candidates"]["nnspec"]["memory"] = {"rss_before": 200 * 2**20, "rss_peak": 300 * 2**20}
    goals = [page.target(run) for run in runs]
    assert [g["ok"] for g in goals] == [True, False, True]
    assert goals[0]["value"] == pytest.approx(1.25) and goals[2]["value"] == pytest.approx(8.0)
    results = {"runs": runs, "machine": compare.machine(), "load_average": (0.1, 0.2, 0.3), "repeats": 3, "command": "x",
               "started": "2026-01-01", "minutes": 1, "checkpoints": {"gpt2-small": "desc"},
               "versions": {"nnspec": {"torch": "2"}}, "peer": {"status": "ok"}}
    text = page.render(results)
    assert "| gpt2-small | logit lens | nnspec at most 1.1x the floor | 1.30x | **missed** |" in text
    assert page.REASONS["logit_lens"] in text
    assert "1500 ms †" in text and "absolute position embeddings" in text
    assert "‡ gpt2-small, patchscope lens, nnsight: TypeError: boom" in text
    assert "| gpt2-small | patchscope lens | nnspec | 300 MiB | 100 MiB | 2.00x |" in text
    assert "MISSED" in page.targets_text(results)
