"""The large-model path: a 1.2 B-parameter checkpoint loaded in bfloat16 with ``device_map="auto"``,
one trace reading every layer's output, for nnspec, bare NNsight and plain transformers.

    python benchmarks/large.py [--device cpu|cuda] [--repeats 3] [--forwards N] [--batch B] [--tokens T]
                               [--config llama-3.2-1b|tiny-llama] [--timeout SECONDS] [--no-page]

The checkpoint has Llama-3.2-1B's published shape with random weights, saved once as bfloat16
safetensors under ``$NNSPEC_CACHE/bench`` (about 2.5 GB), with a locally trained tokenizer. Each of
``--repeats`` rounds starts one process per candidate; each process has imported its libraries and
the model class before its load is timed, so the load's time and peak memory are its own, and the
candidates load in turn, in a rotating order. Each process then runs the trace once and saves every
layer's output, which must equal the floor's bit for bit before its forwards are timed; the loaded
candidates' forwards take turns. Results go to ``benchmarks/results/large-<device>.json`` and the
"Large model" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import difflib
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

SCHEMA = 1
#: The floor first: every other answer is compared with its answer.
CANDIDATES = ("transformers", "nnsight", "nnspec")
DEVICES = ("cpu", "cuda")
#: Per device: (batch, tokens, timed forwards per process).
DEFAULTS = {"cpu": (2, 32, 3), "cuda": (8, 256, 10)}
DEFAULT_PAGE = ROOT / "docs" / "benchmarks.md"
DEFAULT_MAIN_JSON = HERE / "results" / "latest.json"

#: The checkpoints this script can build. ``llama-3.2-1b``: the shape of Llama-3.2-1B as published
#: in the ``config.json`` of its model repository (meta-llama/Llama-3.2-1B): 16 layers, hidden
#: size 2048, MLP 8192, 32 attention heads, 8 key-value heads (head size 64), vocabulary 128256,
#: tied embeddings, RMSNorm epsilon 1e-5, llama3 RoPE with theta 500000 and scaling factor 32 from
#: 8192 original positions, 131072 positions. ``tiny-llama``: the same architecture and code path
#: at toy size, for the tests.
PRESETS: dict[str, dict[str, Any]] = {
    "llama-3.2-1b": {
        "arch": "llama",
        "description": "Llama-3.2-1B's shape (16 layers, 2048 wide, MLP 8192, 32 heads / 8 key-value heads, "
        "128256 vocab, tied embeddings), random weights in bfloat16",
        "config": dict(
            num_hidden_layers=16, hidden_size=2048, intermediate_size=8192, num_attention_heads=32,
            num_key_value_heads=8, head_dim=64, vocab_size=128256, tie_word_embeddings=True, rms_norm_eps=1e-5,
            max_position_embeddings=131072, bos_token_id=128000, eos_token_id=128001, hidden_act="silu",
            rope_theta=500000.0,
            rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                          "original_max_position_embeddings": 8192},
        ),
    },
    "tiny-llama": {
        "arch": "llama",
        "description": "a toy Llama (2 layers, 64 wide), random weights in bfloat16",
        "config": dict(
            num_hidden_layers=2, hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2,
            vocab_size=512, tie_word_embeddings=True, max_position_embeddings=512,
        ),
    },
}


class Timeout(Exception):
    """The run went past ``--timeout``."""


# -- arguments ----------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="benchmarks/large.py", description=(__doc__ or "").splitlines()[0])
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda; cuda needs a visible GPU")
    p.add_argument("--config", default="llama-3.2-1b", help=f"the checkpoint to build and run: {', '.join(PRESETS)}")
    p.add_argument("--candidates", default=",".join(CANDIDATES), help="comma-separated; the floor (transformers) is always run")
    p.add_argument("--repeats", type=int, default=3, help="loads per candidate, each in a new process (default 3)")
    p.add_argument("--forwards", type=int, default=None, help="timed forwards per load (default 3 on cpu, 10 on cuda)")
    p.add_argument("--batch", type=int, default=None, help="sequences per forward (default 2 on cpu, 8 on cuda)")
    p.add_argument("--tokens", type=int, default=None, help="tokens per sequence (default 32 on cpu, 256 on cuda)")
    p.add_argument("--timeout", type=float, default=None, help="stop the whole run after this many seconds")
    p.add_argument("--cache", type=Path, default=None, help="checkpoint folder (default: $NNSPEC_CACHE/bench)")
    p.add_argument("--json", type=Path, default=None, help="results file (default: benchmarks/results/large-<device>.json)")
    p.add_argument("--page", type=Path, default=DEFAULT_PAGE, help="the page to re-render (default docs/benchmarks.md)")
    p.add_argument("--no-page", action="store_true", help="write the JSON only")
    return p


def check_args(args: argparse.Namespace, p: argparse.ArgumentParser) -> argparse.Namespace:
    """Validate and complete ``args``; every problem exits through ``p.error`` naming the flag."""
    if args.device not in DEVICES:
        close = difflib.get_close_matches(str(args.device), DEVICES, n=1)
        p.error(f"--device {args.device!r}: expected one of {', '.join(DEVICES)}"
                + (f" (did you mean {close[0]}?)" if close else ""))
    if args.config not in PRESETS:
        close = difflib.get_close_matches(args.config, list(PRESETS), n=2)
        p.error(f"--config {args.config!r}: unknown checkpoint; known: {', '.join(PRESETS)}"
                + (f" (did you mean {', '.join(close)}?)" if close else ""))
    names = [n.strip() for n in args.candidates.split(",") if n.strip()]
    for name in names:
        if name not in CANDIDATES:
            close = difflib.get_close_matches(name, CANDIDATES, n=1)
            p.error(f"--candidates: unknown candidate {name!r}; known: {', '.join(CANDIDATES)}"
                    + (f" (did you mean {close[0]}?)" if close else ""))
    args.candidates = [n for n in CANDIDATES if n in names or n == CANDIDATES[0]]
    batch, tokens, forwards = DEFAULTS[args.device]
    args.batch = batch if args.batch is None else args.batch
    args.tokens = tokens if args.tokens is None else args.tokens
    args.forwards = forwards if args.forwards is None else args.forwards
    for flag, value in (("--repeats", args.repeats), ("--forwards", args.forwards), ("--batch", args.batch), ("--tokens", args.tokens)):
        if value < 1:
            p.error(f"{flag} {value}: expected a whole number of at least 1")
    limit = PRESETS[args.config]["config"]["max_position_embeddings"]
    if args.tokens > limit:
        p.error(f"--tokens {args.tokens}: {args.config} has {limit} positions")
    if args.timeout is not None and not args.timeout > 0:
        p.error(f"--timeout {args.timeout}: expected a positive number of seconds")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            p.error(f"--device cuda: no CUDA device is visible to torch {torch.__version__} "
                    f"(CUDA build: {torch.version.cuda or 'none'}); run on a machine with a GPU, or drop --device to measure on the CPU")
    import importlib.util

    if importlib.util.find_spec("accelerate") is None:
        p.error("device_map='auto' needs the accelerate package: pip install accelerate")
    if args.json is None:
        args.json = HERE / "results" / f"large-{args.device}.json"
    return args


# -- the checkpoint -----------------------------------------------------------------------------


def config_for(preset: str) -> Any:
    from transformers import AutoConfig

    return AutoConfig.for_model(PRESETS[preset]["arch"], **PRESETS[preset]["config"])


def parameter_count(preset: str) -> int:
    """Parameters of the preset's model (tied weights once), counted on the meta device."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config_for(preset))
    return model.num_parameters()


