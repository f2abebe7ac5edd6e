"""The compatibility table: matrix runs under several transformers and NNsight releases merged.

``nox -s matrix`` runs the conformance matrix under each version pair; :func:`merge` folds their
``matrix.json`` files into the data file shipped with the package (which the load-time check in
:mod:`nnspec.runtime.compat` reads), and :func:`markdown` renders the table users read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import CompatibilityDataError
from ..runtime.compat import SCHEMA, version_key

#: matrix.json layouts this module reads (1 lacks "unavailable"; it is read as available; 3 adds
#: structured failure fields to each check result, which the merge does not need).
MATRIX_SCHEMAS = (1, 2, 3)


def read_matrix(path: Path) -> dict[str, Any]:
    """One ``matrix.json``, upgraded to the current layout; refuses layouts it cannot read."""
    report = json.loads(path.read_text(encoding="utf-8"))
    schema = report.get("schema")
    if schema not in MATRIX_SCHEMAS:
        raise CompatibilityDataError(
            f"{path}: matrix results schema {schema!r} is not one of {MATRIX_SCHEMAS}; rerun `nox -s matrix` for that version pair"
        )
    for row in report["rows"]:
        row.setdefault("unavailable", "")
    return report


def merge(results_dir: Path) -> dict[str, Any]:
    """Every ``<pair>/matrix.json`` (and ``<pair>/gap.json``) under ``results_dir`` as one record."""
    runs, gaps = [], []
    for pair in sorted(p for p in results_dir.iterdir() if p.is_dir()):
        gap = pair / "gap.json"
        if gap.is_file():
            gaps.append(json.loads(gap.read_text(encoding="utf-8")))
            continue
        matrix = pair / "matrix.json"
        if not matrix.is_file():
            gaps.append({"transformers": None, "nnsight": None, "reason": f"{pair.name}: no matrix.json (the run did not finish)"})
            continue
        report = read_matrix(matrix)
        specs: dict[str, dict[str, Any]] = {}
        for row in report["rows"]:
            entry = specs.setdefault(row["spec"], {"status": "pass", "failed": {}, "checkpoints": 0, "not_run": {}})
            if row["unavailable"]:
                # The spec's own row decides whether the spec is served at all; a variant or real
                # config the release cannot build is listed with its reason.
                if row["variant"] is None:
                    entry["status"] = "unavailable"
                    entry["reason"] = row["unavailable"]
                else:
                    entry["not_run"][f"{row['spec']}/{row['variant']}"] = row["unavailable"]
                continue
            entry["checkpoints"] += 1
            problems = {c["check"]: c["error"] for c in row["results"] if not c["passed"]}
            if row["error"]:
                problems["load"] = row["error"]
            if problems and entry["status"] != "unavailable":
                entry["status"] = "fail"
                label = row["spec"] + ("" if row["variant"] is None else f"/{row['variant']}")
                entry["failed"].update({f"{label} {k}": v[:300] for k, v in problems.items()})
        versions = report["versions"]
        # The nox session's own time (environment set-up included), when it recorded one.
        timing = pair / "session.json"
        session = json.loads(timing.read_text(encoding="utf-8")).get("seconds") if timing.is_file() else None
        runs.append({
            "transformers": versions["transformers"],
            "nnsight": versions["nnsight"],
            "torch": versions["torch"],
            "wall_seconds": round(report["wall_seconds"], 1),
            "session_seconds": None if session is None else round(session, 1),
            "specs": specs,
        })
    runs.sort(key=lambda r: (version_key(r["transformers"]), version_key(r["nnsight"])))
    return {"schema": SCHEMA, "runs": runs, "gaps": gaps}


def _timing(runs: list[dict[str, Any]]) -> list[str]:
    """How long the whole matrix takes and how to run one pair (from the recorded run times)."""
    if not runs:
        return []
    checks = sum(r["wall_seconds"] for r in runs)
    sessions = [r.get("session_seconds") for r in runs]
    total = sum(s for s in sessions if s is not None) if all(s is not None for s in sessions) else None
    newest = runs[-1]
    lines = [
        f"Run all {len(runs)} pairs with `nox -s matrix` (`NNSPEC_JOBS=2`, 2 CPU cores): "
        + (f"{total / 60:.0f} min of wall time, environments included; " if total is not None else "")
        + f"the conformance runs alone take {checks / 60:.0f} min. Run one pair with",
        f"`nox -s \"matrix(transformers-{newest['transformers']}-nnsight-{newest['nnsight']})\"`: "
        f"about {newest['wall_seconds']:.0f} s once its virtual environment exists (nox keeps it), then",
        "`nox -s compat` to rewrite this page and the data file the runtime reads.",
    ]
    return lines


def _unserved(runs: list[dict[str, Any]]) -> list[str]:
    """One line per reason a spec or a real config is not run: the releases it applies to, then the reason."""
    where: dict[tuple[str, str], list[str]] = {}
    for run in runs:
        for name, entry in run["specs"].items():
            if entry["status"] == "unavailable":
                # The spec's own line says it for its variants and published configs too.
                found = {} if "has no model type" in entry.get("reason", "") else {name: entry["reason"]}
            else:
                found = {label: why for label, why in entry.get("not_run", {}).items() if "has no model type" not in why}
            for label, reason in found.items():
                # The reason names the release it was read under; one line per reason across releases.
                general = reason.replace(f", not {run['transformers']}:", ":")
                where.setdefault((label, general), []).append(run["transformers"])
    return [f"- {label} (tf {', '.join(dict.fromkeys(releases))}): {reason}" for (label, reason), releases in sorted(where.items())]


def markdown(data: dict[str, Any]) -> str:
    """``docs/compatibility.md``: spec x version pair, pass / FAIL / n/a, then failures and gaps."""
    runs = data["runs"]
    names = sorted({name for run in runs for name in run["specs"]})
    heads = [f"tf {r['transformers']}<br>nnsight {r['nnsight']}" for r in runs]
    symbol = {"pass": "pass", "fail": "**FAIL**", "unavailable": "n/a"}
    out = [
        "# Compatibility",
        "",
        "Generated by `nox -s compat` from `nox -s matrix` runs; do not edit by hand. Each cell is the",
        "whole conformance matrix of one spec (base checkpoint, variants and the tiny checkpoints of real",
        "published configs) under one transformers, NNsight and torch set: pass, **FAIL** (failing rows",
        "listed below) or n/a (that transformers has no such model type, or n/a* where the spec states",
        "the releases it serves and why the others are not, listed below). Loading a bundled spec under a",
        "pair that was not run warns, naming the nearest verified pairs; under a pair that failed for it,",
        "or a release the spec does not serve, it raises unless `allow_unverified=True` is passed to",
        "`StandardizedTransformer`.",
        "",
        *_timing(runs),
        "",
        "| version pair | " + " | ".join(f"tf {r['transformers']} / nnsight {r['nnsight']} / torch {r['torch']}" for r in runs) + " |",
        "|---|" + "---|" * len(runs),
        "| wall time | " + " | ".join(f"{r['wall_seconds']:.0f} s" for r in runs) + " |",
        "| specs passing | " + " | ".join(
            f"{sum(1 for s in r['specs'].values() if s['status'] == 'pass')} / {sum(1 for s in r['specs'].values() if s['status'] != 'unavailable')}"
            for r in runs) + " |",
        "",
        "| spec | " + " | ".join(heads) + " |",
        "|---|" + "---|" * len(runs),
    ]
    def cell(entry: dict[str, Any]) -> str:
        unserved = entry["status"] == "unavailable" and "has no model type" not in entry.get("reason", "")
        return symbol[entry["status"]] + ("*" if unserved else "")

    for name in names:
        cells = [cell(r["specs"][name]) if name in r["specs"] else "-" for r in runs]
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    failures = [(r, k, v) for r in runs for s in r["specs"].values() for k, v in s["failed"].items()]
    if failures:
        out += ["", "## Failing rows", ""]
        out += [f"- tf {r['transformers']} / nnsight {r['nnsight']}: {k}: {v.splitlines()[0][:200]}" for r, k, v in failures]
    unserved = _unserved(runs)
    if unserved:
        out += ["", "## Not served", "",
                "Releases a spec, or a published config, states it cannot run on, each with the reason:", ""]
        out += unserved
    if data["gaps"]:
        out += ["", "## Gaps", ""] + [f"- {g['reason']}" for g in data["gaps"]]
    return "\n".join(out) + "\n"
