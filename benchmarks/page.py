"""The results page (``docs/benchmarks.md``) and console summaries, from a run's JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import large_page
from candidates import CANDIDATES
from workloads import BY_NAME

FLOOR, BARE, OURS, PEER = "transformers", "nnsight", "nnspec", "nnterp"

#: Why a target can be missed, shown next to a missed target. Each names the cost that the
#: measured ratio contains and the floor does not.
REASONS = {
    "trace_1x8": "A trace has a fixed cost of a few milliseconds (NNsight compiles the traced block and "
    "runs the model in a worker thread that meets the block at each module); on an 8-token forward "
    "that is a large share, and bare NNsight pays the same (see its column).",
    "trace_8x128": "NNsight's per-trace and per-module costs, shared with bare NNsight (see its column).",
    "logit_lens": "NNsight's per-trace cost, shared with bare NNsight.",
    "collect": "NNsight's per-trace cost, paid once per batch of 32 prompts.",
    "run_with_cache": "NNsight's per-trace cost, shared with bare NNsight.",
    "load": "The spec lookup, the adapter and the structural checks run at every load.",
}

#: Why a memory target can be missed.
MEMORY_REASON = ("What the traced run holds beyond the floor's hooks: NNsight's compiled block and saved values, "
                 "and the one-time cost of a first trace (see the later-run column of the memory table).")

#: Why answers from an environment differ from the floor's on an architecture, where the cause is known.
KNOWN_CAUSES = {
    ("peer", "gpt2"): "GPT-2 adds absolute position embeddings; in a left-padded batch each prompt needs "
    "position ids counted from its first real token, which NNsight 0.8 derives from the attention mask and "
    "NNsight 0.7 (the peer's environment) does not, so padded prompts are read at shifted positions",
}


def median(run: dict[str, Any], name: str) -> Optional[float]:
    return run["candidates"].get(name, {}).get("median")


def ratio(run: dict[str, Any], top: str, bottom: str) -> Optional[float]:
    a, b = median(run, top), median(run, bottom)
    return a / b if a is not None and b else None


def target(run: dict[str, Any]) -> Optional[dict[str, Any]]:
    """The workload's target on this run: what is compared, the bound, the measured value, met or not."""
    workload = BY_NAME[run["workload"]]
    if workload.target is None:
        return None
    kind, bound = workload.target
    if kind == "faster":
        value, text, ok = ratio(run, PEER, OURS), f"nnspec at least {bound:g}x faster than nnterp", None
        if value is not None:
            ok = value >= bound
    else:
        base = FLOOR if kind == "floor" else BARE
        value = ratio(run, OURS, base)
        text = f"nnspec at most {bound:g}x {'the floor' if kind == 'floor' else 'bare NNsight'}"
        ok = None if value is None else value <= bound
    return {"text": text, "value": value, "ok": ok}


def memory_rise(memory: dict[str, Any]) -> tuple[float, Optional[float], Optional[tuple[float, float, int]]]:
    """MiB above the loaded model: the first run's median, a later run's median and the first
    run's lowest, highest and process count (results of older runs hold one process, no later run)."""
    samples = memory.get("samples")
    if not samples:
        return (memory["rss_peak"] - memory["rss_before"]) / 2**20, None, None
    firsts = [(s["rss_peak"] - s["rss_before"]) / 2**20 for s in samples]
    return memory["rise"], memory["later_rise"], (min(firsts), max(firsts), len(firsts))


def memory_target(run: dict[str, Any]) -> Optional[dict[str, Any]]:
    """The workload's memory target on this run (nnspec's first-run rise over the floor's), or None."""
    bound = BY_NAME[run["workload"]].memory_target
    if bound is None:
        return None
    ours, floor = (run["candidates"].get(name, {}).get("memory") for name in (OURS, FLOOR))
    value = None
    if ours and floor and memory_rise(floor)[0] > 0:
        value = memory_rise(ours)[0] / memory_rise(floor)[0]
    return {"text": f"nnspec's memory at most {bound:g}x the floor's", "value": value,
            "ok": None if value is None else value <= bound, "memory": True}


