"""The compiler never deletes or overwrites what a user made: it refuses an output folder holding
foreign files and a missing or empty spec folder, and the next compile repairs what an interrupted
one left behind (a missing output folder, stale staging folders), touching nothing else."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nnspec.cli import main
from nnspec.compiler import codegen
from nnspec.compiler.loader import BUNDLED_DIR
from nnspec.errors import CompileOutputError, SpecFolderError

#: Two small specs (a root and a child) keep every compile fast.
SPECS = ("gpt2", "llama", "mistral")


def small_specs(tmp_path: Path) -> Path:
    specs = tmp_path / "specs"
    specs.mkdir()
    for name in SPECS:
        shutil.copy(BUNDLED_DIR / f"{name}.toml", specs)
    return specs


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".generated-"))


# -- 1. the output folder: only the compiler's own files are replaced -----------------------------------


def test_output_folder_with_user_files_is_refused_and_left_intact(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    specs = small_specs(tmp_path)
    out = tmp_path / "mine"
    (out / "notes").mkdir(parents=True)
    (out / "thesis.tex").write_text("years of work")
    (out / "notes" / "a.txt").write_text("a")
    (out / "helper.py").write_text("def f(): pass\n")
    before = snapshot(out)
    with pytest.raises(CompileOutputError) as info:
        codegen.write(specs, out)
    message = str(info.value)
    assert str(out) in message and "thesis.tex" in message and "notes/" in message and "helper.py" in message
    assert snapshot(out) == before
    assert leftovers(tmp_path) == [] and not list(tmp_path.glob(".mine-*"))

    assert main(["compile", "--specs", str(specs), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nnspec compile: output folder") and "thesis.tex" in err and err.count("\n") == 1
    assert snapshot(out) == before


def test_one_foreign_file_among_generated_ones_is_refused(tmp_path: Path) -> None:
    specs = small_specs(tmp_path)
    out = tmp_path / "generated"
    codegen.write(specs, out)
    (out / "my_adapter.py").write_text("# my own adapter\n")
    with pytest.raises(CompileOutputError, match="my_adapter.py"):
        codegen.write(specs, out)
    assert (out / "my_adapter.py").read_text() == "# my own adapter\n"


def test_a_generated_file_rewritten_by_the_user_is_not_the_compilers(tmp_path: Path) -> None:
    specs = small_specs(tmp_path)
    out = tmp_path / "generated"
    codegen.write(specs, out)
    (out / "gpt2.py").write_text("my own code, not generated\n")
    with pytest.raises(CompileOutputError, match="gpt2.py"):
        codegen.write(specs, out)
    assert (out / "gpt2.py").read_text() == "my own code, not generated\n"


def test_a_folder_of_generated_files_is_replaced(tmp_path: Path) -> None:
    specs = small_specs(tmp_path)
    out = tmp_path / "generated"
    codegen.write(specs, out)
    assert json.loads((out / codegen.MANIFEST).read_text())["generator"] == "nnspec compile"
    (out / "__pycache__").mkdir()
    (out / "__pycache__" / "gpt2.cpython-311.pyc").write_bytes(b"\0")
    (out / "llama.py").write_text((out / "llama.py").read_text() + "# hand edit\n")  # still a generated file
    (specs / "mistral.toml").unlink()
    out.chmod(0o751)
    assert codegen.write(specs, out) == ["__init__.py", "gpt2.py", "llama.py"]
    assert sorted(p.name for p in out.iterdir()) == [codegen.MANIFEST, "__init__.py", "gpt2.py", "llama.py"]
    assert codegen.drift(specs, out) == []
    assert leftovers(tmp_path) == []
    assert stat.S_IMODE(out.stat().st_mode) == 0o751, "keeps the folder's mode (not a private 0700 temp folder)"


def test_a_folder_compiled_before_manifests_existed_is_replaced(tmp_path: Path) -> None:
    """The committed generated/ folder has no manifest: its header lines make it the compiler's."""
    specs = small_specs(tmp_path)
    out = tmp_path / "generated"
    codegen.write(specs, out)
    (out / codegen.MANIFEST).unlink()
    codegen.write(specs, out)
    assert (out / codegen.MANIFEST).is_file() and codegen.drift(specs, out) == []


def test_output_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    specs = small_specs(tmp_path)
    out = tmp_path / "generated"
    out.write_text("not a folder")
    with pytest.raises(CompileOutputError, match="is a file"):
        codegen.write(specs, out)
    assert out.read_text() == "not a folder"


def test_replacing_without_atomic_exchange_also_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    specs = small_specs(tmp_path)
    out = tmp_path / "generated"
    codegen.write(specs, out)
    monkeypatch.setattr(codegen, "_exchange", lambda a, b: False)
    (specs / "mistral.toml").unlink()
    codegen.write(specs, out)
    assert codegen.drift(specs, out) == [] and leftovers(tmp_path) == []


# -- 2. the spec folder --------------------------------------------------------------------------------


