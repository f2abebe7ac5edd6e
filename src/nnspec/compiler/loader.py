"""Reading spec files: TOML parsing, ``extends`` inheritance, and errors that point at the file.

Inheritance merges tables key by key (the child wins; an attention source table is replaced
whole), replaces lists and scalars, appends the
child's ``overrides`` after the parent's, and never inherits ``name``, ``extends``,
``model_types``, ``description`` or ``unset``. A child removes an inherited ``tiny.config`` key or
variant by naming it in ``unset`` (``""`` there would be a value, and is refused). Every problem is reported against the file that wrote the
offending key, with the key path and, for an unknown key, the closest valid ones.
"""

from __future__ import annotations

import copy
import re
import sys
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

from pydantic import BaseModel, ValidationError

from ..errors import (
    SpecInheritanceError,
    SpecNotFoundError,
    SpecSyntaxError,
    SpecValidationError,
    did_you_mean,
)
from ..paths import SPECS_DIR
from .schema import NOT_INHERITED, UNSETTABLE, Override, Spec

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

#: The specs shipped with nnspec.
BUNDLED_DIR = SPECS_DIR


@dataclass(frozen=True)
class LoadedSpec:
    """A validated spec with inheritance applied.

    Attributes:
        spec: the flattened spec (everything inherited is stated).
        file: the spec's own file.
        lineage: spec names from the root ancestor to this spec.
        files: the files of ``lineage``, in the same order.
    """

    spec: Spec
    file: Path
    lineage: tuple[str, ...]
    files: tuple[Path, ...]


