"""Run nnterp's own test suite against nnspec.

nnterp publishes its tests inside its wheel (``nnterp/tests``). This harness downloads that wheel
from the package registry at test time (it is never copied into this repository), unpacks the
tests, renames the import root ``nnterp`` to the package under test and runs them with pytest on
tiny offline checkpoints installed under the suite's Hub ids in a private Hugging Face cache.

The same run with the package left as ``nnterp`` (in an environment where nnterp is installed)
measures nnterp itself: that is how ``baseline.json`` was written.

    python -m tests.nnterp_suite.harness run [--jobs N] [--out results.json]
    python -m tests.nnterp_suite.harness baseline --python .bench/peer/bin/python

The suite's own conftest asks the Hub which tiny models exist and probes each one's loading with
plain NNsight before it collects anything. Offline, the harness answers both questions instead: the
model list is the suite's fixed list (``models.toml``), and every model is recorded as loadable, so
the suite's tests (not its availability probe) decide every outcome.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
import zipfile
from pathlib import Path
from typing import Optional

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
NNTERP_VERSION = "1.3.0"
MODELS_FILE = HERE / "models.toml"
BASELINE_FILE = HERE / "baseline.json"
DIFFERENCES_FILE = HERE / "differences.toml"
#: A fixed snapshot name for the offline Hub cache (any 40 hex digits do).
SNAPSHOT = "0" * 40


class HarnessError(RuntimeError):
    """A step of the harness could not be done (the message names the step)."""


def cache_dir() -> Path:
    from nnspec.verification.tiny import cache_root

    return cache_root() / "nnterp-suite"


def models() -> dict[str, dict[str, str]]:
    """``{Hub id: {"config": corpus id} or {"spec": bundled spec}}`` from models.toml."""
    return tomllib.loads(MODELS_FILE.read_text())["models"]


def wheel(python: str = sys.executable) -> Path:
    """nnterp's wheel, downloaded from the package registry on first use."""
    where = cache_dir() / "wheels"
    found = sorted(where.glob(f"nnterp-{NNTERP_VERSION}-*.whl"))
    if found:
        return found[0]
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [python, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:",
         f"nnterp=={NNTERP_VERSION}", "-d", str(where)],
        capture_output=True, text=True,
    )
    found = sorted(where.glob(f"nnterp-{NNTERP_VERSION}-*.whl"))
    if done.returncode != 0 or not found:
        raise HarnessError(f"downloading nnterp=={NNTERP_VERSION} failed: {(done.stderr or done.stdout).strip()[-400:]}")
    return found[0]


def unpack(wheel_path: Path, dest: Path, package: str) -> Path:
    """The wheel's ``nnterp/tests`` under ``dest/suite/tests``, with the import root renamed to
    ``package``. Returns the folder to run pytest in."""
    suite = dest / "suite"
    tests = suite / "tests"
    tests.mkdir(parents=True)
    with zipfile.ZipFile(wheel_path) as archive:
        members = [name for name in archive.namelist() if name.startswith("nnterp/tests/") and not name.endswith("/")]
        if not members:
            raise HarnessError(f"{wheel_path.name} holds no nnterp/tests folder")
        for name in members:
            text = archive.read(name).decode()
            if name.endswith(".py"):
                text = re.sub(r"\bnnterp\b", package, text)
            (tests / name.removeprefix("nnterp/tests/")).write_text(text)
    return suite


def _checkpoint(entry: dict[str, str]) -> Path:
    from nnspec.runtime.registry import adapter_by_name
    from nnspec.verification import tiny

    if "config" in entry:
        return tiny.real_checkpoint(entry["config"])
    return tiny.checkpoint(adapter_by_name(entry["spec"]).spec)


