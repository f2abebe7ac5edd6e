"""nox sessions. `nox -s tests` is the README's test run in a fresh environment."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests"]


@nox.session(python=False)
def tests(session: nox.Session) -> None:
    """Compile drift check, unit tests and the conformance matrix (same as `make test`)."""
    session.run("make", "test", external=True)


@nox.session(python=False)
def demo(session: nox.Session) -> None:
    """The conformance matrix over every spec with its report (same as `make demo`)."""
    session.run("make", "demo", external=True)