def build(preset: str, root: Path) -> Path:
    """The folder of ``preset``'s checkpoint under ``root``, built on first use: random weights made
    directly in bfloat16 (one copy in memory) and saved as safetensors, with a trained tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM

    from nnspec.runtime.registry import adapter_by_name
    from nnspec.verification import tiny

    folder = root / f"{preset}-bf16"
    if (folder / "config.json").is_file():
        return folder
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f".{preset}-bf16.partial"
    shutil.rmtree(staging, ignore_errors=True)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config_for(preset), dtype=torch.bfloat16)
    model.save_pretrained(staging)
    del model
    tiny.tokenizer(adapter_by_name(PRESETS[preset]["arch"]).spec.tiny.tokenizer).save_pretrained(staging)
    staging.rename(folder)
    return folder


def prime(folder: Path) -> int:
    """Read the checkpoint's weight files once (untimed), so every timed load finds them in the
    page cache; answers their size in bytes."""
    size = 0
    for path in sorted(folder.glob("*.safetensors")):
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 26):
                size += len(chunk)
    return size


# -- the run ------------------------------------------------------------------------------------


def _equal(expected: Any, actual: Any) -> dict[str, Any]:
    if tuple(actual.shape) != tuple(expected.shape):
        return {"equal": False, "max_diff": None, "shape": list(actual.shape)}
    return {"equal": bool((actual == expected).all()), "max_diff": float((actual - expected).abs().max())}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Build, check and time; returns the results (also written to ``args.json``)."""
    import torch
    from compare import Worker, WorkerError, machine

    from nnspec.runtime.registry import adapter_by_name
    from nnspec.verification.tiny import cache_root

    cache = args.cache or cache_root() / "bench"
    started = datetime.datetime.now(datetime.timezone.utc)
    print(f"building or finding {args.config} under {cache} ...", file=sys.stderr, flush=True)
    folder = build(args.config, cache)
    size = prime(folder)
    layers = adapter_by_name(PRESETS[args.config]["arch"]).spec.modules.layers
    logs = cache / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    cells: dict[str, dict[str, Any]] = {name: {"load": [], "forward": []} for name in args.candidates}
    versions: dict[str, Any] = {}
    reference = None
    with tempfile.TemporaryDirectory(prefix="nnspec-large-") as tmp:
        for r in range(args.repeats):
            # The floor's answer comes first; later rounds rotate who loads first.
            order = args.candidates[r % len(args.candidates):] + args.candidates[: r % len(args.candidates)]
            workers: dict[str, Any] = {}
            try:
                for name in order:
                    cell = cells[name]
                    if "error" in cell or cell.get("equal") is False:
                        continue
                    worker = Worker(name, Path(sys.executable), logs / f"large-{name}.log", script=HERE / "large_worker.py")
                    workers[name] = worker
                    try:
                        versions.setdefault(name, worker.ask("versions")["versions"])
                        loaded = worker.ask("load", path=str(folder), device=args.device, layers=layers)
                        cell["load"].append(loaded["seconds"])
                        for key in ("rss", "rss_peak", "gpu"):
                            if key in loaded:
                                cell.setdefault(f"load_{key}", []).append(loaded[key])
                        answer_file = Path(tmp) / f"{name}-{r}.pt"
                        worker.ask("answer", file=str(answer_file), batch=args.batch, tokens=args.tokens)
                    except WorkerError as exc:
                        cell["error"] = str(exc)
                        continue
                    answer = torch.load(answer_file)
                    if reference is None:
                        reference = answer
                    verdict = _equal(reference, answer)
                    cell["equal"] = verdict["equal"] and cell.get("equal", True)
                    cell["max_diff"] = max(cell.get("max_diff") or 0.0, verdict["max_diff"] or 0.0)
                    cell.setdefault("shape", list(answer.shape))
                    if not verdict["equal"]:
                        print(f"  {name}: answer differs from the floor's ({verdict}); not timing its forwards",
                              file=sys.stderr, flush=True)
                # The loaded candidates' forwards take turns, so a change in the machine's speed
                # hits all of them alike (on the CPU the processes share the mapped weights).
                timed_names = [n for n in order if n in workers and "error" not in cells[n] and cells[n].get("equal")]
                for f in range(args.forwards if timed_names else 0):
                    for name in timed_names[f % len(timed_names):] + timed_names[: f % len(timed_names)]:
                        cell = cells[name]
                        if "error" in cell:
                            continue
                        try:
                            timed = workers[name].ask("time")
                        except WorkerError as exc:
                            cell["error"] = str(exc)
                            continue
                        cell["forward"].append(timed["seconds"])
                        # Above the loaded model: over the resident size before this forward, when
                        # the first forward has paged in every weight a lazy load left on disk.
                        cell.setdefault("forward_rss_above", []).append(timed["rss_peak"] - timed["rss_before"])
                        for key in ("rss_before", "rss_peak", "gpu_peak"):
                            if key in timed:
                                cell.setdefault(f"forward_{key}", []).append(timed[key])
            finally:
                for worker in workers.values():
                    worker.process.kill()
                    worker.process.wait()
            for name in order:
                print(f"  round {r + 1}/{args.repeats} {name}: {_brief(cells[name])}", file=sys.stderr, flush=True)
    for cell in cells.values():
        summarize(cell)
    results = {
        "schema": SCHEMA, "kind": "large", "started": started.isoformat(timespec="seconds"),
        "minutes": round((datetime.datetime.now(datetime.timezone.utc) - started).total_seconds() / 60, 1),
        "command": " ".join(["python benchmarks/large.py", *args.argv]),
        "machine": machine(), "load_average": os.getloadavg(), "device": args.device,
        "gpu": torch.cuda.get_device_name(0) if args.device == "cuda" else None,
        "dtype": "bfloat16", "device_map": "auto",
        "checkpoint": {"name": args.config, "description": PRESETS[args.config]["description"],
                       "parameters": parameter_count(args.config), "bytes": size},
        "inputs": {"batch": args.batch, "tokens": args.tokens}, "repeats": args.repeats, "forwards": args.forwards,
        "versions": versions, "candidates": cells, "ratios": ratios(cells),
    }
    return results


