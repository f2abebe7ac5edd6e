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
    memory = compare.memory_samples(workers["nnspec"], BY_NAME["run_with_cache"], TINY, gpt2_path, 2)
    assert len(memory["samples"]) == 2
    for sample in memory["samples"]:
        assert sample["rss_peak"] >= sample["rss_before"] > 0 and sample["later_peak"] >= sample["later_before"] > 0
    rises = sorted((s["rss_peak"] - s["rss_before"]) / 2**20 for s in memory["samples"])
    assert memory["rise"] == pytest.approx(sum(rises) / 2)
    with pytest.raises(ValueError, match="memory samples: expected at least 1, got 0"):
        compare.memory_samples(workers["nnspec"], BY_NAME["run_with_cache"], TINY, gpt2_path, 0)


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
    runs.append(_run("run_with_cache", transformers=1.0, nnspec=1.0))
    mib = 2**20

    def sampled(firsts: list[int], laters: list[int]) -> dict:
        samples = [{"rss_before": 500 * mib, "rss_peak": (500 + f) * mib, "later_before": 600 * mib,
                    "later_peak": (600 + later) * mib} for f, later in zip(firsts, laters)]
        return {"samples": samples, "rise": sorted(firsts)[len(firsts) // 2],
                "later_rise": sorted(laters)[len(laters) // 2], "rss_peak": (500 + sorted(firsts)[len(firsts) // 2]) * mib}

    runs[3]["candidates"]["transformers"]["memory"] = sampled([20, 18, 40], [10, 10, 10])
    runs[3]["candidates"]["nnspec"]["memory"] = sampled([30, 26, 22], [12, 11, 13])
    goals = [page.target(run) for run in runs]
    assert [g["ok"] for g in goals[:3]] == [True, False, True]
    memory_goal = page.memory_target(runs[3])
    assert memory_goal is not None and memory_goal["value"] == pytest.approx(26 / 20) and memory_goal["ok"] is False
    assert page.memory_target(runs[0]) is None  # load has no memory target
    assert goals[0]["value"] == pytest.approx(1.25) and goals[2]["value"] == pytest.approx(8.0)
    results = {"runs": runs, "machine": compare.machine(), "load_average": (0.1, 0.2, 0.3), "repeats": 3, "command": "x",
               "started": "2026-01-01", "minutes": 1, "checkpoints": {"gpt2-small": "desc"},
               "versions": {"nnspec": {"torch": "2"}}, "peer": {"status": "ok"}}
    text = page.render(results)
    assert "| gpt2-small | logit lens | nnspec at most 1.1x the floor | 1.30x | **missed** |" in text
    assert page.REASONS["logit_lens"] in text
    assert "1500 ms †" in text and "absolute position embeddings" in text
    assert "‡ gpt2-small, patchscope lens, nnsight: TypeError: boom" in text
    assert "| gpt2-small | patchscope lens | nnspec | 300 MiB | 100 MiB | 2.00x | - | - |" in text
    assert "| gpt2-small | run_with_cache | nnspec | 526 MiB | 26 MiB (22-30, 3 processes) | 1.30x | 12 MiB | 1.20x |" in text
    assert "| gpt2-small | run_with_cache | nnspec's memory at most 1.2x the floor's | 1.30x | **missed** |" in text
    assert "MISSED" in page.targets_text(results)


def test_memory_only_merge_keeps_times_and_answers() -> None:
    old = {"runs": [_run("run_with_cache", transformers=1.0, nnspec=1.1)], "checkpoints": {"gpt2-small": "d"},
           "versions": {}, "command": "old"}
    old["runs"][0]["candidates"]["nnspec"].update(matches=True, memory={"rss_before": 1, "rss_peak": 2})
    fresh = {"samples": [], "rise": 3.0, "later_rise": 2.0, "rss_peak": 9}
    new = {"runs": [{"checkpoint": "gpt2-small", "arch": "gpt2", "workload": "run_with_cache",
                     "candidates": {"nnspec": {"memory": fresh}, "transformers": {"memory_error": "boom"}}}],
           "checkpoints": {"gpt2-small": "d"}, "versions": {}, "command": "new", "started": "s", "minutes": 1,
           "repeats": 3, "load_average": (0, 0, 0), "memory_only": True, "memory_samples": 5}
    merged = compare.merge(old, new)
    cells = merged["runs"][0]["candidates"]
    assert cells["nnspec"] == {"median": 1.1, "times": [1.1], "matches": True, "memory": fresh}
    assert cells["transformers"] == {"median": 1.0, "times": [1.0], "memory_error": "boom"}
    assert merged["merged"][-1]["rows"] == ["gpt2-small run_with_cache (memory)"]
    assert "memory only, 5 fresh processes per candidate" in page._merged_line(merged["merged"][-1])
    new["runs"][0]["workload"] = "collect"
    with pytest.raises(ValueError, match="memory-only rows have no row to update: gpt2-small collect"):
        compare.merge(old, new)


@pytest.mark.parametrize("argv, message", [
    (["--memory-only"], "add --merge"),
    (["--memory-only", "--merge", "--workloads", "collect,trace_1x8"], "trace_1x8 measure no memory"),
    (["--memory-samples", "0"], "--memory-samples: expected at least 1, got 0"),
])
def test_memory_options_refused_before_work(argv: list, message: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        compare.main(argv)
    assert message in capsys.readouterr().err


def test_memory_only_skips_a_candidate_without_a_counterpart(tmp_path: Path) -> None:
    class NoCounterpart:
        name = "nnsight"

        def ask(self, op: str, **fields):
            if op == "prepare":
                return {"na": "no counterpart"}
            raise AssertionError(f"{op} asked of a candidate without the workload")

    run = compare.run_workload(BY_NAME["collect"], TINY, tmp_path, {"nnsight": NoCounterpart()}, {}, 1, tmp_path,
                               memory_count=1, memory_only=True)
    assert run["candidates"]["nnsight"] == {}
