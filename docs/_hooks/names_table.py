"""MkDocs hook: ``<!-- standard-names-table -->`` becomes the table of standard names, rendered from
the one table the library reads (:mod:`nnspec.runtime.names`), so the page cannot drift from it."""

from __future__ import annotations

from typing import Any

from nnspec.runtime.names import NAMES

MARKER = "<!-- standard-names-table -->"


def table() -> str:
    yes = {True: "yes", False: ""}
    rows = [
        "| name | kind | per layer | read order | shape | settable | cached | gradients | collected |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for n in NAMES:
        cached = "default" if n.cached_by_default else yes[n.cached]
        order = "" if n.order is None else str(n.order)
        rows.append(
            f"| `{n.name}` | {n.kind.replace('_', ' ')} | {yes[n.per_layer]} | {order} | `{n.shape}` | "
            f"{yes[n.settable]} | {cached} | {yes[n.gradients]} | {yes[n.collected]} |"
        )
    return "\n".join(rows)


def on_page_markdown(markdown: str, **_: Any) -> str:
    return markdown.replace(MARKER, table()) if MARKER in markdown else markdown
