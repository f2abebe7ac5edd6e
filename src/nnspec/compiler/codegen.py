"""Rendering specs into ``nnspec.generated``: one adapter module per spec plus the registry.

Rendering happens entirely in memory first; only a complete, valid set of files is written.

The compiler only ever replaces what it wrote itself. Every folder it writes holds a manifest
(:data:`MANIFEST`) listing each file with its SHA-256, and every generated module starts with
:data:`HEADER`; an output folder holding anything else (a file that is neither, a sub-folder other
than ``__pycache__``, a link) is refused, not replaced. The new files are written to a staging
folder next to the output (``.NAME-new-*``, manifest first) which then takes the output's place:
in one atomic exchange where the platform offers it, else in two renames through a backup folder
(``.NAME-old-*``). A compile killed in between is repaired by the next ``nnspec compile`` or
``nnspec compile --check`` (:func:`recover`): a missing output folder is restored from a complete
staged or backup folder, and stale staging folders are removed when they hold only the
compiler's own files; anything else is left where it is.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import pprint
import re
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import jinja2

from ..errors import CompileDriftError, CompileOutputError, SpecFolderError, SpecValidationError, closest
from ..paths import GENERATED_DIR as PACKAGE_GENERATED_DIR
from .describe import Described, changed_records, entry_records, per_layer_entries, records
from .loader import BUNDLED_DIR, LoadedSpec, deep_merge, format_loc, load_all, locate, read_toml
from .rename import rename_dict
from .schema import FALLBACKS, Condition, Spec

#: Where the bundled adapters live.
GENERATED_DIR = PACKAGE_GENERATED_DIR
_TEMPLATES = Path(__file__).resolve().parent / "templates"


def _py(value: Any, indent: int = 0, block: bool = False) -> str:
    """A deterministic Python literal for ``value``.

    Continuation lines are indented by ``indent`` spaces; with ``block`` the first line is too.
    """
    lines = pprint.pformat(value, width=100 - indent, sort_dicts=False).splitlines()
    pad = " " * indent
    return "\n".join((pad + line) if (i or block) else line for i, line in enumerate(lines))


def class_name(spec_name: str) -> str:
    """``gpt_neox`` -> ``GptNeoxAdapter``."""
    return "".join(part.capitalize() for part in spec_name.replace("-", "_").split("_")) + "Adapter"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(_TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["py"] = _py
    env.filters["pyblock"] = lambda value, indent: _py(value, indent, block=True)
    return env


def _check_model_types(specs: dict[str, LoadedSpec]) -> list[tuple[str, str]]:
    owners: dict[str, str] = {}
    for name, loaded in specs.items():
        for model_type in loaded.spec.model_types:
            if model_type in owners:
                raise SpecValidationError(
                    str(loaded.file),
                    [f"model_types: {model_type!r} is already served by spec {owners[model_type]!r}"],
                )
            owners[model_type] = name
    return sorted(owners.items())


def spec_folder(spec_dir: Path) -> Path:
    """``spec_dir`` if it is a folder holding at least one ``*.toml`` spec, else :class:`SpecFolderError`.

    The message names the folder and, where a sibling folder's name is close, suggests it.
    """
    spec_dir = Path(spec_dir)
    if spec_dir.is_dir():
        if any(p.is_file() for p in spec_dir.glob("*.toml")):
            return spec_dir
        problem = "holds no *.toml spec file"
    elif spec_dir.exists():
        problem = "is not a folder"
    else:
        problem = "does not exist"
    hint = ""
    parent = spec_dir.parent
    try:
        siblings = [d.name for d in parent.iterdir() if d.is_dir() and d.name != spec_dir.name] if parent.is_dir() else []
    except OSError:
        siblings = []
    found = closest(spec_dir.name, siblings)
    if found:
        hint = " (did you mean " + ", ".join(repr(str(parent / f)) for f in found) + "?)"
    raise SpecFolderError(f"spec folder {spec_dir} {problem}{hint}; give --specs a folder of spec files")


def _record(value: Any) -> str:
    """A record as the constructor call that builds it, stating only what differs from the defaults."""
    if not dataclasses.is_dataclass(value):
        return repr(value)
    parts = []
    for i, field in enumerate(dataclasses.fields(value)):
        item = getattr(value, field.name)
        if field.default is not dataclasses.MISSING and item == field.default:
            continue
        text = repr(item)
        parts.append(text if i < 2 and field.default is dataclasses.MISSING else f"{field.name}={text}")
    return f"{type(value).__name__}({', '.join(parts)})"


class _Lines:
    """Finds the spec line of a key path for the comments of one adapter."""

    def __init__(self, loaded: LoadedSpec) -> None:
        self.files = loaded.files
        self.raws = [read_toml(f) for f in loaded.files]
        # Where each override of the flattened spec was written: (file index, index in that file).
        origins: list[tuple[int, int]] = []
        for n, raw in enumerate(self.raws):
            inherited = origins if raw.get("inherit_overrides", True) or n == 0 else []
            origins = inherited + [(n, j) for j in range(len(raw.get("overrides", [])))]
        self.override_origins = origins

    def where(self, keys: Any) -> str:
        found: list[str] = []
        for key in keys:
            # A list holds alternatives: the first one a spec states.
            for alternative in key if isinstance(key, list) else [key]:
                at = locate(self.files, tuple(alternative), self.raws)
                if at is not None:
                    found.append(f"{at} {format_loc(tuple(alternative))}")
                    break
        return "; ".join(found) if found else "default"

    def override(self, k: int, *key: Any) -> str:
        n, j = self.override_origins[k]
        at = locate(self.files[: n + 1], ("overrides", j) + key, self.raws[: n + 1]) or self.files[n].name
        return at


def _condition(when: Condition) -> str:
    """An override's ``when`` as a Python condition over ``config`` and ``versions``."""
    tests = [f"config_is(config, {key!r}, {value!r})" for key, value in when.config.items()]
    for package in ("transformers", "nnsight"):
        specifier = getattr(when, package)
        if specifier is not None:
            tests.append(f"version_in(versions, {package!r}, {specifier!r})")
    if when.attn_implementation is not None:
        tests.append(f"attn_implementation_is(config, {when.attn_implementation!r})")
    return " and ".join(tests)


