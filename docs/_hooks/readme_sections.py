"""MkDocs hook: pages include README sections by heading, so no text is copied by hand.

A page writes ``<!-- readme: Token mixers -->`` on a line of its own; the build replaces it with
that ``##`` section of README.md (its heading included) or, for ``<!-- readme: intro -->``, with
what README says before its first ``##`` heading (the title left out). Links inside the included
text are made to work on the site: ``docs/x.md`` becomes ``x.md`` and a README anchor
``#token-mixers`` points at the page that includes that section. A directive naming no README
section, or an anchor to a section no page includes, fails the build with the name at fault.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError

DIRECTIVE = re.compile(r"^<!--\s*readme:\s*(.+?)\s*-->[ \t]*$", re.MULTILINE)
LINK = re.compile(r"\]\(([^)\s]+)\)")
INTRO = "intro"

_sections: dict[str, tuple[str, str]] = {}  # slug -> (heading, text)
_included: dict[str, str] = {}  # slug -> page path (relative to docs_dir) that includes it


def slug(heading: str) -> str:
    """The anchor MkDocs' toc extension gives a heading (its default slugify)."""
    text = re.sub(r"[^\w\s-]", "", heading.strip().lower())
    return re.sub(r"[-\s]+", "-", text).strip("-")


def _parse(readme: str) -> dict[str, tuple[str, str]]:
    sections: dict[str, tuple[str, str]] = {}
    parts = re.split(r"^## (.+)$", readme, flags=re.MULTILINE)
    intro = re.sub(r"\A# .*\n", "", parts[0]).strip("\n")
    sections[INTRO] = ("", intro)
    for heading, body in zip(parts[1::2], parts[2::2]):
        sections[slug(heading)] = (heading.strip(), body.strip("\n"))
    return sections


def _key(name: str, where: str) -> str:
    key = INTRO if name.strip().lower() == INTRO else slug(name)
    if key not in _sections:
        names = [h for h, _ in _sections.values() if h]
        close = difflib.get_close_matches(name, names, n=3)
        hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
        raise PluginError(f"{where}: README.md has no section {name!r}{hint}; its sections: {', '.join(names)}")
    return key


def on_config(config: Any) -> Any:
    readme = Path(config["config_file_path"]).parent / "README.md"
    _sections.clear()
    _sections.update(_parse(readme.read_text(encoding="utf-8")))
    return config


def on_files(files: Any, config: Any) -> Any:
    _included.clear()
    for file in files.documentation_pages():
        text = Path(file.abs_src_path).read_text(encoding="utf-8")
        for match in DIRECTIVE.finditer(text):
            key = _key(match.group(1), file.src_uri)
            if key in _included and key != INTRO:
                raise PluginError(f"{file.src_uri}: README section {match.group(1)!r} is already included by {_included[key]}")
            _included[key] = file.src_uri
    return files


def _link(target: str, page_uri: str) -> str:
    if target.startswith("docs/"):
        return target[len("docs/"):]
    if target.startswith("#"):
        where = _included.get(target[1:])
        if where is None:
            raise PluginError(f"{page_uri}: README links to {target}, a section no docs page includes")
        return target if where == page_uri else f"{where}{target}"
    return target


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    uri = page.file.src_uri

    def include(match: re.Match) -> str:
        key = _key(match.group(1), uri)
        heading, text = _sections[key]
        text = LINK.sub(lambda m: f"]({_link(m.group(1), uri)})", text)
        return text if key == INTRO else f"## {heading}\n\n{text}"

    return DIRECTIVE.sub(include, markdown)
