"""The conformance matrix as a program: every spec (and variant) x every check, in parallel.

``nnspec matrix`` builds each tiny checkpoint, runs :data:`~nnspec.verification.conformance.CHECKS`
in worker processes, shows a progress bar, prints a pass/fail table with seconds, and writes the
table as Markdown and JSON.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Optional

from ..paths import data_path
from ..runtime.adapter import installed_version
from ..runtime.compat import unserved_release
from .conformance import TITLES

#: Version of the matrix.json layout (2: rows carry "unavailable" for model types a transformers lacks;
#: 3: each check result carries "cause", "layer", "variant" and "max_error").
SCHEMA = 3


def subjects(
    specs: Optional[list[str]] = None, variants: bool = True, real: bool = True
) -> list[tuple[str, Optional[str]]]:
    """(spec, variant) pairs to run: each spec's base checkpoint, its variants, then one row per
    distinct tiny checkpoint of the real published configs of a model type it serves (variant
    slot ``hub:<Hub id>``; configs that shrink to the same checkpoint share the row, see
    :func:`~nnspec.verification.realconfigs.distinct`)."""
    from ..runtime.registry import adapter_by_name, spec_names
    from .realconfigs import by_model_type, distinct, row_name

    chosen = specs or spec_names()
    groups = by_model_type() if real else {}
    pairs: list[tuple[str, Optional[str]]] = []
    for name in chosen:
        spec = adapter_by_name(name).spec
        pairs.append((name, None))
        if variants:
            pairs += [(name, v) for v in spec.variants]
        for model_type in spec.model_types:
            pairs += [(name, row_name(hub_id)) for hub_id in distinct(groups.get(model_type, []))]
    return pairs


def row_label(spec: str, variant: Optional[str], sep: str = "/") -> str:
    """How a row is named: ``gpt2``, ``gpt2/tied_embeddings``, ``qwen2/Qwen/Qwen2.5-0.5B``."""
    from .realconfigs import real_id

    if variant is None:
        return spec
    return f"{spec}{sep}{real_id(variant) or variant}"


def run_one(
    spec_name: str, variant: Optional[str] = None, threads: int = 1, placement: Optional[dict[str, Any]] = None
) -> dict[str, Any]:
    """Build, load and check one subject; never raises (failures are part of the result).
    ``placement``: the ``dtype`` / ``device_map`` both models load in (default float32 on the CPU)."""
    import torch

    from ..runtime.registry import adapter_by_name
    from . import conformance, tiny
    from .realconfigs import get, real_id

    torch.set_num_threads(threads)
    row: dict[str, Any] = {"spec": spec_name, "variant": variant, "error": "", "results": [], "unavailable": ""}
    start = time.perf_counter()
    try:
        spec = adapter_by_name(spec_name).spec
        hub_id = real_id(variant)
        model_type = get(hub_id).model_type if hub_id else spec.model_types[0]
        requires = spec.requires
        missing = unavailable_model_type(model_type) or unserved_release(
            f"spec {spec_name!r}", requires.transformers if requires else None, requires.reason if requires else "",
            installed_version("transformers"))
        if hub_id and not missing:
            real = get(hub_id)
            missing = unserved_release(f"config {hub_id!r}", real.transformers or None, real.transformers_reason,
                                       installed_version("transformers"))
        if missing:
            row["unavailable"] = missing
            row["seconds"] = time.perf_counter() - start
            return row
        path = tiny.checkpoint(spec, variant)
        row["build_seconds"] = time.perf_counter() - start
        loaded = time.perf_counter()
        subject = conformance.load_subject(row_label(spec_name, variant), path, **(placement or {}))
        row["load_seconds"] = time.perf_counter() - loaded
        row["results"] = [
            {**asdict(r), "variant": variant, "max_diff": None if math.isnan(r.max_diff) else r.max_diff,
             "max_error": None if r.max_error is None or math.isnan(r.max_error) else r.max_error}
            for r in conformance.run_checks(subject)
        ]
    except Exception as exc:  # noqa: BLE001 - reported in the table
        row["error"] = f"{type(exc).__name__}: {exc}"
    row["seconds"] = time.perf_counter() - start
    return row


def unavailable_model_type(model_type: str) -> str:
    """Why the installed transformers cannot build ``model_type`` ('' when it can)."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    if model_type in CONFIG_MAPPING_NAMES:
        return ""
    return f"transformers {installed_version('transformers')} has no model type {model_type!r}"


def _init_worker() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    quiet_transformers()


def quiet_transformers() -> None:
    """No per-checkpoint progress bars or load reports from transformers (the matrix has its own)."""
    from transformers.utils import logging

    logging.disable_progress_bar()
    logging.set_verbosity_error()


