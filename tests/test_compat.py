"""Version compatibility: merging matrix runs, the table, gaps, old layouts, and the load warning."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from nnspec.runtime import compat
from nnspec.verification import compatibility


def run(tmp: Path, name: str, transformers: str, nnsight: str, rows: list, schema: int = 2) -> None:
    folder = tmp / name
    folder.mkdir(parents=True)
    report = {"schema": schema, "versions": {"transformers": transformers, "nnsight": nnsight, "torch": "2.13.0"},
              "wall_seconds": 12.3, "rows": rows}
    (folder / "matrix.json").write_text(json.dumps(report))


def row(spec: str, variant=None, ok: bool = True, unavailable: str = "") -> dict:
    results = [] if unavailable else [{"check": "logits", "passed": ok, "error": "" if ok else "ConformanceError: logits differ"}]
    data = {"spec": spec, "variant": variant, "error": "", "results": results}
    if unavailable:
        data["unavailable"] = unavailable
    return data


def test_merge_table_and_gaps(tmp_path: Path) -> None:
    run(tmp_path, "a", "5.24.0", "0.8.1", [row("gpt2"), row("llama"), row("llama", "tied", ok=False)])
    run(tmp_path, "b", "4.57.6", "0.8.1", [row("gpt2"), row("qwen3_next", unavailable="transformers 4.57.6 has no model type 'qwen3_next'")], schema=2)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "gap.json").write_text(json.dumps({"transformers": "9.0.0", "nnsight": "0.8.1", "reason": "the package registry does not serve transformers 9.0.0"}))
    data = compatibility.merge(tmp_path)
    assert [r["transformers"] for r in data["runs"]] == ["4.57.6", "5.24.0"]
    newest = data["runs"][1]["specs"]
    assert newest["gpt2"]["status"] == "pass" and newest["llama"]["status"] == "fail"
    assert "llama/tied logits" in newest["llama"]["failed"]
    assert data["runs"][0]["specs"]["qwen3_next"]["status"] == "unavailable"
    page = compatibility.markdown(data)
    assert "| llama | - | **FAIL** |" in page and "| qwen3_next | n/a | - |" in page
    assert "registry does not serve transformers 9.0.0" in page and "## Failing rows" in page


def test_old_and_unknown_result_layouts(tmp_path: Path) -> None:
    run(tmp_path, "old", "5.2.0", "0.8.1", [{"spec": "gpt2", "variant": None, "error": "", "results": []}], schema=1)
    assert compatibility.merge(tmp_path)["runs"][0]["specs"]["gpt2"]["status"] == "pass"
    run(tmp_path, "future", "5.3.0", "0.8.1", [], schema=7)
    with pytest.raises(compatibility.CompatibilityDataError, match=r"future/matrix.json: matrix results schema 7"):
        compatibility.merge(tmp_path)
    bad = tmp_path / "compatibility.json"
    bad.write_text(json.dumps({"schema": 0, "runs": []}))
    with pytest.raises(compatibility.CompatibilityDataError, match="expected 1"):
        compat.load(bad)


def test_warns_once_naming_the_nearest_verified_versions() -> None:
    data = {"schema": 1, "gaps": [], "runs": [
        {"transformers": "5.3.0", "nnsight": "0.8.1", "specs": {"gpt2": {"status": "pass", "failed": {}}}},
        {"transformers": "5.24.0", "nnsight": "0.8.1", "specs": {"gpt2": {"status": "pass", "failed": {}}}},
        {"transformers": "4.57.6", "nnsight": "0.8.1", "specs": {"gpt2": {"status": "fail", "failed": {}},
                                                                 "llama": {"status": "fail", "failed": {}}}},
    ]}
    assert compat.warn_if_unverified("gpt2", "5.24.0", "0.8.1", data) is None
    with pytest.warns(UserWarning, match=r"spec 'gpt2' is not verified on transformers 5.20.0 with nnsight 0.8.1; verified on transformers 5.24.0 with nnsight 0.8.1, transformers 5.3.0"):
        compat.warn_if_unverified("gpt2", "5.20.0", "0.8.1", data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert compat.warn_if_unverified("gpt2", "5.20.0", "0.8.1", data) is None, "once only"
    with pytest.warns(UserWarning, match="no verified version pair passes"):
        compat.warn_if_unverified("llama", "4.57.6", "0.8.1", data, allow_unverified=True)
    assert compat.warn_if_unverified("my_private_spec", "4.57.6", "0.8.1", data) is None, "specs the runs do not cover: silent"


def test_shipped_data_reads_and_covers_the_installed_versions() -> None:
    data = compat.load()
    if data is None:
        pytest.skip("no compatibility data shipped yet")
    from nnspec.runtime.adapter import installed_version

    pairs = {(r["transformers"], r["nnsight"]) for r in data["runs"]}
    assert (installed_version("transformers"), installed_version("nnsight")) in pairs


def test_the_declared_transformers_range_matches_the_shipped_runs() -> None:
    """pyproject's lower bound on transformers is the oldest release the shipped runs cover, and
    every run from it on passes every spec it has (n/a: the model type is missing there, or the
    spec's own [requires] range leaves the release out)."""
    import tomllib

    from nnspec.runtime.compat import load, version_key

    root = Path(__file__).resolve().parent.parent
    declared = next(d for d in tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]
                    if d.startswith("transformers"))
    data = load()
    assert data is not None
    oldest = min((r["transformers"] for r in data["runs"]), key=version_key)
    assert declared == f"transformers>={'.'.join(oldest.split('.')[:2])}", (declared, oldest)
    failing = [(r["transformers"], r["nnsight"], name) for r in data["runs"]
               for name, entry in r["specs"].items() if entry["status"] == "fail"]
    assert not failing, failing