def _brief(cell: dict[str, Any]) -> str:
    if "error" in cell:
        return f"error: {cell['error']}"
    forward = f", forward {cell['forward'][-1]:.3f} s" if cell["forward"] else ""
    return f"load {cell['load'][-1]:.2f} s{forward}, answer {'equal' if cell.get('equal') else 'DIFFERS'}" if cell["load"] else "-"


def summarize(cell: dict[str, Any]) -> None:
    """Medians of a candidate's samples, added to ``cell``."""
    for key in ("load", "forward", "load_rss", "load_rss_peak", "load_gpu", "forward_rss_before", "forward_rss_peak",
                "forward_gpu_peak", "forward_rss_above"):
        if cell.get(key):
            cell[f"{key}_median"] = statistics.median(cell[key])


def ratios(cells: dict[str, dict[str, Any]]) -> dict[str, Optional[float]]:
    """nnspec's medians over the others' (and bare NNsight's forward over the floor's)."""

    def over(top: str, bottom: str, key: str) -> Optional[float]:
        a, b = cells.get(top, {}).get(f"{key}_median"), cells.get(bottom, {}).get(f"{key}_median")
        return a / b if a is not None and b else None

    return {
        "load_nnspec_over_nnsight": over("nnspec", "nnsight", "load"),
        "load_nnspec_over_transformers": over("nnspec", "transformers", "load"),
        "load_nnsight_over_transformers": over("nnsight", "transformers", "load"),
        "forward_nnspec_over_transformers": over("nnspec", "transformers", "forward"),
        "forward_nnsight_over_transformers": over("nnsight", "transformers", "forward"),
        "forward_nnspec_over_nnsight": over("nnspec", "nnsight", "forward"),
    }