def test_misspelt_spec_folder_is_refused_before_the_output_is_touched(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    specs = small_specs(tmp_path)
    out = tmp_path / "generated"
    codegen.write(specs, out)
    before = snapshot(out)
    for argv in (
        ["compile", "--specs", str(tmp_path / "spec"), "--out", str(out)],
        ["compile", "--check", "--specs", str(tmp_path / "spec"), "--out", str(out)],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert f"spec folder {tmp_path / 'spec'} does not exist" in err
        assert f"did you mean '{specs}'" in err
        assert snapshot(out) == before


def test_spec_folder_without_specs_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    specs = small_specs(tmp_path)
    out = tmp_path / "generated"
    codegen.write(specs, out)
    before = snapshot(out)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "README.md").write_text("no specs here")
    assert main(["compile", "--specs", str(empty), "--out", str(out)]) == 2
    assert f"spec folder {empty} holds no *.toml spec file" in capsys.readouterr().err
    assert snapshot(out) == before
    with pytest.raises(SpecFolderError, match="is not a folder"):
        codegen.write(specs / "gpt2.toml", out)
    assert snapshot(out) == before


# -- 3. recovering from an interrupted compile -------------------------------------------------------


def staged_copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def test_killed_between_the_two_renames_is_restored_by_compile_check(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    specs = small_specs(tmp_path)
    out = tmp_path / "generated"
    codegen.write(specs, out)
    # The state a kill between `out -> .generated-old-*` and `.generated-new-* -> out` leaves.
    staged_copy(out, tmp_path / ".generated-new-k1ll3d")
    os.replace(out, tmp_path / ".generated-old-k1ll3d")
    assert main(["compile", "--check", "--specs", str(specs), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "restored" in err and ".generated-new-k1ll3d" in err
    assert codegen.drift(specs, out) == [] and leftovers(tmp_path) == []


def test_missing_output_is_restored_from_a_backup_without_manifest(tmp_path: Path) -> None:
    specs = small_specs(tmp_path)
    out = tmp_path / "generated"
    codegen.write(specs, out)
    (out / codegen.MANIFEST).unlink()  # a folder compiled before manifests existed
    os.replace(out, tmp_path / ".generated-old-abc123")
    (tmp_path / ".generated-new-def456").mkdir()  # killed right after creating its staging folder
    notes = codegen.recover(out)
    assert any("restored" in n and ".generated-old-abc123" in n for n in notes)
    assert codegen.drift(specs, out) == [] and leftovers(tmp_path) == []


def test_incomplete_staging_is_not_restored_but_removed(tmp_path: Path) -> None:
    specs = small_specs(tmp_path)
    out = tmp_path / "generated"
    codegen.write(specs, out)
    partial = staged_copy(out, tmp_path / ".generated-new-partial")
    (partial / "llama.py").unlink()  # killed while writing the staged files
    shutil.rmtree(out)
    codegen.recover(out)
    assert not out.exists() and leftovers(tmp_path) == []
    codegen.write(specs, out)
    assert codegen.drift(specs, out) == []


def test_stale_staging_is_removed_but_never_anything_else(tmp_path: Path) -> None:
    specs = small_specs(tmp_path)
    out = tmp_path / "generated"
    codegen.write(specs, out)
    staged_copy(out, tmp_path / ".generated-new-stale1")
    foreign = staged_copy(out, tmp_path / ".generated-new-stale2")
    (foreign / "diary.txt").write_text("mine")
    other = tmp_path / ".generated-backup"  # not the compiler's naming
    other.mkdir()
    (other / "x.py").write_text("# GENERATED by `nnspec compile` once\n")
    unrelated = tmp_path / ".generated-new-link"
    unrelated.symlink_to(other)
    codegen.write(specs, out)
    assert not (tmp_path / ".generated-new-stale1").exists()
    assert (foreign / "diary.txt").read_text() == "mine" and (foreign / "gpt2.py").exists()
    assert (other / "x.py").exists() and unrelated.is_symlink()
    assert any("diary.txt" in n for n in codegen.recover(out))


def test_a_real_sigkill_between_the_renames_is_recovered(tmp_path: Path) -> None:
    """A compile killed (SIGKILL) just after moving the old folder aside leaves no output folder;
    the next `nnspec compile --check` puts it back."""
    specs = small_specs(tmp_path)
    out = tmp_path / "generated"
    codegen.write(specs, out)
    (specs / "mistral.toml").unlink()
    script = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from nnspec.compiler import codegen
        out = Path({str(out)!r})
        real = os.replace
        def replace(src, dst):
            real(src, dst)
            if Path(src) == out:
                os.kill(os.getpid(), signal.SIGKILL)
        codegen._exchange = lambda a, b: False
        codegen.os.replace = replace
        codegen.write(Path({str(specs)!r}), out)
        """
    )
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not out.exists() and len(leftovers(tmp_path)) == 2
    result = subprocess.run(
        [sys.executable, "-m", "nnspec", "compile", "--check", "--specs", str(specs), "--out", str(out)],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "restored" in result.stderr and leftovers(tmp_path) == []
    assert codegen.drift(specs, out) == []


def test_a_sigkill_while_staging_leaves_the_output_and_the_next_compile_cleans_up(tmp_path: Path) -> None:
    specs = small_specs(tmp_path)
    out = tmp_path / "generated"
    codegen.write(specs, out)
    before = snapshot(out)
    script = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from nnspec.compiler import codegen
        real = Path.write_text
        def write_text(self, *args, **kwargs):
            real(self, *args, **kwargs)
            if self.name == "gpt2.py":
                os.kill(os.getpid(), signal.SIGKILL)
        Path.write_text = write_text
        codegen.write(Path({str(specs)!r}), Path({str(out)!r}))
        """
    )
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert snapshot(out) == before and len(leftovers(tmp_path)) == 1
    assert main(["compile", "--specs", str(specs), "--out", str(out)]) == 0
    assert leftovers(tmp_path) == [] and codegen.drift(specs, out) == []
