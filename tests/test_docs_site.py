"""The documentation site builds with no warning, and the code on its tutorial pages runs.

`mkdocs build --strict` turns every warning into a failure: a broken link or anchor, a page left
out of the navigation, an API object mkdocstrings cannot find, a README section a page includes
that no longer exists. It builds into a temporary folder, never into the repository.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
#: Pages whose ```python blocks form one program that runs on the tiny gpt2 checkpoint, saved as
#: the folder `tiny-gpt2` (what `nnspec tiny gpt2 tiny-gpt2` writes; the pages say so).
RUNNABLE_PAGES = ("quickstart.md", "steering.md")


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "NO_MKDOCS_2_WARNING": "1"}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(out)],
        cwd=ROOT, capture_output=True, text=True, env=_env(), timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return out


def _text(site: Path, page: str) -> str:
    html = (site / page / "index.html").read_text(encoding="utf-8")
    return re.sub(r"<[^>]+>", "", html)


def test_build_is_strict_and_complete(site: Path) -> None:
    for page in ("quickstart", "standard-names", "steering", "architectures", "adding-an-architecture",
                 "compatibility", "benchmarks", "reliability", "migrating-from-nnterp",
                 "migrating-from-transformerlens", "notebooks"):
        assert (site / page / "index.html").is_file(), page


def test_readme_sections_are_included(site: Path) -> None:
    # The standard names page carries README's table; its README links point at site pages.
    text = _text(site, "standard-names")
    assert "contribution to the residual stream" in text and "project_on_vocab(h)" in text
    html = (site / "index.html").read_text(encoding="utf-8")
    assert 'href="migrating/#coming-from-nnterp-or-transformerlens"' in html
    assert "<!-- readme:" not in html


@pytest.mark.parametrize(
    "page, names",
    [
        ("api/standardized-transformer", ["StandardizedTransformer", "steer", "project_on_vocab", "run_with_cache", "to_tokens"]),
        ("api/nnsight-utils", ["collect_activations", "get_layer_output", "load_model"]),
        ("api/interventions", ["logit_lens", "patchscope_lens", "TargetPrompt", "steer"]),
        ("api/prompt-utils", ["Prompt", "run_prompts", "get_first_tokens"]),
        ("api/display", ["plot_logit_lens", "plot_category_probs", "plot_topk_tokens"]),
        ("api/patching", ["get_act_patch", "get_act_patch_resid_pre", "SWEEPS"]),
        ("api/attribution", ["logit_attribution", "LogitAttribution"]),
        ("api/errors", ["NnspecError", "InputError", "OutOfOrderReadError"]),
        ("api/rename-utils", ["RenameConfig", "get_rename_dict"]),
        ("api/gradients", ["attribution_patching", "gradients"]),
        ("api/cache", ["ActivationCache", "run_with_cache"]),
    ],
)
def test_api_reference_from_docstrings(site: Path, page: str, names: list[str]) -> None:
    html = (site / page / "index.html").read_text(encoding="utf-8")
    for name in names:
        assert re.search(rf'id="[\w.]*\b{re.escape(name)}"', html), f"{page}: no entry for {name}"


def _python_blocks(page: str) -> str:
    text = (DOCS / page).read_text(encoding="utf-8")
    blocks = re.findall(r"^```python\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)
    assert blocks, page
    return "\n".join(blocks)


@pytest.mark.parametrize("page", RUNNABLE_PAGES)
def test_page_code_runs(page: str, tmp_path: Path) -> None:
    from tests.conftest import checkpoint

    (tmp_path / "tiny-gpt2").symlink_to(checkpoint("gpt2"), target_is_directory=True)
    assert "nnspec tiny gpt2 tiny-gpt2" in (DOCS / page).read_text(encoding="utf-8")
    program = tmp_path / "page.py"
    # A file, not exec(): NNsight reads each trace block's source from the file it runs in.
    program.write_text(_python_blocks(page), encoding="utf-8")
    done = subprocess.run([sys.executable, str(program)], cwd=tmp_path, capture_output=True, text=True, env=_env(), timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-5000:]


def test_docs_extra_and_pins() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    pins = {
        line.split("==")[0].strip().lower(): line.split("==")[1].strip()
        for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines()
        if "==" in line and not line.startswith("#")
    }

    def names(extra: str) -> set[str]:
        return {re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower() for requirement in extras[extra]}

    assert {"mkdocs-material", "mkdocstrings-python"} <= names("docs")
    assert {"nbmake", "ipykernel", "nbclient", "mkdocs-material", "mkdocstrings-python"} <= names("dev")
    for name in names("docs") | {"nbmake", "ipykernel", "nbclient"}:
        assert name in pins, f"{name} is not pinned in constraints.txt"