def ratios_text(results: dict[str, Any]) -> str:
    """The console summary: each ratio on a line."""
    names = {"load_nnspec_over_nnsight": "load, nnspec / bare NNsight", "load_nnspec_over_transformers": "load, nnspec / transformers",
             "load_nnsight_over_transformers": "load, bare NNsight / transformers",
             "forward_nnspec_over_transformers": "forward, nnspec / floor", "forward_nnsight_over_transformers": "forward, bare NNsight / floor",
             "forward_nnspec_over_nnsight": "forward, nnspec / bare NNsight"}
    lines = [f"{results['checkpoint']['name']} on {results['device']} (bfloat16, device_map='auto'):"]
    for key, title in names.items():
        value = results["ratios"].get(key)
        lines.append(f"  {title:36s} {'-' if value is None else f'{value:.2f}x'}")
    for name, cell in results["candidates"].items():
        if "error" in cell:
            lines.append(f"  {name}: error: {cell['error']}")
        elif cell.get("equal") is False:
            lines.append(f"  {name}: answer differs from the floor's (max |diff| {cell.get('max_diff')})")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    p = parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = check_args(p.parse_args(argv), p)
    args.argv = argv
    if args.timeout is not None:
        def expire(signum: int, frame: Any) -> None:
            raise Timeout()

        signal.signal(signal.SIGALRM, expire)
        signal.setitimer(signal.ITIMER_REAL, args.timeout)
    try:
        results = run(args)
    except Timeout:
        print(f"benchmarks/large.py: stopped after --timeout {args.timeout:g} seconds; nothing written", file=sys.stderr)
        return 124
    finally:
        if args.timeout is not None:
            signal.setitimer(signal.ITIMER_REAL, 0)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1) + "\n")
    print(ratios_text(results))
    written = [str(args.json)]
    if not args.no_page:
        import page

        if DEFAULT_MAIN_JSON.is_file():
            args.page.write_text(page.render(json.loads(DEFAULT_MAIN_JSON.read_text()), large_dir=args.json.parent))
            written.append(str(args.page))
        else:
            print(f"no {DEFAULT_MAIN_JSON} to render the page from; run benchmarks/compare.py first", file=sys.stderr)
    print("wrote " + " and ".join(written))
    failed = any("error" in c or c.get("equal") is False for c in results["candidates"].values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
