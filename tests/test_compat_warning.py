"""The load-time version check: a pair verified as failing for a spec refuses the load (unless
``allow_unverified=True``), an unverified pair warns naming the nearest verified pairs, a passing
pair is silent. Each case loads the tiny Llama checkpoint against a synthetic data file."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from nnspec import StandardizedTransformer
from nnspec.errors import InputTypeError, NnspecWarning, VersionFailureError
from nnspec.runtime import compat
from nnspec.runtime.adapter import installed_version
from tests.conftest import checkpoint

TF, NN = installed_version("transformers"), installed_version("nnsight")


def _data(tmp: Path, installed_status: str | None) -> Path:
    """A compatibility file where llama passes on 1.0.0 and 1.2.0 and, when ``installed_status`` is
    given, has that status under the installed pair."""
    runs = [{"transformers": v, "nnsight": "0.8.1", "torch": "2.13.0", "wall_seconds": 1.0,
             "specs": {"llama": {"status": "pass", "failed": {}, "checkpoints": 1}}} for v in ("1.0.0", "1.2.0")]
    if installed_status is not None:
        failed = {"llama/tied_embeddings skip_layers": "IndexError: too many indices"} if installed_status == "fail" else {}
        runs.append({"transformers": TF, "nnsight": NN, "torch": "2.13.0", "wall_seconds": 1.0,
                     "specs": {"llama": {"status": installed_status, "failed": failed, "checkpoints": 1}}})
    path = tmp / "compatibility.json"
    path.write_text(json.dumps({"schema": compat.SCHEMA, "runs": runs, "gaps": []}))
    return path


@pytest.fixture
def use_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setattr(compat, "_warned", set())

    def point(status: str | None) -> None:
        monkeypatch.setattr(compat, "DATA_FILE", _data(tmp_path, status))

    return point


@pytest.fixture(scope="module")
def llama() -> str:
    return str(checkpoint("llama"))


def test_failing_pair_refuses_the_load_naming_the_rows(use_data, llama: str) -> None:
    use_data("fail")
    with pytest.raises(VersionFailureError, match=rf"FAILING on transformers {TF} with nnsight {NN}.*llama/tied_embeddings skip_layers: IndexError.*allow_unverified=True"):
        StandardizedTransformer(llama, device_map=None)


def test_allow_unverified_loads_with_a_warning(use_data, llama: str) -> None:
    use_data("fail")
    with pytest.warns(NnspecWarning, match=r"FAILING .*llama/tied_embeddings skip_layers.*verified on transformers 1\.2\.0"):
        model = StandardizedTransformer(llama, device_map=None, allow_unverified=True)
    assert model.num_layers > 0


def test_passing_pair_is_silent(use_data, llama: str) -> None:
    use_data("pass")  # the same file with the installed row passing: no error, no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", NnspecWarning)
        StandardizedTransformer(llama, device_map=None)


def test_unverified_pair_warns_once_naming_the_nearest(use_data, llama: str) -> None:
    use_data(None)
    with pytest.warns(NnspecWarning, match=rf"not verified on transformers {TF} with nnsight {NN}; verified on transformers 1\.2\.0 with nnsight 0\.8\.1, transformers 1\.0\.0"):
        StandardizedTransformer(llama, device_map=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error", NnspecWarning)
        StandardizedTransformer(llama, device_map=None)  # once per spec and pair


def test_allow_unverified_must_be_a_bool(llama: str) -> None:
    with pytest.raises(InputTypeError, match="allow_unverified"):
        StandardizedTransformer(llama, device_map=None, allow_unverified="yes")
