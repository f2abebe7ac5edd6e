"""Shared test set-up: one thread per worker (tiny models are slower with many), quiet loads,
and session-wide caches of tiny checkpoints and loaded subjects."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import functools  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Optional  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from nnspec.runtime.registry import adapter_by_name  # noqa: E402
from nnspec.verification import conformance, tiny  # noqa: E402
from nnspec.verification.matrix import quiet_transformers  # noqa: E402

torch.set_num_threads(1)
quiet_transformers()


def one_line(captured: pytest.CaptureFixture, command: str) -> str:
    """The one error line a command printed (``nnspec COMMAND: ...``), with no traceback."""
    out = captured.readouterr()
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"nnspec {command}: "), out.err
    assert "Traceback" not in out.err
    return lines[0]


@functools.cache
def checkpoint(spec_name: str, variant: Optional[str] = None) -> Path:
    """The cached tiny checkpoint of a bundled spec."""
    return tiny.checkpoint(adapter_by_name(spec_name).spec, variant)


@functools.cache
def subject(spec_name: str, variant: Optional[str] = None) -> conformance.Subject:
    """A bundled spec's tiny checkpoint loaded as plain transformers and through nnspec."""
    return conformance.load_subject(f"{spec_name}/{variant or 'base'}", checkpoint(spec_name, variant))


@pytest.fixture(scope="session")
def gpt2_path() -> Path:
    return checkpoint("gpt2")


@pytest.fixture(scope="session")
def llama_path() -> Path:
    return checkpoint("llama")


def pytest_collection_modifyitems(items: list) -> None:
    # Long tests start first (nnterp's suite, the longest, before all), so that a parallel run does
    # not wait for one of them at the end.
    items.sort(key=lambda item: (item.get_closest_marker("nnterp_suite") is None, item.get_closest_marker("long") is None))
