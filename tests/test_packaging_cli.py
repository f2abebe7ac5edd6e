"""Packaging (one version, py.typed, license, extras pinned), the command line's options and
errors (--version, --dtype, --device, scaffold's output place, list columns), the cache folder,
nnspec's warning class and the default device_map."""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
import sys
import tomllib
import warnings
import zipfile
from pathlib import Path

import pytest
import torch

import nnspec
from nnspec import cli
from nnspec.cli import main, parser
from nnspec.errors import NnspecWarning, UsageError
from nnspec.runtime import placement
from nnspec.verification import tiny

from .conftest import checkpoint, one_line

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


# -- packaging ---------------------------------------------------------------------------------------


def test_one_version_source() -> None:
    from nnspec import _version

    project = PYPROJECT["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "nnspec._version.__version__"}
    assert nnspec.__version__ == _version.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+([ab]|rc|\.dev|\.post)?\d*", nnspec.__version__)


def test_metadata_license_and_typing_marker() -> None:
    project = PYPROJECT["project"]
    classifiers = set(project["classifiers"])
    for needed in ("Intended Audience :: Science/Research", "Operating System :: OS Independent",
                   "Topic :: Scientific/Engineering :: Artificial Intelligence", "Typing :: Typed",
                   *(f"Programming Language :: Python :: 3.{m}" for m in (10, 11, 12, 13))):
        assert needed in classifiers, needed
    # The license expression replaces the License classifier (setuptools refuses both together).
    assert project["license"] == "MIT" and not any(c.startswith("License ::") for c in classifiers)
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License") and "Copyright (c) 2026 the nnspec authors" in text
    assert project["license-files"] == ["LICENSE"]
    assert (ROOT / "src" / "nnspec" / "py.typed").is_file()
    assert "py.typed" in PYPROJECT["tool"]["setuptools"]["package-data"]["nnspec"]
    assert "urls" not in project  # no project address exists yet


def test_every_extra_is_pinned_in_the_constraints() -> None:
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert {"display", "accelerate", "dev"} <= set(extras)
    pinned = {
        re.split(r"[=<>\[ ;]", line)[0].lower().replace("_", "-")
        for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    for extra, requirements in extras.items():
        for requirement in requirements:
            name = re.split(r"[=<>\[ ;!~]", requirement)[0].lower().replace("_", "-")
            assert name in pinned, f"extra {extra!r}: {name} has no pin in constraints.txt"


def test_wheel_holds_the_typing_marker_license_and_data(tmp_path: Path) -> None:
    """Build the wheel from a copy of the sources and read what it ships."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"), str(source)],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    wheel = next((tmp_path / "dist").glob("nnspec-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "nnspec/py.typed" in names and "nnspec/specs/llama.toml" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert f"\nVersion: {nnspec.__version__}\n" in metadata and "License-Expression: MIT" in metadata
    assert "Classifier: Typing :: Typed" in metadata and "Provides-Extra: accelerate" in metadata


# -- the command line ----------------------------------------------------------------------------------


def test_version_names_the_versions_that_matter(capsys: pytest.CaptureFixture) -> None:
    import nnsight
    import transformers

    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    line = capsys.readouterr().out.strip()
    assert line == (
        f"nnspec {nnspec.__version__} (transformers {transformers.__version__}, "
        f"nnsight {importlib.metadata.version('nnsight')}, torch {torch.__version__})"
    )
    assert nnsight.__version__ in line


def test_every_option_has_plain_help() -> None:
    p = parser()
    commands = p._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for name, sub in [("", p), *commands.items()]:
        for action in sub._actions:
            if action.dest in ("help", "command"):
                continue
            assert action.help and action.help.strip(), f"nnspec {name} {action.option_strings or action.dest}: no help"
        text = sub.format_help()
        assert "`" not in text and ":func:" not in text and "**" not in text, text
    for command in ("check", "lens", "scaffold"):
        assert commands[command].description, command


def test_usage_errors_are_one_line(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["lens", "-k", "many", "hello"])
    assert stop.value.code == 2
    line = one_line(capsys, "lens")
    assert "-k" in line and "'many'" in line and "nnspec lens --help" in line
    with pytest.raises(SystemExit) as stop:
        main(["lenz"])
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(err) == 1 and err[0].startswith("nnspec: ") and "'lenz'" in err[0]


@pytest.fixture
def no_model_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """A model load fails the test: argument errors must come first."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(cli, "_lens_model", refuse)


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["--dtype", "bfloat"], "--dtype bfloat: not a dtype nnspec loads weights in (did you mean 'bfloat16'"),
        (["--dtype", "int8"], "choose auto, float32, float16 or bfloat16"),
        (["--device", "gpu"], "--device gpu: not a device name"),
        (["--device", "cuda:x"], "--device cuda:x: not a device name (did you mean 'cuda'?)"),
        (["--device", "meta"], "--device meta: the meta device holds no weights"),
        (["--spec", "lama"], "--spec lama"),
    ],
)
def test_lens_refuses_bad_options_before_loading(
    arguments: list[str], expected: str, no_model_load: None, capsys: pytest.CaptureFixture
) -> None:
    assert main(["lens", *arguments, "hello"]) == 2
    assert expected in one_line(capsys, "lens")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_lens_refuses_a_device_that_is_not_here(no_model_load: None, capsys: pytest.CaptureFixture) -> None:
    assert main(["lens", "--device", "cuda", "hello"]) == 2
    assert "--device cuda: no cuda device is visible" in one_line(capsys, "lens")


