"""The command line on user errors: one line on stderr naming the argument at fault and a non-zero
exit, never a traceback; a closed pipe ends quietly; help text is plain text; real bugs keep
their traceback."""

from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path

import pytest

from nnspec.cli import main, parser


def nnspec(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nnspec", *args], capture_output=True, text=True)


def one_line_error(result: subprocess.CompletedProcess, command: str) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"nnspec {command}: "), result.stderr
    return lines[0]


def test_check_a_missing_path() -> None:
    line = one_line_error(nnspec("check", "/missing/path"), "check")
    assert "MODEL /missing/path: no such file or folder" in line


def test_check_an_unknown_spec_name_fails_before_loading(tmp_path: Path) -> None:
    line = one_line_error(nnspec("check", str(tmp_path), "--spec", "lama"), "check")
    assert "--spec lama" in line and "did you mean 'llama'" in line
    line = one_line_error(nnspec("check", str(tmp_path), "--spec", str(tmp_path / "nope.toml")), "check")
    assert f"--spec {tmp_path / 'nope.toml'}: spec file not found" in line


def test_check_a_folder_that_is_not_a_checkpoint(tmp_path: Path) -> None:
    line = one_line_error(nnspec("check", str(tmp_path)), "check")
    assert f"MODEL {tmp_path}: cannot be loaded" in line


def test_check_an_unknown_check_name(tmp_path: Path) -> None:
    line = one_line_error(nnspec("check", str(tmp_path), "--checks", "logit"), "check")
    assert "--checks: unknown check 'logit' (did you mean 'logits'?)" in line


def test_schema_into_a_missing_folder() -> None:
    line = one_line_error(nnspec("schema", "-o", "/nonexistent/dir/x.json"), "schema")
    assert "/nonexistent/dir/x.json" in line and "does not exist" in line


def test_lens_plot_without_matplotlib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    plot = tmp_path / "out.png"
    assert main(["lens", "--plot", str(plot), "hello"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # refused before any model is loaded
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"nnspec lens: --plot {plot}: ") and "matplotlib" in lines[0]
    assert not plot.exists()


def test_list_into_a_closed_pipe_exits_quietly() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "nnspec", "list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    process.stdout.close()  # the reader is gone before nnspec writes its first line (like `| head -0`)
    stderr = process.stderr.read().decode()
    process.stderr.close()
    assert process.wait(timeout=120) in (0, 141)
    assert stderr == "", stderr


def test_list_piped_into_head() -> None:
    result = subprocess.run(
        f"{sys.executable} -m nnspec list | head -1", shell=True, capture_output=True, text=True
    )
    assert result.returncode == 0 and len(result.stdout.splitlines()) == 1
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr


def test_help_is_plain_text() -> None:
    texts = [nnspec("--help").stdout]
    for command in parser()._subparsers._group_actions[0].choices:  # type: ignore[union-attr]
        result = nnspec(command, "--help")
        assert result.returncode == 0, result.stderr
        texts.append(result.stdout)
    for text in texts:
        assert "``" not in text, text
    assert "The nnspec command" in texts[0]


def test_os_error_on_a_user_path_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    target = tmp_path / "schema.json"

    def full_disk(self: Path, *args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_text", full_disk)
    assert main(["schema", "-o", str(target)]) == 2
    assert capsys.readouterr().err == f"nnspec schema: -o/--output {target}: No space left on device\n"


def test_os_error_not_about_user_input_keeps_its_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: Path, *args: object, **kwargs: object) -> None:
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", "/somewhere/internal/template.j2")

    monkeypatch.setattr(Path, "write_text", broken)
    with pytest.raises(FileNotFoundError):
        main(["schema", "-o", str(tmp_path / "schema.json")])


def test_scaffold_does_not_overwrite_an_existing_spec(tmp_path: Path) -> None:
    mine = tmp_path / "mine.toml"
    mine.write_text('name = "mine"\n')
    line = one_line_error(nnspec("scaffold", "llama", "-o", str(mine), "--no-check"), "scaffold")
    assert f"-o/--output {mine} already exists" in line and "--force" in line
    assert mine.read_text() == 'name = "mine"\n'


def test_support_and_compat_name_their_missing_inputs(tmp_path: Path) -> None:
    line = one_line_error(nnspec("support", "--results", str(tmp_path / "matrix.json")), "support")
    assert f"--results {tmp_path / 'matrix.json'}: file not found" in line
    line = one_line_error(nnspec("compat", "--results", str(tmp_path / "nope")), "compat")
    assert f"--results {tmp_path / 'nope'}: folder not found" in line