def _override_branches(loaded: LoadedSpec, lines: _Lines) -> list[dict[str, Any]]:
    spec = loaded.spec
    base = spec.model_dump(exclude={"overrides"})
    branches = []
    for k, override in enumerate(spec.overrides):
        patched = Spec.model_validate(deep_merge(base, override.set))
        grouped: dict[str, list[str]] = {}
        for d in changed_records(spec, patched):
            grouped.setdefault(_record(d.record), []).append(d.name)
        changed = [f"{' = '.join(names)} = {value}" for value, names in grouped.items()]
        branches.append({
            "where": lines.override(k),
            "condition": _condition(override.when),
            "changed": changed,
            "patch": override.set,
        })
    return branches


def _rows(described: list[Described], lines: _Lines, alias: bool = False) -> list[dict[str, str]]:
    """One row per record; with ``alias``, a ``mixers_*`` record equal to its ``attentions_*`` one
    (the token mixer is the attention) is written as that name."""
    rows = []
    written: dict[str, Any] = {}
    for d in described:
        twin = d.name.replace("mixers", "attentions", 1) if d.name.startswith("mixers") else None
        if alias and twin in written and written[twin] == d.record:
            rows.append({"name": d.name, "value": twin, "where": f"the token mixer is the attention: as {twin}"})
        else:
            rows.append({"name": d.name, "value": _record(d.record), "where": lines.where(d.keys)})
        written[d.name] = d.record
    return rows


def _spec_json(spec: Spec) -> str:
    """The flattened spec as a Python string literal of indented JSON (parsed on first use only)."""
    text = json.dumps(spec.model_dump(mode="json", exclude_defaults=True), indent=1, ensure_ascii=False)
    quotes = "'" * 3
    if quotes in text or text.endswith("'"):
        return repr(text)
    return "r" + quotes + text + quotes


#: What a generated module may import, by module; it imports only the names it uses.
_OFFERED = {
    "typing": ["Any", "Optional"],
    "nnspec.compiler.records": ["Module", "Read", "Refused", "Scores", "Unembed"],
    "nnspec.runtime.adapter": ["Adapter", "attn_implementation_is", "config_is", "read_config", "version_in"],
}


