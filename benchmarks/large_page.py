"""The "Large model" section of the results page, from ``benchmarks/results/large-<device>.json``
(written by ``large.py``; one file per device, CPU first)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

DEVICES = ("cpu", "cuda")
NAMES = {"transformers": "plain transformers (floor)", "nnsight": "bare NNsight", "nnspec": "nnspec"}


def load_results(folder: Path) -> list[dict[str, Any]]:
    """Every large-model results file in ``folder``, CPU first."""
    out = []
    for device in DEVICES:
        path = folder / f"large-{device}.json"
        if path.is_file():
            out.append(json.loads(path.read_text()))
    return out


def _s(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.2f} s" if seconds >= 1 else f"{seconds * 1000:.0f} ms"


def _mib(value: Optional[float]) -> str:
    return "-" if value is None else f"{value / 2**20:,.0f} MiB"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _x(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.2f}x"


def rerun_lines(folder: Path) -> list[str]:
    """The lines of the page's "How to rerun" block for the large-model run."""
    minutes = {r["device"]: r["minutes"] for r in load_results(folder)}
    here = f" ({_count(round(minutes['cpu']), 'minute')} here)" if "cpu" in minutes else ""
    return [
        f"{'python benchmarks/large.py':45s}# the large-model section, on the CPU{here}",
        f"{'make bench-gpu':45s}# the same on CUDA (large.py --device cuda, with a time limit)",
    ]


def section(folder: Path) -> list[str]:
    """The Markdown lines of the section (a pointer to the script when no results exist yet)."""
    runs = load_results(folder)
    out = ["## Large model", ""]
    if not runs:
        return out + ["Not measured yet: `python benchmarks/large.py` (CPU) or `make bench-gpu` (CUDA) writes this section.", ""]
    first = runs[0]
    checkpoint = first["checkpoint"]
    out += [
        f"A checkpoint with {checkpoint['description']}: {checkpoint['parameters'] / 1e9:.2f} B parameters, "
        f"{checkpoint['bytes'] / 2**30:.1f} GiB of safetensors on disk, built once offline by `benchmarks/large.py`. "
        "Each candidate loads it in bfloat16 with `device_map=\"auto\"` and runs one trace that reads every "
        "layer's output: nnspec saves `model.layers_output[i]` for every `i`, bare NNsight the output of every "
        "block by its module path, and plain transformers (the floor) takes the same outputs with forward hooks. "
        "Every load runs in a new process that has already imported its libraries and the model's class, so the "
        "load time and memory are the load's own; each round, the candidates load in turn, in a rotating order. "
        "After each load the trace runs once untimed and every layer's output is compared with the floor's (they "
        "must be equal bit for bit) before that process's forwards are timed; the loaded candidates' forwards "
        "then take turns. Medians below; every sample is in the JSON.",
        "",
    ]
    for results in runs:
        out += _device_block(results)
    while out and out[-1] == "":
        out.pop()
    return out


def _device_block(results: dict[str, Any]) -> list[str]:
    cells = results["candidates"]
    cuda = results["device"] == "cuda"
    where = f"CUDA ({results.get('gpu') or 'GPU'})" if cuda else f"the CPU ({results['machine']['cpu']}, one torch thread)"
    inputs = results["inputs"]
    out = [
        f"### On {'CUDA' if cuda else 'the CPU'}",
        "",
        f"On {where}; {inputs['batch']} x {inputs['tokens']} token ids per forward; "
        f"{_count(results['repeats'], 'load')} per candidate, {_count(results['forwards'], 'timed forward')} after each. "
        f"Run: `{results['command'].strip()}`, started {results['started']}, {results['minutes']} minutes.",
        "",
    ]
    if not cuda:
        out += [
            "On the CPU each library loads the way transformers does by default: the safetensors file is mapped "
            "into memory rather than read, so the load itself is short and the weights become resident as the "
            "first forward touches them. \"Resident after a forward\" is therefore the size of the loaded model; "
            "the last column is what a forward adds on top of it.",
            "",
        ]
    header = ["candidate", "load", "forward", "resident after load", "peak during load", "resident after a forward",
              "peak during forward", "forward above that"]
    if cuda:
        header += ["GPU memory after load", "GPU peak during forward"]
    header.append("answer")
    out += ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for name, cell in cells.items():
        if "error" in cell:
            answer = f"error ‡: {cell['error']}"
        elif name == "transformers":
            answer = "the floor"
        elif cell.get("equal"):
            answer = "equal to the floor's"
        elif cell.get("equal") is False:
            diff = cell.get("max_diff")
            answer = f"differs † (max abs diff {diff:.3g})" if diff is not None else "differs † (shape)"
        else:
            answer = "-"
        row = [NAMES.get(name, name), _s(cell.get("load_median")), _s(cell.get("forward_median")),
               _mib(cell.get("load_rss_median")), _mib(cell.get("load_rss_peak_median")),
               _mib(cell.get("forward_rss_before_median")), _mib(cell.get("forward_rss_peak_median")),
               _mib(cell.get("forward_rss_above_median"))]
        if cuda:
            row += [_mib(cell.get("load_gpu_median")), _mib(cell.get("forward_gpu_peak_median"))]
        row.append(answer)
        out.append("| " + " | ".join(row) + " |")
    r = results["ratios"]
    out += [
        "",
        f"nnspec's load takes {_x(r.get('load_nnspec_over_nnsight'))} bare NNsight's time and "
        f"{_x(r.get('load_nnspec_over_transformers'))} plain transformers' (bare NNsight: "
        f"{_x(r.get('load_nnsight_over_transformers'))}); its forward takes {_x(r.get('forward_nnspec_over_transformers'))} "
        f"the floor's (bare NNsight: {_x(r.get('forward_nnsight_over_transformers'))}).",
        "",
    ]
    return out