def install_checkpoints(hub: Path) -> list[str]:
    """Every suite model as a snapshot of the private Hub cache ``hub``; returns the Hub ids."""
    ids = []
    for hub_id, entry in models().items():
        repo = hub / ("models--" + hub_id.replace("/", "--"))
        snapshot = repo / "snapshots" / SNAPSHOT
        source = _checkpoint(entry)
        stamp = snapshot / ".source"
        if not (stamp.is_file() and stamp.read_text() == str(source)):
            shutil.rmtree(repo, ignore_errors=True)
            shutil.copytree(source, snapshot, ignore=shutil.ignore_patterns("nnspec-tiny.json"))
            config = json.loads((snapshot / "config.json").read_text())
            config["_name_or_path"] = hub_id
            (snapshot / "config.json").write_text(json.dumps(config, indent=2))
            (repo / "refs").mkdir(parents=True, exist_ok=True)
            (repo / "refs" / "main").write_text(SNAPSHOT)
            stamp.write_text(str(source))
        ids.append(hub_id)
    return ids


def _environment(hub: Path, workdir: Path, ids: list[str], package: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "HF_HUB_CACHE": str(hub),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "OMP_NUM_THREADS": env.get("OMP_NUM_THREADS", "1"),
        "TOKENIZERS_PARALLELISM": "false",
        "NNTERP_SUITE_WORKDIR": str(workdir),
        "NNTERP_SUITE_MODELS": json.dumps(ids),
        "NNTERP_SUITE_PACKAGE": package,
        "PYTHONPATH": os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    })
    return env


def _outcomes(junit: Path, reasons: Optional[dict[str, str]] = None) -> dict[str, str]:
    """``{"test_file.py::test_name[param]": "passed" | "failed" | "skipped"}`` from a JUnit report;
    each failure's or skip's message goes to ``reasons`` when given."""
    if not junit.is_file():
        raise HarnessError(f"pytest wrote no report at {junit}")
    results = {}
    for case in ElementTree.parse(junit).getroot().iter("testcase"):
        module = case.get("classname", "").rsplit(".", 1)[-1]
        node = f"{module}.py::{case.get('name')}"
        tags = {child.tag for child in case}
        results[node] = "failed" if tags & {"failure", "error"} else "skipped" if "skipped" in tags else "passed"
        if reasons is not None:
            for child in case:
                if child.tag in ("failure", "error", "skipped"):
                    reasons[node] = (child.get("message") or "").strip()
    return results


def run(package: str = "nnspec", python: str = sys.executable, jobs: Optional[str] = None,
        keep: Optional[Path] = None, timeout: float = 1800,
        reasons: Optional[dict[str, str]] = None, pytest_args: tuple[str, ...] = ()) -> dict[str, str]:
    """Run the suite with ``python`` against ``package``; returns each test's outcome (and fills
    ``reasons`` with each failure's or skip's message when given)."""
    if shutil.which(python) is None:
        raise HarnessError(f"--python {python!r}: no such interpreter")
    python = str(Path(python).absolute())  # pytest runs in the suite's folder
    hub = cache_dir() / "hub"
    ids = install_checkpoints(hub)
    source = wheel()
    with tempfile.TemporaryDirectory(prefix="nnterp-suite-") as scratch:
        work = Path(scratch)
        suite = unpack(source, work, package)
        junit = work / "report.xml"
        command = [python, "-m", "pytest", "tests", "-q", "-p", "suite_offline", "-p", "no:cacheprovider",
                   "-o", "addopts=", "--junitxml", str(junit), "-W", "ignore"]
        if jobs:
            command += ["-n", jobs]
        command += list(pytest_args)
        done = subprocess.run(command, cwd=suite, env=_environment(hub, work, ids, package), capture_output=True,
                              text=True, timeout=timeout)
        if keep is not None:
            keep.write_text(done.stdout[-200000:] + "\n" + done.stderr[-50000:])
        if done.returncode not in (0, 1):
            raise HarnessError(f"pytest exited with {done.returncode}: {(done.stdout + done.stderr).strip()[-2000:]}")
        return _outcomes(junit, reasons)


def baseline() -> dict[str, str]:
    """nnterp's own outcome for each test, as measured into baseline.json."""
    return json.loads(BASELINE_FILE.read_text())["outcomes"]