def _imports(body: str) -> dict[str, list[str]]:
    code = "\n".join(line.split("  # ", 1)[0] for line in body.splitlines() if not line.lstrip().startswith("#"))
    return {module: [n for n in names if re.search(rf"\b{n}\b", code)] for module, names in _OFFERED.items()}


def render_adapter(loaded: LoadedSpec, source: str) -> str:
    """The source text of one adapter module for a loaded spec (``source``: how it names its file)."""
    spec = loaded.spec
    name = spec.name
    lines = _Lines(loaded)
    per_layer = spec.attention.per_layer
    entries = []
    if per_layer is not None:
        for entry in per_layer_entries(spec):
            entries.append({"entry": entry, "rows": _rows(entry_records(spec, entry), lines)})
    config_keys = {}
    for attribute in ("num_layers", "num_heads", "num_kv_heads", "hidden_size", "vocab_size", "head_dim"):
        key = spec.config.key(attribute)
        if spec.config.has_fallback(attribute):
            key = f"{key} (absent: {FALLBACKS[attribute]})"
        config_keys[attribute] = {"key": key, "where": lines.where([("config", attribute)])}
    values = dict(
        name=name,
        source=source,
        lineage=loaded.lineage,
        description=spec.description,
        model_types=spec.model_types,
        class_name=class_name(name),
        config_keys=config_keys,
        rows=_rows(records(spec), lines, alias=True),
        per_layer=None if per_layer is None else {
            "key": per_layer.config_key, "where": lines.where([("attention", "per_layer")]), "entries": entries,
        },
        overrides=_override_branches(loaded, lines),
        requires=None if spec.requires is None else {
            "transformers": spec.requires.transformers, "reason": spec.requires.reason,
            "where": lines.where([("requires", "transformers")]),
        },
        spec_json=_spec_json(spec),
        rename=rename_dict(spec),
    )
    template = _environment().get_template("adapter.py.j2")
    first = template.render(**values, imports=_OFFERED)
    body = first.split("\n\n\nclass ", 1)[1]
    return template.render(**values, imports=_imports(body))


def render(spec_dir: Path = BUNDLED_DIR) -> dict[str, str]:
    """Every file of the generated package, by file name, rendered from the specs in ``spec_dir``.

    Raises:
        SpecFolderError: ``spec_dir`` does not exist or holds no spec.
    """
    specs = load_all(spec_folder(spec_dir))
    env = _environment()
    files: dict[str, str] = {}
    entries = []
    for name, loaded in specs.items():
        cls = class_name(name)
        files[f"{name}.py"] = render_adapter(loaded, loaded.file.name)
        entries.append({"name": name, "module": name, "class_name": cls})
    files["__init__.py"] = env.get_template("registry.py.j2").render(
        specs=entries, model_types=_check_model_types(specs)
    )
    return files


def drift(spec_dir: Path = BUNDLED_DIR, out_dir: Path = GENERATED_DIR) -> list[str]:
    """Files in ``out_dir`` that differ from a fresh render: one line per file (empty: no drift)."""
    rendered = render(spec_dir)
    present = {p.name for p in out_dir.glob("*.py")} if out_dir.is_dir() else set()
    lines = []
    for name, text in sorted(rendered.items()):
        path = out_dir / name
        if name not in present:
            lines.append(f"{path}: missing")
        elif path.read_text(encoding="utf-8") != text:
            lines.append(f"{path}: differs from its spec (edited by hand, or the spec changed)")
    for name in sorted(present - set(rendered)):
        lines.append(f"{out_dir / name}: no spec produces this file")
    return lines


def check(spec_dir: Path = BUNDLED_DIR, out_dir: Path = GENERATED_DIR) -> None:
    """Raise :class:`CompileDriftError` when ``out_dir`` is not what the specs compile to.

    An interrupted earlier compile is repaired first (:func:`recover`).
    """
    spec_folder(spec_dir)
    recover(out_dir)
    lines = drift(spec_dir, out_dir)
    if lines:
        raise CompileDriftError(
            "generated adapters are out of date; run `nnspec compile`:\n" + "\n".join(f"  {l}" for l in lines)
        )


