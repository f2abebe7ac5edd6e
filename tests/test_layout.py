"""The package layout: the compiler never imports the runtime; the core imports neither the
verification harness nor the research recipes; the recipes do not import the harness."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "nnspec"
#: (importer part, imported part) arrows the layout forbids.
FORBIDDEN = {
    ("compiler", "runtime"), ("compiler", "verification"), ("compiler", "recipes"), ("compiler", "scaffold"),
    ("runtime", "verification"), ("runtime", "recipes"), ("runtime", "scaffold"), ("runtime", "cli"),
    ("recipes", "verification"), ("recipes", "scaffold"), ("recipes", "cli"),
    ("verification", "scaffold"), ("verification", "cli"),
}
#: Top-level modules that are not research recipes.
BASE = {"errors", "paths", "logging", "_version", "__init__", "__main__", "cli", "standardized_transformer"}


def part(module: str) -> str:
    pieces = module.split(".")
    if len(pieces) == 1:
        return "root"
    if pieces[1] in ("compiler", "runtime", "verification", "scaffold", "generated"):
        return pieces[1]
    if pieces[1] in BASE:
        return "base" if pieces[1] not in ("cli", "__main__") else "cli"
    return "recipes"


def module_name(path: Path, root: Path) -> str:
    pieces = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(pieces[:-1] if pieces[-1] == "__init__" else pieces)


def arrows(root: Path) -> set[tuple[str, str]]:
    """(importer, imported) module pairs inside the package, lazy imports included."""
    found = set()
    for path in root.rglob("*.py"):
        if "generated" in path.parts:
            continue
        here = module_name(path, root)
        package = here.split(".") if path.name == "__init__.py" else here.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[: len(package) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    is_module = (root.parent / (sub.replace(".", "/") + ".py")).exists() or (root.parent / sub.replace(".", "/")).is_dir()
                    found.add((here, sub if is_module else target))
            elif isinstance(node, ast.Import):
                found.update((here, alias.name) for alias in node.names)
    return {(a, b) for a, b in found if b.split(".")[0] == root.name}


def violations(root: Path) -> list[str]:
    return sorted(f"{a} -> {b}" for a, b in arrows(root) if (part(a), part(b)) in FORBIDDEN)


def test_no_forbidden_import_arrows() -> None:
    assert violations(PACKAGE) == []


def test_the_check_catches_a_forbidden_arrow(tmp_path: Path) -> None:
    root = tmp_path / "nnspec"
    for folder in ("compiler", "runtime", "verification"):
        (root / folder).mkdir(parents=True)
        (root / folder / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    (root / "cache.py").write_text("X = 1\n")
    (root / "runtime" / "model.py").write_text("def f():\n    from ..cache import X\n    return X\n")
    (root / "compiler" / "codegen.py").write_text("from ..runtime import model\n")
    (root / "verification" / "tiny.py").write_text("from ..runtime.model import f\nfrom .. import cache\n")
    assert violations(root) == ["nnspec.compiler.codegen -> nnspec.runtime.model", "nnspec.runtime.model -> nnspec.cache"]


def test_the_parts_are_folders_named_for_what_they_hold() -> None:
    for folder in ("specs", "compiler", "generated", "runtime", "verification", "scaffold"):
        assert (PACKAGE / folder).is_dir(), folder
    for recipe in ("interventions", "prompt_utils", "display", "cache", "gradients", "nnsight_utils"):
        assert not (PACKAGE / "runtime" / f"{recipe}.py").exists(), f"{recipe} belongs at the top level"