def run_matrix(
    specs: Optional[list[str]] = None, jobs: int = 2, variants: bool = True, progress: bool = True, real: bool = True,
    placement: Optional[dict[str, Any]] = None,
) -> dict[str, Any]:
    """Run the matrix; returns the report (rows in subject order, versions, wall time). ``placement``
    (``dtype``, ``device_map``) is how every subject is loaded (:func:`run_one`)."""
    from tqdm.auto import tqdm

    pairs = subjects(specs, variants, real)
    start = time.perf_counter()
    rows: dict[tuple[str, Optional[str]], dict[str, Any]] = {}
    bar = tqdm(total=len(pairs), desc="conformance", unit="spec", disable=not progress)
    if jobs <= 1:
        quiet_transformers()
        for pair in pairs:
            bar.set_postfix_str(row_label(*pair))
            rows[pair] = run_one(*pair, placement=placement)
            bar.update()
    else:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn"), initializer=_init_worker) as pool:
            futures = {pool.submit(run_one, *pair, placement=placement): pair for pair in pairs}
            for future in as_completed(futures):
                pair = futures[future]
                rows[pair] = future.result()
                bar.set_postfix_str(row_label(*pair))
                bar.update()
    bar.close()
    return {
        "schema": SCHEMA,
        "versions": {p: installed_version(p) for p in ("nnspec", "torch", "transformers", "nnsight")},
        "python": platform.python_version(),
        "jobs": jobs,
        "wall_seconds": time.perf_counter() - start,
        "checks": list(TITLES),
        "rows": [rows[pair] for pair in pairs],
    }


def passed(report: dict[str, Any]) -> bool:
    return all(not r["error"] and all(c["passed"] for c in r["results"]) for r in report["rows"])


def _cells(row: dict[str, Any], checks: list[str], ok: str, bad: str) -> list[str]:
    if row.get("unavailable"):
        return ["n/a"] * len(checks)
    by_check = {c["check"]: c for c in row["results"]}
    return [
        "error" if row["error"] else (ok if by_check[c]["passed"] else bad) if c in by_check else "-" for c in checks
    ]


def table(report: dict[str, Any]) -> str:
    """The report as a fixed-width text table, failures listed underneath."""
    checks = report["checks"]
    header = ["spec"] + [TITLES[c] for c in checks] + ["seconds"]
    lines = []
    for row in report["rows"]:
        name = row_label(row["spec"], row["variant"])
        lines.append([name] + _cells(row, checks, "pass", "FAIL") + [f"{row['seconds']:.1f}"])
    widths = [max(len(r[i]) for r in [header] + lines) for i in range(len(header))]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(c.ljust(w) for c, w in zip(line, widths)) for line in lines]
    failures = _failures(report)
    total = sum(len(r["results"]) for r in report["rows"])
    bad = len(failures)
    out.append("")
    skipped = sum(1 for r in report["rows"] if r.get("unavailable"))
    out.append(
        f"{len(report['rows']) - skipped} checkpoints ({skipped} not available in this transformers), {total} checks, {bad} failed, "
        f"{report['wall_seconds']:.1f} s wall with {report['jobs']} jobs "
        f"(transformers {report['versions']['transformers']}, nnsight {report['versions']['nnsight']}, "
        f"torch {report['versions']['torch']})"
    )
    out += [f"  FAIL {f}" for f in failures]
    return "\n".join(out)


def _failures(report: dict[str, Any]) -> list[str]:
    found = []
    for row in report["rows"]:
        name = row_label(row["spec"], row["variant"])
        if row["error"]:
            found.append(f"{name}: {row['error']}")
        found += [f"{name} {c['check']}: {c['error']}" for c in row["results"] if not c["passed"]]
    return found


def markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown table."""
    checks = report["checks"]
    v = report["versions"]
    out = [
        "# Conformance matrix",
        "",
        f"transformers {v['transformers']}, nnsight {v['nnsight']}, torch {v['torch']}, Python {report['python']}; "
        f"{report['wall_seconds']:.1f} s wall with {report['jobs']} jobs.",
        "",
        "| spec | " + " | ".join(TITLES[c] for c in checks) + " | seconds |",
        "|---|" + "---|" * len(checks) + "---|",
    ]
    for row in report["rows"]:
        name = row_label(row["spec"], row["variant"], " / ")
        out.append(f"| {name} | " + " | ".join(_cells(row, checks, "pass", "**FAIL**")) + f" | {row['seconds']:.1f} |")
    failures = _failures(report)
    if failures:
        out += ["", "## Failures", ""] + [f"- {f}" for f in failures]
    return "\n".join(out) + "\n"


def write(report: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Write ``matrix.md`` and ``matrix.json`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    md, js = out_dir / "matrix.md", out_dir / "matrix.json"
    md.write_text(markdown(report), encoding="utf-8")
    js.write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    return md, js


def _row_passed(row: dict[str, Any]) -> bool:
    return not row["error"] and not row.get("unavailable") and all(c["passed"] for c in row["results"])


def mixer_kinds(spec: Any) -> list[str]:
    """The token-mixer kinds a spec's layers may use, in the spec's order (the base kind first)."""
    attention = spec.attention
    kinds = [attention.kind] + (list(attention.per_layer.kinds.values()) if attention.per_layer else [])
    return list(dict.fromkeys(kinds))


def support_markdown(report: dict[str, Any]) -> str:
    """``docs/architectures.md``: each spec with its model types, parent, which contract rows pass
    (on the base checkpoint and every variant) and its declared limits, then the model types no
    spec serves yet, with the reason."""
    import sys

    from ..compiler.loader import BUNDLED_DIR, load_all
    from .realconfigs import by_model_type, distinct, real_id

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

    specs = load_all(BUNDLED_DIR)
    rows: dict[str, list[dict[str, Any]]] = {}
    for row in report["rows"]:
        rows.setdefault(row["spec"], []).append(row)
    checks = report["checks"]
    v = report["versions"]
    out = [
        "# Supported architectures",
        "",
        "Generated by `nnspec support` from the specs and a conformance-matrix run; do not edit by hand.",
        f"Run: transformers {v['transformers']}, nnsight {v['nnsight']}, torch {v['torch']}, "
        f"{len(report['rows'])} checkpoints (base, variants and real configs), {report['wall_seconds']:.0f} s with {report['jobs']} jobs.",
        "",
        "A row passes when it passes on the spec's base tiny checkpoint and on every variant. A spec is",
        "supported when every row passes. Rows a spec declares unavailable pass when the runtime refuses",
        "with the declared reason; the limits column lists them.",
        "",
        "Rows named by a Hub id are built from that checkpoint's published config.json (the corpus in",
        "`src/nnspec/data/configs/`, each with its public source) with only sizes shrunk; the",
        "real-checkpoints column lists those a spec is proven on (a failing one is marked). Configs that",
        "shrink to the same tiny checkpoint (Llama-3-8B and -70B) share one row, listed together.",
        "",
        "The mixers column lists the token-mixer kinds a spec's layers use (softmax or linear attention,",
        "state_space, recurrent, convolution; none: a block with only an MLP).",
        "",
        "| spec | model types | extends | mixers | variants | real checkpoints | " + " | ".join(TITLES[c] for c in checks) + " | limits |",
        "|---|---|---|---|---|---|" + "---|" * len(checks) + "---|",
    ]
    supported = 0
    for name, loaded in specs.items():
        runs = rows.get(name, [])
        cells = []
        for check in checks:
            states = [c["passed"] for r in runs for c in r["results"] if c["check"] == check]
            cells.append("-" if not states else ("pass" if all(states) else "**FAIL**"))
        ok = bool(runs) and all(not r["error"] for r in runs) and all(c == "pass" for c in cells)
        supported += ok
        limits = "; ".join(f"{k}: {v}" for k, v in loaded.spec.limits.declared().items())
        covered = {}
        for model_type in loaded.spec.model_types:
            covered.update(distinct(by_model_type().get(model_type, [])))
        real = [
            ", ".join(covered.get(rid, [rid])) + ("" if _row_passed(r) else " (**FAIL**)")
            for r in runs if (rid := real_id(r["variant"])) is not None
        ]
        variants = sum(1 for r in runs if r["variant"] is not None and real_id(r["variant"]) is None)
        out.append(
            f"| {name} | {', '.join(loaded.spec.model_types)} | {loaded.spec.extends or ''} | {', '.join(mixer_kinds(loaded.spec))} | {variants} | "
            f"{', '.join(real)} | " + " | ".join(cells) + f" | {limits.replace('|', '/')} |"
        )
    unsupported = tomllib.loads((data_path("unsupported.toml")).read_text(encoding="utf-8"))
    out += [
        "",
        f"{supported} of {len(specs)} specs supported.",
        "",
        "## Not served yet",
        "",
        f"{len(unsupported)} causal-LM model types of transformers {v['transformers']} have no spec yet:",
        "",
        "| model type | reason |",
        "|---|---|",
    ]
    out += [f"| {t} | {r.replace('|', '/')} |" for t, r in sorted(unsupported.items())]
    return "\n".join(out) + "\n"