def test_device_auto_needs_accelerate(no_model_load: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(placement, "accelerate_installed", lambda: False)
    assert main(["lens", "--device", "auto", "hello"]) == 2
    assert "--device auto: needs the accelerate package" in one_line(capsys, "lens")


def test_dtype_and_device_reach_the_model() -> None:
    args = parser().parse_args(["lens", "--dtype", "bf16", "--device", "CPU", "hello"])
    placed = cli._placement(args)
    assert placed == {"dtype": torch.bfloat16, "device_map": "cpu"}
    assert cli.dtype_argument("torch.float16") is torch.float16 and cli.dtype_argument("auto") == "auto"
    model = cli._lens_model(str(checkpoint("gpt2")), None, placed)
    with model.trace("hello"):  # NNsight loads the weights on the first trace
        logits = model.logits.save()
    assert logits.dtype == torch.bfloat16
    weights = {p.dtype for p in model._module.parameters()}
    assert weights == {torch.bfloat16} and {p.device.type for p in model._module.parameters()} == {"cpu"}
    assert cli._placement(parser().parse_args(["lens", "hello"])) == {}  # nothing given: the model's defaults


def test_check_refuses_an_unknown_spec(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["check", str(tmp_path), "--spec", "gpt-2"]) == 2
    assert "did you mean 'gpt2'" in one_line(capsys, "check")


def test_list_columns_line_up(capsys: pytest.CaptureFixture) -> None:
    from nnspec.runtime.registry import adapter_by_name, spec_names

    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    column = lines[0].index("DESCRIPTION")
    assert lines[0].startswith("NAME") and lines[0].index("MODEL TYPES") > len(max(spec_names(), key=len))
    by_name = {line.split()[0]: line for line in lines[1:]}
    assert set(by_name) == set(spec_names())
    for name in spec_names():
        spec = adapter_by_name(name).spec
        line = by_name[name]
        about = " ".join(filter(None, [spec.description, f"(extends {spec.extends})" if spec.extends else ""]))
        if not about:
            assert len(line) < column, line
            continue
        assert line[column - 2:column] == "  " and line[column:] == about, line
    # A long name and a long list of model types widen their columns and wrap; descriptions still align.
    table = cli.list_table([("NAME", ["MODEL TYPES"], "DESCRIPTION"), ("a" * 50, ["x"], "first"),
                            ("b", [f"type_{i}" for i in range(12)], "second")], types_width=30)
    starts = {line.index(word) for line in table for word in ("DESCRIPTION", "first", "second") if word in line}
    assert len(starts) == 1 and max(len(line) for line in table[3:]) <= 50 + 2 + 30
    assert " ".join(" ".join(table[2:]).replace("second", "").split()).count("type_") == 12


# -- scaffold: where it writes -------------------------------------------------------------------------


def test_scaffold_writes_to_the_current_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["scaffold", "llama", "--no-check", "--name", "my_llama"]) == 0
    assert (tmp_path / "my_llama.toml").is_file()
    assert f"wrote {tmp_path / 'my_llama.toml'}" in capsys.readouterr().out
    folder = tmp_path / "drafts"
    folder.mkdir()
    assert main(["scaffold", "llama", "--no-check", "--name", "other", "-o", str(folder)]) == 0
    assert (folder / "other.toml").is_file()
    assert main(["scaffold", "llama", "--no-check", "--name", "other", "-o", str(folder)]) == 2  # no overwrite
    assert "already exists" in one_line(capsys, "scaffold")


