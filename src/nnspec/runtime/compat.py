"""Which transformers and NNsight versions each spec is verified on, checked when a model loads.

The data file shipped with the package is merged from matrix runs under several version pairs
(:mod:`nnspec.verification.compatibility`); :func:`warn_if_unverified` warns once per spec when the
installed versions are not among those verified for it, naming the nearest verified ones, and
refuses (:class:`~nnspec.errors.VersionFailureError`) a pair verified as failing for it unless the
caller allows unverified pairs.
"""

from __future__ import annotations

import json
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

from ..errors import CompatibilityDataError, NnspecWarning, VersionFailureError
from ..paths import data_path

#: Version of compatibility.json.
SCHEMA = 1
DATA_FILE = data_path("compatibility.json")


def version_key(version: str) -> tuple:
    """A sort key for a version string (an unparsable one sorts first)."""
    from packaging.version import InvalidVersion, Version

    try:
        return (Version(version.split("+")[0]),)
    except InvalidVersion:
        return (Version("0"),)


def load(path: Optional[Path] = None) -> Optional[dict[str, Any]]:
    """The compatibility data at ``path`` (default: the file shipped with the package, ``DATA_FILE``);
    ``None`` if absent; each file is read once; refuses an unknown layout."""
    return _read(path if path is not None else DATA_FILE)


@lru_cache(maxsize=4)
def _read(path: Path) -> Optional[dict[str, Any]]:
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("schema") != SCHEMA:
        raise CompatibilityDataError(f"{path}: compatibility schema {data.get('schema')!r}, expected {SCHEMA}; rerun `nox -s compat`")
    return data


_warned: set[tuple[str, str, str]] = set()


def unserved_release(what: str, specifier: Optional[str], reason: str, transformers: Optional[str]) -> str:
    """Why ``transformers`` is outside the releases ``what`` (``"spec 'jamba'"``, ``"config 'org/name'"``)
    serves: ``specifier`` is a PEP 440 set stated with ``reason``; '' when it is inside, or when
    either is unknown."""
    if specifier is None or transformers is None:
        return ""
    from packaging.specifiers import SpecifierSet

    if SpecifierSet(specifier).contains(version_key(transformers)[0], prereleases=True):
        return ""
    return f"{what} serves transformers {specifier} only, not {transformers}: {reason}"


def refuse_unserved(spec: str, specifier: Optional[str], reason: str, transformers: Optional[str],
                    allow_unverified: bool = False) -> Optional[str]:
    """Before a model loads: raise :class:`~nnspec.errors.VersionFailureError` when the installed
    transformers is outside the releases the spec serves (warn instead with ``allow_unverified``).
    Returns the warning's message (None when inside)."""
    why = unserved_release(f"spec {spec!r}", specifier, reason, transformers)
    if not why:
        return None
    message = f"nnspec: {why}"
    if not allow_unverified:
        raise VersionFailureError(
            message + f". Install transformers{specifier}, or pass allow_unverified=True to StandardizedTransformer "
            "to load anyway."
        )
    warnings.warn(message, NnspecWarning, stacklevel=3)
    return message


def _distance(version: str, target: str) -> tuple[int, int, int]:
    v, t = version_key(version)[0], version_key(target)[0]
    return (int(v.major != t.major), abs(v.minor - t.minor), abs(v.micro - t.micro))


def verified_pairs(spec: str, data: dict[str, Any]) -> list[tuple[str, str]]:
    return [(r["transformers"], r["nnsight"]) for r in data["runs"] if r["specs"].get(spec, {}).get("status") == "pass"]


def failing_rows(spec: str, transformers: str, nnsight: str, data: dict[str, Any]) -> list[str]:
    """The rows (``"<checkpoint> <check>: <error>"``) that failed for ``spec`` in a run of exactly this
    transformers and NNsight pair; empty when no such run failed for it."""
    rows: list[str] = []
    for run in data["runs"]:
        entry = run["specs"].get(spec, {})
        if (run["transformers"], run["nnsight"]) == (transformers, nnsight) and entry.get("status") == "fail":
            rows += [f"{name}: {error.splitlines()[0][:160] if error else ''}" for name, error in entry["failed"].items()]
    return rows


def warn_if_unverified(
    spec: str,
    transformers: Optional[str],
    nnsight: Optional[str],
    data: Optional[dict[str, Any]] = None,
    allow_unverified: bool = False,
) -> Optional[str]:
    """Check the installed pair against the verified ones for ``spec`` before a model loads.

    A pair that passed says nothing. A pair never run warns once per (spec, versions), naming the
    two nearest verified pairs. A pair whose run failed for ``spec`` raises
    :class:`~nnspec.errors.VersionFailureError` naming the failing rows, or warns with them when
    ``allow_unverified`` is True. Returns the message (None when silent)."""
    data = data if data is not None else load()
    if data is None or not data["runs"] or transformers is None or nnsight is None:
        return None
    if not any(spec in run["specs"] for run in data["runs"]):
        return None  # not a spec the shipped runs cover (a user's spec file): nothing to say
    key = (spec, transformers, nnsight)
    verified = verified_pairs(spec, data)
    if (transformers, nnsight) in verified:
        return None
    failed = failing_rows(spec, transformers, nnsight, data)
    if verified:
        nearest = sorted(verified, key=lambda pair: _distance(pair[0], transformers))[:2]
        hint = "; verified on " + ", ".join(f"transformers {t} with nnsight {n}" for t, n in nearest)
    else:
        hint = "; no verified version pair passes for it"
    if failed:
        shown = "; ".join(failed[:5]) + (f"; and {len(failed) - 5} more" if len(failed) > 5 else "")
        message = (
            f"nnspec: spec {spec!r} is verified as FAILING on transformers {transformers} with nnsight {nnsight} "
            f"({len(failed)} failing rows: {shown}){hint}."
        )
        if not allow_unverified:
            raise VersionFailureError(
                message + " Install a verified pair, or pass allow_unverified=True to StandardizedTransformer to load anyway."
            )
    else:
        message = (
            f"nnspec: spec {spec!r} is not verified on transformers {transformers} with nnsight {nnsight}{hint}. "
            "Run `nnspec check MODEL` to check this model here."
        )
    if key in _warned:
        return None
    _warned.add(key)
    warnings.warn(message, NnspecWarning, stacklevel=3)
    return message
