"""The worker side of the benchmark drivers' JSON-lines conversation, and installed versions."""

from __future__ import annotations

import json
import os
import sys
import traceback
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Callable


def installed_versions(packages: tuple[str, ...]) -> dict[str, str]:
    """Each package's installed version ("not installed" when absent)."""
    out = {}
    for name in packages:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def serve(start: Callable[[], Callable[[dict[str, Any]], Any]]) -> None:
    """Build the request handler with ``start()``, say ready, then answer one JSON request per stdin
    line with one JSON line, until stdin closes.

    The answers go to the real stdout; everything else the process prints (libraries' progress
    bars and warnings) goes to stderr, so it cannot corrupt the conversation. An exception becomes
    ``{"error": "Type: first line"}`` and its traceback goes to stderr.
    """
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    handle = start()
    protocol.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        try:
            answer = handle(json.loads(line))
        except Exception as exc:  # noqa: BLE001 - reported to the driver, which records it
            traceback.print_exc()
            answer = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:400]}
        protocol.write(json.dumps(answer) + "\n")