def read_toml(path: Path) -> dict[str, Any]:
    """Parse one TOML file, raising :class:`SpecNotFoundError` or :class:`SpecSyntaxError`."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecNotFoundError(str(path), ["file not found"]) from None
    except UnicodeDecodeError as exc:
        raise SpecSyntaxError(
            str(path), [f"not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); save the spec as UTF-8"]
        ) from None
    except OSError as exc:
        raise SpecNotFoundError(str(path), [f"cannot be read ({exc.strerror or exc})"]) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecSyntaxError(str(path), [f"invalid TOML: {exc}"]) from None


#: Tables replaced whole when restated: a source is one fact, not fields to mix with the parent's.
ATOMIC = {("attention", name) for name in ("probabilities", "queries", "keys", "values", "per_head_output")}


def deep_merge(base: dict[str, Any], patch: dict[str, Any], _path: tuple[str, ...] = ()) -> dict[str, Any]:
    """``base`` with ``patch`` merged over it (tables recursively except :data:`ATOMIC` ones,
    everything else replaced)."""
    merged = copy.deepcopy(base)
    for key, value in patch.items():
        here = _path + (key,)
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and here[-2:] not in ATOMIC:
            merged[key] = deep_merge(merged[key], value, here)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def deletion_markers(raw: dict[str, Any]) -> list[str]:
    """Problems for every ``""`` in a table whose entries ``unset`` removes (``tiny.config``,
    ``variants``, also inside an override's ``set``): an empty string there is not a deletion."""
    places: list[tuple[str, Any]] = [("", raw)]
    for i, override in enumerate(raw.get("overrides") or []):
        if isinstance(override, dict) and isinstance(override.get("set"), dict):
            places.append((f"overrides[{i}].set.", override["set"]))
    problems = []
    for prefix, table in places:
        for path in UNSETTABLE:
            node: Any = table
            for part in path:
                node = node.get(part) if isinstance(node, dict) else None
            if not isinstance(node, dict):
                continue
            for key, value in node.items():
                if value == "":
                    where = ".".join((*path, key))
                    problems.append(
                        f'{prefix}{where}: "" is not a deletion marker; to remove an inherited entry write '
                        f'unset = ["{where}"] at the top of the spec (or drop the key to keep the default)'
                    )
    return problems


def _unset_problems(parent: dict[str, Any], child: dict[str, Any], parent_name: str) -> list[str]:
    """Problems with ``child``'s ``unset`` list against the merged ``parent`` it extends."""
    entries = child.get("unset", [])
    if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
        return [f"unset: expected a list of dotted entries like 'tiny.config.KEY', got {entries!r}"]
    problems = []
    forms = ", ".join(".".join(path) + ".NAME" for path in UNSETTABLE)
    for entry in entries:
        path = next((p for p in UNSETTABLE if tuple(entry.split(".")[: len(p)]) == p and entry.count(".") == len(p)), None)
        if path is None:
            problems.append(f"unset: {entry!r} is not one of {forms}")
            continue
        key = entry.split(".")[-1]
        inherited, stated = parent, child
        for part in path:
            inherited = inherited.get(part, {}) if isinstance(inherited, dict) else {}
            stated = stated.get(part, {}) if isinstance(stated, dict) else {}
        if key not in inherited:
            choices = did_you_mean(key, inherited) if isinstance(inherited, dict) else ""
            problems.append(f"unset: {entry!r}: the parent spec {parent_name!r} sets no such entry{choices}")
        if key in stated:
            problems.append(f"unset: {entry!r} is also set by this spec; remove one of the two")
    if len(set(entries)) != len(entries):
        problems.append("unset: an entry is listed twice")
    return problems


def _apply_unset(base: dict[str, Any], entries: list[str]) -> dict[str, Any]:
    """``base`` without the entries ``unset`` names (already checked to exist)."""
    if not entries:
        return base
    base = copy.deepcopy(base)
    for entry in entries:
        *tables, key = entry.split(".")
        node = base
        for part in tables:
            node = node[part]
        del node[key]
    return base


def _inherit(parent: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    base = _apply_unset({k: v for k, v in parent.items() if k not in NOT_INHERITED}, child.get("unset", []))
    merged = deep_merge(base, {k: v for k, v in child.items() if k != "overrides"})
    inherited = list(parent.get("overrides", [])) if child.get("inherit_overrides", True) else []
    overrides = inherited + list(child.get("overrides", []))
    merged.pop("overrides", None)
    if overrides:
        merged["overrides"] = overrides
    for key in NOT_INHERITED:
        merged.pop(key, None)
        if key in child:
            merged[key] = child[key]
    return merged


def format_loc(loc: tuple[Any, ...]) -> str:
    """``("overrides", 0, "when")`` -> ``"overrides[0].when"``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _model_of(annotation: Any) -> Optional[type[BaseModel]]:
    """The pydantic model inside ``Optional[Model]`` / ``Model`` annotations, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def _list_item_model(annotation: Any) -> Optional[type[BaseModel]]:
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation) or (None,)
        return _model_of(item)
    return None


def unknown_keys(raw: dict[str, Any], model: type[BaseModel], prefix: tuple[Any, ...] = ()) -> list[str]:
    """Problems for every key of ``raw`` that ``model`` does not define, recursively."""
    problems: list[str] = []
    fields = model.model_fields
    for key, value in raw.items():
        loc = prefix + (key,)
        if key not in fields:
            problems.append(f"{format_loc(loc)}: unknown key{did_you_mean(key, fields)}")
            continue
        annotation = fields[key].annotation
        sub = _model_of(annotation)
        if sub is not None and isinstance(value, dict):
            problems += unknown_keys(value, sub, loc)
        item = _list_item_model(annotation)
        if item is not None and isinstance(value, list):
            for i, element in enumerate(value):
                if isinstance(element, dict):
                    problems += unknown_keys(element, item, loc + (i,))
                    if item is Override and isinstance(element.get("set"), dict):
                        problems += unknown_keys(element["set"], Spec, loc + (i, "set"))
    return problems


def _has_path(raw: dict[str, Any], loc: tuple[Any, ...]) -> bool:
    node: Any = raw
    for part in loc:
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                return False
        elif not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _describe(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        return "unknown key"
    message = error["msg"]
    if kind.startswith("value_error"):
        message = message.removeprefix("Value error, ")
    given = error.get("input")
    if isinstance(given, (str, int, float, bool, list)) and not isinstance(given, dict):
        message += f" (got {given!r})"
    return message


def validate(merged: dict[str, Any], raws: list[tuple[Path, dict[str, Any]]], key_prefix: str = "") -> Spec:
    """Validate a merged spec dict; blame each problem on the file that wrote the key.

    ``raws`` is the lineage (root first) of (file, raw dict); the leaf file is blamed for missing
    keys and for keys no file wrote.
    """
    try:
        return Spec.model_validate(merged)
    except ValidationError as exc:
        by_file: dict[Path, list[str]] = {}
        for error in exc.errors():
            loc = tuple(error["loc"])
            blamed = raws[-1][0]
            if error["type"] != "missing":
                for file, raw in reversed(raws):
                    if _has_path(raw, loc):
                        blamed = file
                        break
            where = key_prefix + format_loc(loc) if loc else (key_prefix.rstrip(".") or "<spec>")
            by_file.setdefault(blamed, []).append(f"{where}: {_describe(error)}")
        file, problems = next(iter(by_file.items()))
        raise SpecValidationError(str(file), problems) from None


def _find(name: str, dirs: list[Path]) -> Optional[Path]:
    for directory in dirs:
        candidate = directory / f"{name}.toml"
        if candidate.is_file():
            return candidate
    return None


def _available(dirs: list[Path]) -> list[str]:
    return sorted({p.stem for d in dirs if d.is_dir() for p in d.glob("*.toml")})


def load_spec_file(path: Path | str, search_dirs: Optional[list[Path]] = None) -> LoadedSpec:
    """Load and validate one spec file, resolving ``extends`` in its own folder, then the bundled specs.

    Raises:
        SpecNotFoundError, SpecSyntaxError, SpecValidationError, SpecInheritanceError.
    """
    path = Path(path)
    dirs = [path.parent] + [d for d in (search_dirs or [BUNDLED_DIR]) if d != path.parent]
    chain: list[tuple[Path, dict[str, Any]]] = []
    seen: list[str] = []
    current: Optional[Path] = path
    while current is not None:
        raw = read_toml(current)
        problems = unknown_keys(raw, Spec) + deletion_markers(raw)
        if raw.get("unset") and raw.get("extends") is None:
            problems.append("unset: removes inherited entries, so it needs `extends`")
        if problems:
            raise SpecValidationError(str(current), problems)
        name = raw.get("name")
        if name is not None and name != current.stem:
            raise SpecValidationError(
                str(current), [f"name: {name!r} must equal the file name stem {current.stem!r}"]
            )
        seen.append(current.stem)
        chain.append((current, raw))
        parent = raw.get("extends")
        if parent is None:
            break
        if not isinstance(parent, str):
            raise SpecValidationError(str(current), [f"extends: expected a spec name, got {parent!r}"])
        if parent in seen:
            cycle = " -> ".join(seen + [parent])
            raise SpecInheritanceError(str(current), [f"extends cycle: {cycle}"], key="extends")
        found = _find(parent, dirs)
        if found is None:
            raise SpecInheritanceError(
                str(current),
                [f"unknown spec {parent!r}{did_you_mean(parent, _available(dirs))}"],
                key="extends",
            )
        current = found
    chain.reverse()
    merged: dict[str, Any] = {}
    for file, raw in chain:
        if merged:
            problems = _unset_problems(merged, raw, str(merged.get("name")))
            if problems:
                raise SpecValidationError(str(file), problems)
        merged = _inherit(merged, raw) if merged else dict(raw)
    spec = validate(merged, chain)
    base = spec.model_dump(exclude={"overrides"})
    for i, override in enumerate(spec.overrides):
        validate(deep_merge(base, override.set), chain, key_prefix=f"overrides[{i}].set.")
    return LoadedSpec(
        spec=spec,
        file=path,
        lineage=tuple(f.stem for f, _ in chain),
        files=tuple(f for f, _ in chain),
    )


def load_all(directory: Path = BUNDLED_DIR) -> dict[str, LoadedSpec]:
    """Every spec in ``directory``, by name (sorted), each validated with inheritance applied."""
    specs = {}
    for path in sorted(directory.glob("*.toml")):
        specs[path.stem] = load_spec_file(path, [directory])
    return specs


# -- where a key is written -------------------------------------------------------------------------------

_KEY_LINE = re.compile(r"""^\s*((?:[A-Za-z0-9_\-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_\-]+|"[^"]*"|'[^']*'))*)\s*=""")
_HEADER = re.compile(r"""^\s*(\[\[?)\s*([^\[\]]+?)\s*\]\]?""")


def _split_key(key: str) -> tuple[str, ...]:
    parts = re.findall(r"""[A-Za-z0-9_\-]+|"[^"]*"|'[^']*'""", key)
    return tuple(p[1:-1] if p[:1] in "\"'" else p for p in parts)


def key_lines(text: str) -> list[tuple[tuple[Any, ...], int]]:
    """Every table header and ``key = value`` line of a TOML text as ``(key path, line number)``.

    tomllib keeps no positions, so this scans the text: good enough to point a reader at the line
    that states a fact. An array of tables (``[[overrides]]``) numbers its entries: ``("overrides", 0)``.
    """
    found: list[tuple[tuple[Any, ...], int]] = []
    table: tuple[Any, ...] = ()
    arrays: dict[tuple[Any, ...], int] = {}
    in_string = False
    for number, line in enumerate(text.splitlines(), start=1):
        if line.count('"""') % 2 or line.count("'''") % 2:
            in_string = not in_string
            if not in_string:
                continue
        if in_string:
            continue
        header = _HEADER.match(line)
        if header and not _KEY_LINE.match(line):
            path = _split_key(header.group(2))
            if header.group(1) == "[[":
                arrays[path] = arrays.get(path, -1) + 1
                table = path + (arrays[path],)
            else:
                table = path
            found.append((table, number))
            continue
        key = _KEY_LINE.match(line)
        if key:
            found.append((table + _split_key(key.group(1)), number))
    return found


def locate(files: tuple[Path, ...], path: tuple[Any, ...], raws: Optional[list[dict[str, Any]]] = None) -> Optional[str]:
    """``"file.toml:LINE"`` of the line stating ``path`` (e.g. ``("attention", "module")``) in the
    last of ``files`` (root first) whose TOML states it; None when no file states it (a default).

    The line is the closest one found by key: the key's own line, else the line of the nearest
    enclosing table or inline table.
    """
    raws = raws if raws is not None else [read_toml(f) for f in files]
    for file, raw in reversed(list(zip(files, raws))):
        if not _has_path(raw, path):
            continue
        best: Optional[tuple[int, int]] = None
        for key, number in key_lines(file.read_text(encoding="utf-8")):
            if len(key) <= len(path) and tuple(path[: len(key)]) == key:
                if best is None or len(key) > best[0]:
                    best = (len(key), number)
        return f"{file.name}:{best[1]}" if best else file.name
    return None
