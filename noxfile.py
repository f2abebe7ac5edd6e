"""nox sessions.

- ``tests``: the README's test run (``make test``).
- ``nnterp_suite``: nnterp's own test suite, taken from its published wheel, run against nnspec
  (``make nnterp-suite``; ``make test`` runs it too).
- ``matrix``: the conformance matrix under each supported (transformers, NNsight) pair, in its own
  virtual environment with offline-capable pins (torch from the same constraint as CI). Each run
  writes ``compat-results/<pair>/matrix.json``; a version the registry does not serve is skipped
  and recorded as a gap.
- ``wheel``: builds the wheel, installs it with its ``display`` extra into a fresh environment and
  runs the tour and circuit-analysis notebooks there.
- ``compat``: merges those results into ``docs/compatibility.md`` and the data file shipped with
  the package (``src/nnspec/data/compatibility.json``), which the runtime reads to warn when the
  installed versions were not verified for a spec.

    nox -s matrix                              # every pair
    nox -s "matrix(transformers-5.24.0-nnsight-0.8.1)"      # one pair
    nox -s compat                              # merge and write the table
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True

#: transformers releases users run: the last patch release of 4.45, 4.48, 4.51, 4.53, 4.55 and 4.57,
#: then 5.0, 5.2 (the last whose GPT-2-style blocks return tuples), 5.3, 5.10 and the newest; each
#: with NNsight 0.8.1, the oldest and the newest also with 0.8.0. A third field names a torch other
#: than the pinned CPU build (see ``_torch_gap``).
PAIRS = [
    ("4.45.2", "0.8.1"),
    ("4.45.2", "0.8.0"),
    ("4.48.3", "0.8.1"),
    ("4.51.3", "0.8.1"),
    ("4.53.3", "0.8.1"),
    ("4.55.4", "0.8.1"),
    ("4.57.6", "0.8.1"),
    ("5.0.0", "0.8.1"),
    ("5.2.0", "0.8.1"),
    ("5.3.0", "0.8.1"),
    ("5.10.4", "0.8.1"),
    ("5.24.0", "0.8.1"),
    ("5.24.0", "0.8.0"),
    ("5.24.0", "0.8.1", "2.4.1"),
]
RESULTS = Path("compat-results")
TORCH = next(line.strip() for line in open("constraints.txt") if line.startswith("torch=="))


@nox.session(python=False)
def tests(session: nox.Session) -> None:
    """Compile drift check, unit tests and the conformance matrix (same as `make test`)."""
    session.run("make", "test", external=True)


@nox.session(python=False)
def nnterp_suite(session: nox.Session) -> None:
    """nnterp's published test suite run against nnspec (also part of `make test`)."""
    session.run("make", "nnterp-suite", external=True)


@nox.session(python=False)
def demo(session: nox.Session) -> None:
    """The conformance matrix over every spec with its report (same as `make demo`)."""
    session.run("make", "demo", external=True)


def _pair_id(pair: tuple[str, ...]) -> str:
    name = f"transformers-{pair[0]}-nnsight-{pair[1]}"
    return name + (f"-torch-{pair[2]}" if len(pair) > 2 else "")


def _torch_gap(session: nox.Session, torch: str) -> str:
    """Why ``torch`` cannot be tested here ('' when it can): the matrix runs on CPU builds only, so
    a release that the registry serves only as a CUDA build (a large wheel that pulls several GB of
    nvidia-* packages) is a gap. pip's own resolution report says which build it would install."""
    report = Path(session.create_tmp()) / "torch-report.json"
    session.run("python", "-m", "pip", "install", "--quiet", "--dry-run", "--no-deps", "--ignore-installed",
                "--report", str(report), f"torch=={torch}", silent=True)
    chosen = json.loads(report.read_text(encoding="utf-8"))["install"][0]
    wheel = chosen["download_info"]["url"].rsplit("/", 1)[-1].split("#")[0]
    cuda = sorted(d.split(" ")[0] for d in chosen["metadata"].get("requires_dist", []) if d.startswith("nvidia-"))
    if "+cpu" in chosen["metadata"]["version"] or not cuda:
        return ""
    return (f"torch {torch}: the package registry serves only the CUDA build {wheel} for this platform, which "
            f"requires {len(cuda)} nvidia-* packages ({', '.join(cuda[:3])}, ...); no CPU wheel, so it is not tested")


@nox.session
@nox.parametrize("pair", PAIRS, ids=[_pair_id(p) for p in PAIRS])
def matrix(session: nox.Session, pair: tuple[str, ...]) -> None:
    """The conformance matrix with one transformers, one NNsight and one torch release."""
    started = time.perf_counter()
    transformers, nnsight = pair[:2]
    torch = pair[2] if len(pair) > 2 else TORCH.split("==")[1]
    out = RESULTS / _pair_id(pair)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gap.json").unlink(missing_ok=True)
    gap = {"transformers": transformers, "nnsight": nnsight, "torch": torch}
    if torch != TORCH.split("==")[1]:
        reason = _torch_gap(session, torch)
        if reason:
            (out / "gap.json").write_text(json.dumps({**gap, "reason": reason}), encoding="utf-8")
            session.skip(reason)
    session.install(f"torch=={torch}")
    session.install("-e", ".", silent=True)  # nnspec and its other dependencies
    try:
        # The pair then replaces the releases the declared ranges picked: the matrix also checks
        # pairs outside those ranges (pip only warns that nnspec's own range is not met).
        session.install(f"transformers=={transformers}", f"nnsight=={nnsight}", silent=True)
    except nox.command.CommandFailed:
        reason = f"the package registry does not serve transformers {transformers} with nnsight {nnsight} (pip could not install them)"
        (out / "gap.json").write_text(json.dumps({**gap, "reason": reason}), encoding="utf-8")
        session.skip(reason)
    session.run(
        "python", "-m", "nnspec", "matrix", "--jobs", os.environ.get("NNSPEC_JOBS", "2"), "--quiet", "--out", str(out),
        env={"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}, success_codes=[0, 1],
    )
    # The session's whole time (environment included), for the timing line of the compatibility page.
    (out / "session.json").write_text(json.dumps({"seconds": time.perf_counter() - started}), encoding="utf-8")


@nox.session
def wheel(session: nox.Session) -> None:
    """Build the wheel, install it with its ``display`` extra into a fresh environment, and run the
    tour and circuit-analysis notebooks there (outside the source tree)."""
    dist = Path(session.create_tmp()) / "dist"
    session.install(TORCH)
    session.run("python", "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), ".", silent=True)
    wheel_file = next(dist.glob("nnspec-*.whl"))
    session.install("-c", "constraints.txt", f"{wheel_file}[display]", "nbclient", "nbformat", "ipykernel")
    notebooks = [str(Path("notebooks") / name) for name in ("tour.ipynb", "circuit_analysis.ipynb")]
    with session.chdir(session.create_tmp()):
        session.run("python", str(Path(__file__).resolve().parent / "tests" / "wheel_check.py"),
                    *[str(Path(__file__).resolve().parent / n) for n in notebooks])


@nox.session(python=False)
def compat(session: nox.Session) -> None:
    """Merge compat-results/ into docs/compatibility.md and the shipped compatibility data."""
    session.run(
        sys.executable, "-m", "nnspec", "compat", "--results", str(RESULTS),
        "--doc", "docs/compatibility.md", "--data", "src/nnspec/data/compatibility.json",
    )