def test_scaffold_refuses_the_package(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    from nnspec.scaffold import draft

    package = Path(nnspec.__file__).resolve().parent
    for target in (package / "generated" / "x.toml", package / "x.toml", package):
        assert main(["scaffold", "llama", "--no-check", "-o", str(target)]) == 2, target
        line = one_line(capsys, "scaffold")
        assert "-o/--output" in line and "inside the nnspec package" in line, line
    assert not (package / "generated" / "x.toml").exists() and not (package / "x.toml").exists()
    assert not (package / "llama.toml").exists()
    # Installed (not a source checkout): its spec folder is refused too, and so is the library call.
    monkeypatch.setattr(draft, "_source_checkout", lambda package: False)
    assert main(["scaffold", "llama", "--no-check", "-o", str(package / "specs" / "new_arch.toml")]) == 2
    assert "which an upgrade replaces" in one_line(capsys, "scaffold")
    with pytest.raises(draft.ScaffoldError, match="inside the nnspec package"):
        draft.scaffold("llama", package / "specs" / "new_arch.toml", check=False)
    assert not (package / "specs" / "new_arch.toml").exists()
    monkeypatch.chdir(package / "specs")  # the default place (the current folder) is checked as well
    assert main(["scaffold", "llama", "--no-check", "--name", "new_arch"]) == 2
    assert "inside the nnspec package" in one_line(capsys, "scaffold")


def test_scaffold_never_extends_its_own_descendant(tmp_path: Path) -> None:
    """`opt` cannot extend `biogpt` or `xglm` (both extend `opt`): the draft loads without a cycle."""
    from nnspec.compiler.loader import load_spec_file
    from nnspec.scaffold.draft import scaffold

    path, _, parent = scaffold("opt", tmp_path / "opt.toml", check=False)
    assert parent not in ("biogpt", "xglm", "opt")
    loaded = load_spec_file(path)
    assert loaded.lineage[-1] == "opt" and loaded.lineage.count("opt") == 1


# -- cache folder, warnings, logging, device_map -------------------------------------------------------


def test_cache_folder_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NNSPEC_CACHE", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert tiny.cache_root() == tmp_path / "mine"
    monkeypatch.setenv("NNSPEC_CACHE", "")
    assert tiny.cache_root() == tmp_path / "xdg" / "nnspec"
    monkeypatch.delenv("NNSPEC_CACHE")
    assert tiny.cache_root() == tmp_path / "xdg" / "nnspec"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # ignored, as the XDG rules say
    assert tiny.cache_root() == tmp_path / "home" / ".cache" / "nnspec"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert tiny.cache_root() == tmp_path / "home" / ".cache" / "nnspec"


def test_nnspec_warnings_have_their_own_class() -> None:
    from nnspec.runtime.compat import warn_if_unverified
    from nnspec.runtime.inputs import warn_right_padding

    assert issubclass(NnspecWarning, UserWarning)
    tokenizers = [object(), object()]  # kept alive: the warning is once per tokenizer object
    with pytest.warns(NnspecWarning, match="pads its batches on the left"):
        warn_right_padding(tokenizers[0])
    with pytest.warns(NnspecWarning, match="not verified on transformers 0.0.1"):
        warn_if_unverified("llama", "0.0.1", "0.0.1")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=NnspecWarning)
        warn_right_padding(tokenizers[1])  # filtered by its class
        warnings.warn("a plain user warning", UserWarning, stacklevel=1)
    assert [str(w.message) for w in seen] == ["a plain user warning"]


def test_verbose_shows_the_log_on_stderr(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    from nnspec.logging import logger

    def logs(args: object) -> int:
        logger.info("a progress message")
        return 0

    monkeypatch.setattr(cli, "_list", logs)
    handlers = list(logger.handlers)
    assert main(["-v", "list"]) == 0
    assert capsys.readouterr().err == "nnspec: a progress message\n"
    assert main(["list"]) == 0
    assert "progress" not in capsys.readouterr().err
    assert logger.handlers == handlers  # nothing left behind


def test_default_device_map(monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(checkpoint("llama"))
    monkeypatch.setattr(placement, "accelerate_installed", lambda: True)
    monkeypatch.setattr(placement, "accelerator_available", lambda: True)
    assert placement.default_device_map(path) == "auto"
    assert placement.default_device_map(torch.nn.Linear(2, 2)) is None  # a loaded model is not moved
    kwargs: dict = {"device_map": None}
    placement.apply_default_device_map(path, kwargs)
    assert kwargs == {"device_map": None}  # an explicit choice wins, None included
    monkeypatch.setattr(placement, "accelerator_available", lambda: False)
    assert placement.default_device_map(path) is None
    monkeypatch.setattr(placement, "accelerator_available", lambda: True)
    monkeypatch.setattr(placement, "accelerate_installed", lambda: False)
    assert placement.default_device_map(path) is None


def test_default_device_map_reaches_the_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """What NNsight is asked to load with (its ``kwargs``), and that the model then runs."""
    from nnspec import StandardizedTransformer

    pytest.importorskip("accelerate")
    path = str(checkpoint("llama"))
    monkeypatch.setattr(placement, "accelerator_available", lambda: False)  # as on a CPU-only machine
    assert "device_map" not in StandardizedTransformer(path).kwargs
    monkeypatch.setattr(placement, "accelerator_available", lambda: True)  # as on a GPU machine
    auto = StandardizedTransformer(path)
    assert auto.kwargs["device_map"] == "auto"
    with auto.trace("hello"):
        logits = auto.logits.save()
    assert logits.shape[-1] == auto.vocab_size
    assert StandardizedTransformer(path, device_map=None).kwargs["device_map"] is None


def test_usage_error_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="--dtype"):
        cli.dtype_argument("float64x")
