"""Which transformers and NNsight versions each spec is verified on, checked when a model loads.

The data file shipped with the package is merged from matrix runs under several version pairs
(:mod:`nnspec.verification.compatibility`); :func:`warn_if_unverified` warns once per spec when the
installed versions are not among those verified for it, naming the nearest verified ones.
"""

from __future__ import annotations

import json
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

from ..errors import CompatibilityDataError, NnspecWarning
from ..paths import data_path

#: Version of compatibility.json.
SCHEMA = 1
DATA_FILE = data_path("compatibility.json")


def _version_key(version: str) -> tuple:
    from packaging.version import InvalidVersion, Version

    try:
        return (Version(version.split("+")[0]),)
    except InvalidVersion:
        return (Version("0"),)


@lru_cache(maxsize=4)
def load(path: Path = DATA_FILE) -> Optional[dict[str, Any]]:
    """The shipped compatibility data (``None`` if absent; read once); refuses an unknown layout."""
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("schema") != SCHEMA:
        raise CompatibilityDataError(f"{path}: compatibility schema {data.get('schema')!r}, expected {SCHEMA}; rerun `nox -s compat`")
    return data


_warned: set[tuple[str, str, str]] = set()


def _distance(version: str, target: str) -> tuple[int, int, int]:
    v, t = _version_key(version)[0], _version_key(target)[0]
    return (int(v.major != t.major), abs(v.minor - t.minor), abs(v.micro - t.micro))


def verified_pairs(spec: str, data: dict[str, Any]) -> list[tuple[str, str]]:
    return [(r["transformers"], r["nnsight"]) for r in data["runs"] if r["specs"].get(spec, {}).get("status") == "pass"]


def warn_if_unverified(spec: str, transformers: Optional[str], nnsight: Optional[str], data: Optional[dict[str, Any]] = None) -> Optional[str]:
    """Warn once per (spec, versions) when the pair was not verified for ``spec``; returns the message."""
    data = data if data is not None else load()
    if data is None or not data["runs"] or transformers is None or nnsight is None:
        return None
    if not any(spec in run["specs"] for run in data["runs"]):
        return None  # not a spec the shipped runs cover (a user's spec file): nothing to say
    key = (spec, transformers, nnsight)
    verified = verified_pairs(spec, data)
    if (transformers, nnsight) in verified or key in _warned:
        return None
    _warned.add(key)
    if verified:
        nearest = sorted(verified, key=lambda pair: _distance(pair[0], transformers))[:2]
        hint = "; verified on " + ", ".join(f"transformers {t} with nnsight {n}" for t, n in nearest)
    else:
        hint = "; no verified version pair passes for it"
    message = (
        f"nnspec: spec {spec!r} is not verified on transformers {transformers} with nnsight {nnsight}{hint}. "
        "Run `nnspec check MODEL` to check this model here."
    )
    warnings.warn(message, NnspecWarning, stacklevel=3)
    return message