# -- what the compiler owns ---------------------------------------------------------------------------

#: The manifest every folder written by the compiler holds: ``{"generator", "files": {name: sha256}}``.
MANIFEST = ".nnspec-compile.json"
#: How every generated module begins.
HEADER = "# GENERATED by `nnspec compile`"
_GENERATOR = "nnspec compile"
_CACHE = "__pycache__"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _manifest_text(rendered: dict[str, str]) -> str:
    files = {name: _sha256(text.encode("utf-8")) for name, text in sorted(rendered.items())}
    return json.dumps({"generator": _GENERATOR, "files": files}, indent=1) + "\n"


def _read_manifest(folder: Path) -> Optional[dict[str, str]]:
    """The ``files`` of ``folder``'s manifest, or None when it has none the compiler wrote."""
    path = folder / MANIFEST
    try:
        if not stat.S_ISREG(path.lstat().st_mode):
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("generator") != _GENERATOR or not isinstance(data.get("files"), dict):
        return None
    files = data["files"]
    if not all(isinstance(k, str) and isinstance(v, str) and "/" not in k and os.sep not in k for k, v in files.items()):
        return None
    return files


def _is_own_file(path: Path, manifest: Optional[dict[str, str]]) -> bool:
    """Whether ``path`` (a plain file) is one the compiler wrote, judged by its content."""
    try:
        if not stat.S_ISREG(path.lstat().st_mode):
            return False
        data = path.read_bytes()
    except OSError:
        return False
    if manifest is not None and manifest.get(path.name) == _sha256(data):
        return True
    return path.suffix == ".py" and data.startswith(HEADER.encode("utf-8"))


def foreign_entries(folder: Path) -> list[str]:
    """Names of the entries of ``folder`` the compiler did not write (sorted; empty: all its own).

    Its own: its manifest, files whose SHA-256 the manifest lists, ``*.py`` files starting with
    :data:`HEADER`, and a ``__pycache__`` folder.
    """
    manifest = _read_manifest(folder)
    foreign = []
    for entry in sorted(folder.iterdir()):
        if entry.name == MANIFEST and manifest is not None:
            continue
        if entry.name == _CACHE and entry.is_dir() and not entry.is_symlink():
            continue
        if not _is_own_file(entry, manifest):
            foreign.append(entry.name + ("/" if entry.is_dir() and not entry.is_symlink() else ""))
    return foreign


def _complete(folder: Path, legacy: bool) -> bool:
    """Whether ``folder`` is a whole generated package: its manifest's files all present and intact
    (or, with ``legacy``, a folder without manifest holding a generated ``__init__.py`` and only
    generated files)."""
    manifest = _read_manifest(folder)
    if manifest is None:
        return legacy and (folder / "__init__.py").is_file() and not foreign_entries(folder) and \
            _is_own_file(folder / "__init__.py", None)
    if "__init__.py" not in manifest:
        return False
    for name, digest in manifest.items():
        try:
            if _sha256((folder / name).read_bytes()) != digest:
                return False
        except OSError:
            return False
    return not foreign_entries(folder)


def _discard(folder: Path) -> bool:
    """Remove ``folder`` if it holds only the compiler's own files; True when it is gone."""
    if foreign_entries(folder):
        return False
    for entry in folder.iterdir():
        if entry.name == _CACHE and entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    folder.rmdir()
    return True


