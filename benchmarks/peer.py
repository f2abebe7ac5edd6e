"""The peer's isolated virtual environment, created on first use and rebuilt when its pins change."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import venv
from pathlib import Path

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "peer-requirements.txt"
DEFAULT_DIR = HERE.parent / ".bench" / "peer"


class PeerUnavailable(RuntimeError):
    """The peer's environment could not be built (the message says which step failed and why)."""


def python(directory: Path = DEFAULT_DIR) -> Path:
    return directory / "bin" / "python"


def ensure(directory: Path = DEFAULT_DIR) -> Path:
    """Build (or reuse) the environment in ``directory``; returns its interpreter."""
    stamp = directory / ".installed"
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if stamp.is_file() and stamp.read_text() == digest and python(directory).is_file():
        return python(directory)
    print(f"building the peer's environment in {directory} from {REQUIREMENTS.name} ...", file=sys.stderr)
    venv.EnvBuilder(with_pip=True, clear=True).create(directory)
    steps = [
        ["-m", "pip", "install", "--quiet", "--upgrade", "pip"],
        # torch first and alone, so the pin is met by the local CPU build before anything asks for torch.
        ["-m", "pip", "install", "--quiet", "torch==2.13.0"],
        ["-m", "pip", "install", "--quiet", "-r", str(REQUIREMENTS)],
    ]
    for step in steps:
        done = subprocess.run([str(python(directory)), *step], capture_output=True, text=True)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise PeerUnavailable(f"`pip {' '.join(step[2:])}` failed in {directory}: {' / '.join(tail)}")
    stamp.write_text(digest)
    return python(directory)