def differences() -> dict[str, str]:
    """``{test id: why}`` for the tests nnterp passes and nnspec fails by design (differences.toml:
    each group names the section of docs/migrating-from-nnterp.md that explains it)."""
    table = tomllib.loads(DIFFERENCES_FILE.read_text())
    found: dict[str, str] = {}
    for group in table.get("difference", []):
        for test in group["tests"]:
            if test in found:
                raise HarnessError(f"{DIFFERENCES_FILE.name}: {test} is listed twice")
            found[test] = f"{group['why']} (docs/migrating-from-nnterp.md#{group['section']})"
    return found


def compare(results: dict[str, str]) -> dict[str, list[str]]:
    """Where nnspec stands against nnterp's baseline: ``regressions`` (nnterp passes, nnspec does
    not, and no documented difference explains it), ``stale`` (a documented difference that no
    longer fails: the list must be updated), ``unknown`` (a test missing from one of the runs) and
    ``gains`` (nnspec passes where nnterp does not)."""
    base, allowed = baseline(), differences()
    return {
        "regressions": sorted(t for t, o in base.items() if o == "passed" and results.get(t) != "passed" and t not in allowed),
        "stale": sorted(t for t in allowed if results.get(t) == "passed"),
        "unknown": sorted(set(base) ^ set(results)),
        "gains": sorted(t for t, o in results.items() if o == "passed" and base.get(t) != "passed"),
    }


def summary(results: dict[str, str]) -> dict[str, int]:
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    for outcome in results.values():
        counts[outcome] += 1
    counts["total"] = len(results)
    return counts


def _installed(python: str, name: str) -> str:
    done = subprocess.run([python, "-c", f"import importlib.metadata as m; print(m.version({name!r}))"],
                          capture_output=True, text=True)
    return done.stdout.strip() or "?"


def write_baseline(python: str, jobs: Optional[str]) -> dict[str, str]:
    """Measure nnterp itself (``python`` must have nnterp, pytest, pytest-xdist and PyYAML installed)."""
    results = run(package="nnterp", python=python, jobs=jobs)
    BASELINE_FILE.write_text(json.dumps({
        "measured": datetime.date.today().isoformat(),
        "versions": {name: _installed(python, name) for name in ("nnterp", "nnsight", "transformers", "torch")},
        "summary": summary(results),
        "outcomes": dict(sorted(results.items())),
    }, indent=1) + "\n")
    return results


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.nnterp_suite.harness", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    one = sub.add_parser("run", help="run the suite against nnspec and print the counts")
    one.add_argument("--jobs", default=None, help="pytest-xdist workers (default: none)")
    one.add_argument("--out", type=Path, help="write every outcome to this JSON file")
    one.add_argument("--log", type=Path, help="write pytest's output to this file")
    base = sub.add_parser("baseline", help="measure nnterp itself and rewrite baseline.json")
    base.add_argument("--python", required=True, help="an interpreter with nnterp installed")
    base.add_argument("--jobs", default=None)
    args = parser.parse_args(argv)
    try:
        if args.command == "baseline":
            results = write_baseline(args.python, args.jobs)
        else:
            reasons: dict[str, str] = {}
            results = run(jobs=args.jobs, keep=args.log, reasons=reasons)
            if args.out:
                report = {test: [outcome, reasons.get(test, "")] for test, outcome in sorted(results.items())}
                args.out.write_text(json.dumps(report, indent=1) + "\n")
            found = compare(results)
            print(json.dumps({"nnspec": summary(results), "nnterp": summary(baseline()),
                              **{k: len(v) for k, v in found.items()}}))
            for kind in ("regressions", "stale", "unknown"):
                for test in found[kind]:
                    print(f"{kind}: {test} ({results.get(test, 'absent')}: {reasons.get(test, '')[:160]})")
            return 1 if found["regressions"] or found["stale"] or found["unknown"] else 0
    except HarnessError as exc:
        print(f"nnterp suite: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary(results)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
