"""nox sessions.

- ``tests``: the README's test run (``make test``).
- ``nnterp_suite``: nnterp's own test suite, taken from its published wheel, run against nnspec
  (``make nnterp-suite``; ``make test`` runs it too).
- ``matrix``: the conformance matrix under each supported (transformers, NNsight) pair, in its own
  virtual environment with offline-capable pins (torch from the same constraint as CI). Each run
  writes ``compat-results/<pair>/matrix.json``; a version the registry does not serve is skipped
  and recorded as a gap.
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
from pathlib import Path

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True

#: transformers releases: the last 4.x minor, the last release whose GPT-2 blocks return tuples,
#: the first returning tensors, and the newest; each with NNsight 0.8.1, and the newest with 0.8.0.
PAIRS = [
    ("4.57.6", "0.8.1"),
    ("5.2.0", "0.8.1"),
    ("5.3.0", "0.8.1"),
    ("5.24.0", "0.8.1"),
    ("5.24.0", "0.8.0"),
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


@nox.session
@nox.parametrize("transformers,nnsight", PAIRS, ids=[f"transformers-{t}-nnsight-{n}" for t, n in PAIRS])
def matrix(session: nox.Session, transformers: str, nnsight: str) -> None:
    """The conformance matrix with one transformers and one NNsight release."""
    out = RESULTS / f"transformers-{transformers}-nnsight-{nnsight}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "gap.json").unlink(missing_ok=True)
    session.install(TORCH)
    try:
        session.install(f"transformers=={transformers}", f"nnsight=={nnsight}", "-e", ".", silent=True)
    except nox.command.CommandFailed:
        reason = f"the package registry does not serve transformers {transformers} with nnsight {nnsight} (pip could not install them)"
        (out / "gap.json").write_text(json.dumps({"transformers": transformers, "nnsight": nnsight, "reason": reason}), encoding="utf-8")
        session.skip(reason)
    session.run(
        "python", "-m", "nnspec", "matrix", "--jobs", os.environ.get("NNSPEC_JOBS", "2"), "--quiet", "--out", str(out),
        env={"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}, success_codes=[0, 1],
    )


@nox.session(python=False)
def compat(session: nox.Session) -> None:
    """Merge compat-results/ into docs/compatibility.md and the shipped compatibility data."""
    session.run(
        sys.executable, "-m", "nnspec", "compat", "--results", str(RESULTS),
        "--doc", "docs/compatibility.md", "--data", "src/nnspec/data/compatibility.json",
    )