def goals(run: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target of this run: time, then memory."""
    return [goal for goal in (target(run), memory_target(run)) if goal is not None]


def _x(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _ms(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.0f} ms" if seconds >= 0.1 else f"{seconds * 1000:.1f} ms"


def _cell(run: dict[str, Any], name: str) -> str:
    cell = run["candidates"].get(name)
    if cell is None:
        return "not run"
    if "median" in cell:
        return _ms(cell["median"]) + ("" if cell.get("matches", True) else " †")
    if "na" in cell:
        return "n/a"
    if "error" in cell:
        return "error ‡"
    return "-"


def summary_line(run: dict[str, Any]) -> str:
    """One console line: medians and the target verdict."""
    parts = [f"{name} {_cell(run, name)}" for name in run["candidates"]]
    verdicts = "".join(f" | {goal['text']}: {_x(goal['value'])} {'met' if goal['ok'] else 'MISSED'}"
                       for goal in goals(run) if goal["ok"] is not None)
    return f"  {' | '.join(parts)}{verdicts}"


def targets_text(results: dict[str, Any]) -> str:
    lines = ["targets:"]
    for run in results["runs"]:
        for goal in goals(run):
            verdict = "not measured" if goal["ok"] is None else "met" if goal["ok"] else "MISSED"
            lines.append(f"  {run['checkpoint']:14s} {run['workload']:15s} {goal['text']}: {_x(goal['value'])} {verdict}")
    return "\n".join(lines)


def _versions(results: dict[str, Any]) -> list[str]:
    lines = ["| candidate | environment | versions |", "|---|---|---|"]
    for name, versions in results["versions"].items():
        env = CANDIDATES[name][1]
        lines.append(f"| {name} | {env} | {', '.join(f'{k} {v}' for k, v in versions.items())} |")
    return lines


def _notes(results: dict[str, Any]) -> list[str]:
    """Every answer that differs from the floor's, every n/a and every error, one line each."""
    lines = []
    for run in results["runs"]:
        for name, cell in run["candidates"].items():
            where = f"{run['checkpoint']}, {BY_NAME[run['workload']].title}, {name}"
            if "memory_error" in cell:
                lines.append(f"- ‡ {where}, memory: {cell['memory_error']}")
            if "error" in cell:
                lines.append(f"- ‡ {where}: {cell['error']}")
            elif "na" in cell and name in (OURS, PEER):
                lines.append(f"- {where}: n/a ({cell['na']})")
            elif cell.get("matches") is False:
                diff = "shape " + str(cell["shape"]) if cell.get("diff") is None else f"max |diff| {cell['diff']:.3g}"
                cause = KNOWN_CAUSES.get((CANDIDATES[name][1], run.get("arch")), "")
                lines.append(f"- † {where}: answer differs from the floor's ({diff}){'. ' + cause if cause else ''}")
    return lines


def _merged_line(m: dict[str, Any]) -> str:
    what = (f"memory only, {m['memory_samples']} fresh processes per candidate" if m.get("memory_only")
            else f"{m['repeats']} timed runs per candidate and workload")
    return (f"Rows rerun later and merged in (`--merge`): {', '.join(m['rows'])}, by `{m['command']}`, started "
            f"{m['started']}, {m['minutes']} minutes, {what}.")


def _memory(results: dict[str, Any]) -> list[str]:
    lines = ["| checkpoint | workload | candidate | peak RSS | above the loaded model, first run (range) | x floor "
             "| a later run | x floor |", "|---|---|---|---|---|---|---|---|"]
    for run in results["runs"]:
        floor = run["candidates"].get(FLOOR, {}).get("memory")
        base = memory_rise(floor) if floor else (None, None, None)
        for name, cell in run["candidates"].items():
            memory = cell.get("memory")
            if not memory:
                continue
            first, later, spread = memory_rise(memory)
            shown = f"{first:.0f} MiB" + (f" ({spread[0]:.0f}-{spread[1]:.0f}, {spread[2]} processes)" if spread else "")
            rel = _x(first / base[0]) if base[0] and base[0] > 0 else "-"
            later_text = "-" if later is None else f"{later:.0f} MiB"
            later_rel = _x(later / base[1]) if later is not None and base[1] and base[1] > 0 else "-"
            lines.append(f"| {run['checkpoint']} | {BY_NAME[run['workload']].title} | {name} | "
                         f"{memory['rss_peak'] / 2**20:.0f} MiB | {shown} | {rel} | {later_text} | {later_rel} |")
    return lines


def render(results: dict[str, Any], large_dir: Optional[Path] = None) -> str:
    """The whole Markdown page; the large-model section comes from the ``large-<device>.json`` files
    in ``large_dir`` (default: ``benchmarks/results``)."""
    large_dir = large_dir or Path(__file__).resolve().parent / "results"
    names = [n for n in CANDIDATES if any(n in run["candidates"] for run in results["runs"])]
    m = results["machine"]
    out = [
        "# Benchmarks",
        "",
        "<!-- Generated by benchmarks/compare.py from benchmarks/results/latest.json; do not edit by hand. -->",
        "",
        "nnspec next to plain transformers (the floor), bare NNsight and nnterp, measured in one run on one machine: "
        "every workload is timed for every candidate in turn, so the ratios compare like with like. "
        "Absolute times are this machine's; read the ratios.",
        "",
        "## How to rerun",
        "",
        "```sh",
        f"make bench                                   # everything on this page ({results['minutes']:.0f} minutes here)",
        "python benchmarks/compare.py --repeats 3 --checkpoints gpt2-small --workloads load,logit_lens",
        "python benchmarks/compare.py --no-peer       # without nnterp's environment",
        "python benchmarks/compare.py --render        # rewrite this page from the JSON",
        *large_page.rerun_lines(large_dir),
        "python benchmarks/streaming.py              # streaming collection: memory, throughput, kill and resume",
        "```",
        "",
        "The first run builds the checkpoints under `$NNSPEC_CACHE/bench` and nnterp's environment under "
        "`.bench/peer` (pinned in `benchmarks/peer-requirements.txt`). The run that produced this page: "
        f"`{results['command']}`, started {results['started']}, {results['minutes']} minutes, "
        f"{results['repeats']} timed runs per candidate and workload, scaled by cost (load 3x, the 1 x 8 trace 4x, "
        "logit lens and run_with_cache 2x, collect and validate half, at least 3; every time is in the JSON).",
        *[_merged_line(m) for m in results.get("merged", [])],
        "",
        "## Targets",
        "",
        "| checkpoint | workload | target | measured | verdict | why, where missed |",
        "|---|---|---|---|---|---|",
    ]
    for run, goal in [(r, g) for r in results["runs"] for g in goals(r)]:
        verdict = "not measured" if goal["ok"] is None else "met" if goal["ok"] else "**missed**"
        why = (MEMORY_REASON if goal.get("memory") else REASONS.get(run["workload"], "")) if goal["ok"] is False else ""
        out.append(f"| {run['checkpoint']} | {BY_NAME[run['workload']].title} | {goal['text']} | {_x(goal['value'])} | {verdict} | {why} |")
    for checkpoint, description in results["checkpoints"].items():
        runs = [r for r in results["runs"] if r["checkpoint"] == checkpoint]
        out += ["", f"## {checkpoint}", "", description + ". Median time per run:", ""]
        out.append("| workload | " + " | ".join(names) + " | nnspec / floor | nnterp / floor | nnterp / nnspec |")
        out.append("|---" * (len(names) + 4) + "|")
        for run in runs:
            base = BARE if run["workload"] == "load" else FLOOR
            cells = [_cell(run, n) for n in names]
            out.append(f"| {BY_NAME[run['workload']].title} | " + " | ".join(cells)
                       + f" | {_x(ratio(run, OURS, base))} | {_x(ratio(run, PEER, base))} | {_x(ratio(run, PEER, OURS))} |")
        out += ["", "For load the \"floor\" columns are against bare NNsight (this project's version)."]
    out += ["", *large_page.section(large_dir)]
    out += ["", "## Memory", "",
            "Peak resident memory during a run of the workload, in a new process that has loaded the checkpoint "
            "and run one short forward (so the weights are resident), and how far it rose above what that "
            "process held before. The workload then runs a second time in the same process (\"a later run\": "
            "without the one-time costs of a first trace). Each figure is the median over several such processes "
            "per candidate (the range: the first run's lowest and highest), since a rise of a few MiB varies that "
            "much between identical processes; every sample is in the JSON.", ""]
    out += _memory(results)
    out += _streaming(large_dir / "streaming.json")
    notes = _notes(results)
    out += ["", "## Answers, n/a and errors", "",
            "Before timing, every candidate's answer is compared with the floor's (the project's float32 "
            "tolerances). † marks an answer that differs, ‡ an error; n/a means the library has no counterpart.", ""]
    out += notes or ["Every answer matched the floor's."]
    out += ["", "## Workloads", "", "| workload | what runs | baseline |", "|---|---|---|"]
    for workload in BY_NAME.values():
        out.append(f"| {workload.title} | {workload.description} | {'bare NNsight' if workload.baseline == BARE else 'plain transformers'} |")
    out += [
        "",
        "The floor is plain transformers with torch forward hooks: mask-derived position ids for left-padded "
        "batches, and the base model without the unembedding where no logits are needed. Bare NNsight is "
        "native module paths without a wrapper. nnterp runs through its public functions (`logit_lens`, "
        "`patchscope_lens`, `collect_token_activations_batched`); it has no `run_with_cache`, so its row uses "
        "NNsight's `tracer.cache` on the layer modules, and its validate row is the renaming check its load runs "
        "(layer-0 shapes), while nnspec's is the full conformance check against plain transformers (every "
        "check of `nnspec check`: values, contributions, edits, steering, skipping, attention internals and "
        "padding, each against its own plain-transformers run), so the two validate rows measure different "
        "guarantees and have no target. TransformerLens is not a candidate: it runs its own implementation "
        "of each architecture with converted weights, not the transformers module tree the others share, so "
        "its times would compare different model code.",
        "",
        "## Machine and versions",
        "",
        f"{m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['os']}, Python {m['python']}, "
        f"one torch thread per process; load average at the end of the run: "
        f"{', '.join(f'{x:.2f}' for x in results['load_average'])}.",
        "",
    ]
    out += _versions(results)
    out += ["", f"Peer environment: {results['peer']['status']}.", ""]
    return "\n".join(out)


def _streaming(path: Path) -> list[str]:
    """The streaming-collection section, from ``benchmarks/streaming.py``'s JSON (absent: nothing)."""
    if not path.is_file():
        return []
    r = json.loads(path.read_text(encoding="utf-8"))
    mib = 1 << 20

    def row(name: str, run: dict[str, Any]) -> str:
        marks = run["rss"]
        return (f"| {name} | {run['seconds']:.1f} s | {r['prompts'] / run['seconds']:.0f} | {marks['10%'] / mib:.0f} MiB | "
                f"{marks['50%'] / mib:.0f} MiB | {marks['100%'] / mib:.0f} MiB | {(marks['100%'] - marks['10%']) / mib:+.0f} MiB |")

    return [
        "", "## Streaming collection", "",
        f"`python benchmarks/streaming.py`, started {r['started']} (load average {r['load_average']:.1f}): "
        f"{r['prompts']} prompts on the tiny `{r['spec']}` checkpoint, positions {r['positions']}, batches of "
        f"{r['batch_size']}, shards of {r['shard_size']} rows. Resident memory as the collection passes 10%, 50% and "
        "100% of the prompts:", "",
        "| path | time | prompts/s | RSS at 10% | at 50% | at 100% | growth 10% -> 100% |",
        "|---|---|---|---|---|---|---|",
        row("in memory (`collect_activations`)", r["memory"]),
        row("streamed (`out=DIR`)", r["stream"]),
        "",
        f"Streamed throughput / in memory: {r['memory']['seconds'] / r['stream']['seconds']:.2f}x. A second streamed run "
        f"was killed with SIGKILL after {r['killed_rows']} rows had reached finished shards and then resumed "
        f"({r['resumed']['seconds']:.1f} s for the rest): its {r['shards']} shards "
        f"{'equal' if r['resumed_equal'] else 'DIFFER from'} the uninterrupted run's byte for byte, and the store "
        f"{'equals' if r['store_equals_memory'] else 'DIFFERS from'} the in-memory tensor.",
    ]
