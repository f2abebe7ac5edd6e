"""The typed public API: mypy over the package and a user script, revealed types of the standard
names, class-level declarations matching the installed accessors, and the lint configuration."""

from __future__ import annotations

import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nnspec import StandardizedTransformer
from nnspec.runtime.accessors import _Indexed
from tests.conftest import checkpoint

ROOT = Path(__file__).resolve().parents[1]
USER_SCRIPT = ROOT / "examples" / "typed_usage.py"

# What a user's editor and mypy see for each expression on a model `m`.
REVEALS = {
    "m.layers_output": "nnspec.runtime.accessors.ValueAccessor[nnspec.runtime.accessors.SavableTensor]",
    "m.layers_output[0]": "nnspec.runtime.accessors.SavableTensor",
    "m.layers_output[0][:, -1].save()": "nnspec.runtime.accessors.SavableTensor",
    "m.num_layers": "int",
    "m.logits": "nnspec.runtime.accessors.SavableTensor",
    "m.layers[0]": "nnsight.intervention.envoy.Envoy",
    "m.attention_probabilities": "nnspec.runtime.accessors.AttentionProbabilitiesAccessor",
    "m.mlps": "nnspec.runtime.accessors.ModuleAccessor[nnsight.intervention.envoy.Envoy]",
    "m.tokenizer": "Any",  # transformers is not followed by this configuration (see pyproject.toml)
}
# Runtime-lazy top-level names must still type as what they are.
LAZY = {
    "nnspec.StandardizedTransformer": "def (model:",
    "nnspec.Adapter": "def (",
    "nnspec.get_rename_dict": "def (",
}


def _probe(path: Path) -> list[str]:
    lines = ["import nnspec", "from nnspec import StandardizedTransformer", "", "", "def probe(m: StandardizedTransformer) -> None:"]
    lines += [f"    reveal_type({expr})" for expr in REVEALS]
    lines += [f"    reveal_type({expr})" for expr in LAZY]
    path.write_text("\n".join(lines) + "\n")
    return list(REVEALS) + list(LAZY)


@pytest.mark.long
def test_mypy_package_user_script_and_revealed_types(tmp_path: Path) -> None:
    probe = tmp_path / "reveal_probe.py"
    exprs = _probe(probe)
    bad = tmp_path / "misuse.py"
    bad.write_text(
        "import nnspec\nfrom nnspec import StandardizedTransformer\n\n\n"
        "def misuse(m: StandardizedTransformer) -> None:\n"
        "    m.layers_output['0']\n"  # an index must be an int
        "    m.layers_output[0] = 'x'\n"  # assignment takes a tensor
        "    nnspec.StandardizedTransformr\n"  # a misspelt lazy name
    )
    run = subprocess.run(
        [sys.executable, "-m", "mypy", "src/nnspec", str(USER_SCRIPT), str(probe), str(bad)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    out = run.stdout + run.stderr
    errors = [line for line in out.splitlines() if ": error:" in line]
    # The package and the user script are clean; the misuse file has exactly its three errors.
    assert [e for e in errors if "misuse.py" not in e] == [], out
    assert len([e for e in errors if "misuse.py" in e]) == 3, out
    revealed = re.findall(r'reveal_probe\.py:\d+: note: Revealed type is "(.*)"', out)
    assert len(revealed) == len(exprs), out
    for expr, got in zip(exprs, revealed):
        expected = REVEALS.get(expr) or LAZY[expr]
        assert got.removeprefix("builtins.").startswith(expected), f"{expr}: revealed {got!r}, expected {expected!r}"
        if expr != "m.tokenizer":
            assert got not in ("Any", "builtins.object"), f"{expr}: revealed {got!r}"


def _declared() -> dict[str, str]:
    """StandardizedTransformer's class-level accessor declarations, by name."""
    return {
        name: annotation
        for cls in reversed(StandardizedTransformer.__mro__)
        for name, annotation in vars(cls).get("__annotations__", {}).items()
        if re.match(r"(ModuleAccessor|ValueAccessor|AttentionProbabilitiesAccessor)\b", str(annotation))
    }


@pytest.fixture(scope="module")
def model() -> StandardizedTransformer:
    return StandardizedTransformer(str(checkpoint("llama")))


def test_every_installed_accessor_is_declared_and_back(model: StandardizedTransformer) -> None:
    installed = {name: type(value).__name__ for name, value in vars(model).items() if isinstance(value, _Indexed)}
    declared = _declared()
    assert set(installed) == set(declared), (
        f"installed, not declared: {sorted(set(installed) - set(declared))}; "
        f"declared, not installed: {sorted(set(declared) - set(installed))}"
    )
    for name, kind in installed.items():
        assert declared[name].startswith(kind), f"{name}: declared {declared[name]!r}, installed a {kind}"
    assert len(declared) == 20


def test_user_script_runs(model: StandardizedTransformer) -> None:
    result = runpy.run_path(str(USER_SCRIPT))["main"](str(checkpoint("llama")))
    assert result["layers"] == model.num_layers
    assert result["hidden"] == model.hidden_size
    assert 0 < result["top_prob"] <= 1


def test_lazy_import_stays_lazy() -> None:
    code = "import sys, nnspec; assert 'nnspec.runtime.model' not in sys.modules; print(nnspec.StandardizedTransformer.__name__)"
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "StandardizedTransformer", run.stderr


def test_ruff_check_passes() -> None:
    run = subprocess.run([sys.executable, "-m", "ruff", "check", "src", "tests", "examples"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr


def test_pre_commit_hooks_pin_the_constrained_versions() -> None:
    pins = dict(
        line.strip().split("==", 1) for line in (ROOT / "constraints.txt").read_text().splitlines() if "==" in line
    )
    hooks = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())["repos"]
    ruff = next(r for r in hooks if r["repo"].endswith("/ruff-pre-commit"))
    assert ruff["rev"] == f"v{pins['ruff']}"
    assert {h["id"] for h in ruff["hooks"]} == {"ruff-check", "ruff-format"}
    mypy = next(h for r in hooks for h in r["hooks"] if h["id"] == "mypy")
    assert f"mypy=={pins['mypy']}" in mypy["name"] and mypy["entry"] == "python -m mypy"
    assert 'cache_dir = ".mypy_cache"' in (ROOT / "pyproject.toml").read_text()