def _leftovers(out_dir: Path) -> list[Path]:
    """Staging (``.NAME-new-*``) and backup (``.NAME-old-*``) folders an earlier compile left next to ``out_dir``."""
    parent = out_dir.parent
    if not parent.is_dir():
        return []
    found = []
    for kind in ("new", "old"):
        for path in parent.glob(f".{out_dir.name}-{kind}-*"):
            if path.is_dir() and not path.is_symlink():
                found.append(path)
    return found


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``folder`` (POSIX), so two compiles never interleave."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _recover_unlocked(out_dir: Path) -> list[str]:
    notes: list[str] = []
    leftovers = _leftovers(out_dir)
    if not leftovers:
        return notes
    if not out_dir.exists() and not out_dir.is_symlink():
        def newest(paths: list[Path]) -> list[Path]:
            return sorted(paths, key=lambda p: p.stat().st_mtime, reverse=True)

        staged = [p for p in newest(leftovers) if p.name.startswith(f".{out_dir.name}-new-") and _complete(p, legacy=False)]
        backups = [p for p in newest(leftovers) if p.name.startswith(f".{out_dir.name}-old-") and _complete(p, legacy=True)]
        for source in staged + backups:
            os.replace(source, out_dir)
            leftovers.remove(source)
            what = "staged new files" if source in staged else "backup of the previous files"
            notes.append(f"restored {out_dir} from {source.name} (the {what} of an interrupted nnspec compile)")
            break
    for path in leftovers:
        try:
            if _discard(path):
                notes.append(f"removed {path} (left behind by an interrupted nnspec compile)")
            else:
                notes.append(
                    f"left {path} in place: it holds files nnspec compile did not write "
                    f"({', '.join(foreign_entries(path))})"
                )
        except OSError as exc:
            notes.append(f"could not remove {path}: {exc.strerror or exc}")
    return notes


def recover(out_dir: Path = GENERATED_DIR) -> list[str]:
    """Repair what an interrupted compile left next to ``out_dir``; returns one note per action.

    If ``out_dir`` is missing, the newest complete staged folder (else backup folder) replaces
    it; then every staging or backup folder holding only the compiler's own files is removed.
    Folders holding anything else are left in place (and named in a note).
    """
    out_dir = Path(out_dir).resolve()
    if not out_dir.parent.is_dir():
        return []
    with _locked(out_dir.parent):
        return _recover_unlocked(out_dir)


# -- writing --------------------------------------------------------------------------------------------

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap two folders in one atomic step (Linux ``renameat2``); False where unavailable."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    renameat2.restype = ctypes.c_int
    return renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0


def _refuse_foreign(out_dir: Path) -> None:
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise CompileOutputError(f"output folder {out_dir} is a file, not a folder; give --out a folder nnspec may fill")
    foreign = foreign_entries(out_dir)
    if foreign:
        shown = ", ".join(foreign[:10]) + (f" and {len(foreign) - 10} more" if len(foreign) > 10 else "")
        raise CompileOutputError(
            f"output folder {out_dir} holds files nnspec compile did not write ({shown}); "
            "nnspec only replaces a folder of its own generated files: give --out a new or empty folder, "
            "or move those files away"
        )


def write(spec_dir: Path = BUNDLED_DIR, out_dir: Path = GENERATED_DIR) -> list[str]:
    """Render and atomically replace ``out_dir``; returns the names of the files written.

    Raises:
        SpecFolderError: ``spec_dir`` does not exist or holds no spec (nothing is touched).
        CompileOutputError: ``out_dir`` holds files the compiler did not write (nothing is touched).
    """
    rendered = render(spec_dir)  # raises before anything is touched
    out_dir = Path(out_dir).resolve()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with _locked(out_dir.parent):
        _recover_unlocked(out_dir)
        _refuse_foreign(out_dir)
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-new-", dir=out_dir.parent))
        swapped = False
        try:
            # mkdtemp makes a private (0700) folder: give the package the output's (or its parent's) mode.
            os.chmod(staging, stat.S_IMODE((out_dir if out_dir.is_dir() else out_dir.parent).stat().st_mode))
            # The manifest goes first: a staging folder is recognisable as the compiler's from the start.
            (staging / MANIFEST).write_text(_manifest_text(rendered), encoding="utf-8")
            for name, text in rendered.items():
                (staging / name).write_text(text, encoding="utf-8")
            if not out_dir.exists():
                os.replace(staging, out_dir)
            elif _exchange(staging, out_dir):
                swapped = True
                with contextlib.suppress(OSError):  # it now holds the previous files: removed only if all are the compiler's
                    _discard(staging)
            else:
                retired = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-old-", dir=out_dir.parent))
                os.rmdir(retired)
                os.replace(out_dir, retired)
                # A kill here leaves no out_dir: recover() restores it from the staged (or retired) folder.
                os.replace(staging, out_dir)
                with contextlib.suppress(OSError):
                    _discard(retired)
        finally:
            if staging.exists() and not swapped:
                shutil.rmtree(staging, ignore_errors=True)  # this compile's own staging folder
    return sorted(rendered)
