"""Rendering specs into ``nnspec.generated``: one adapter module per spec plus the registry.

Rendering happens entirely in memory first; only a complete, valid set of files is written, and it
replaces the output folder in one rename, so a failed compile leaves the folder as it was.
"""

from __future__ import annotations

import os
import pprint
import shutil
import tempfile
from pathlib import Path
from typing import Any

import jinja2

from ..errors import CompileDriftError, SpecValidationError
from ..runtime.adapter import rename_dict
from .loader import BUNDLED_DIR, LoadedSpec, load_all

#: Where the bundled adapters live.
GENERATED_DIR = Path(__file__).resolve().parent.parent / "generated"
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


def render(spec_dir: Path = BUNDLED_DIR) -> dict[str, str]:
    """Every file of the generated package, by file name, rendered from the specs in ``spec_dir``."""
    specs = load_all(spec_dir)
    env = _environment()
    adapter = env.get_template("adapter.py.j2")
    files: dict[str, str] = {}
    entries = []
    for name, loaded in specs.items():
        spec = loaded.spec
        cls = class_name(name)
        files[f"{name}.py"] = adapter.render(
            name=name,
            source=loaded.file.name,
            lineage=loaded.lineage,
            description=spec.description,
            model_types=spec.model_types,
            class_name=cls,
            spec=spec.model_dump(mode="json", exclude_defaults=True),
            rename=rename_dict(spec),
        )
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
    """Raise :class:`CompileDriftError` when ``out_dir`` is not what the specs compile to."""
    lines = drift(spec_dir, out_dir)
    if lines:
        raise CompileDriftError(
            "generated adapters are out of date; run `nnspec compile`:\n" + "\n".join(f"  {l}" for l in lines)
        )


def write(spec_dir: Path = BUNDLED_DIR, out_dir: Path = GENERATED_DIR) -> list[str]:
    """Render and atomically replace ``out_dir``; returns the names of the files written."""
    rendered = render(spec_dir)  # raises before anything is touched
    out_dir = out_dir.resolve()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-new-", dir=out_dir.parent))
    try:
        for name, text in rendered.items():
            (staging / name).write_text(text, encoding="utf-8")
        if out_dir.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-old-", dir=out_dir.parent))
            os.rmdir(retired)
            os.replace(out_dir, retired)
            os.replace(staging, out_dir)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return sorted(rendered)
