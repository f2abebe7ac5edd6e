"""nnterp's own test suite, taken from its published wheel and run against nnspec.

Every test that passes on nnterp 1.3.0 (measured into tests/nnterp_suite/baseline.json on the same
checkpoints) must pass on nnspec, except the documented differences of
tests/nnterp_suite/differences.toml, and no listed difference may pass (the list stays exact).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .nnterp_suite import harness

PACKAGE = Path(harness.REPO / "src" / "nnspec")


def _anchor(heading: str) -> str:
    """A Markdown heading's link anchor, as GitHub writes it."""
    kept = "".join(c for c in heading.strip().lower() if c.isalnum() or c in " -_")
    return kept.replace(" ", "-")


def _listing() -> set[str]:
    return {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*") if "__pycache__" not in p.parts}


@pytest.mark.nnterp_suite
def test_nnterp_suite_passes_wherever_nnterp_does(tmp_path: Path) -> None:
    before = _listing()
    reasons: dict[str, str] = {}
    results = harness.run(keep=tmp_path / "pytest.log", reasons=reasons)
    found = harness.compare(results)
    report = {
        kind: {test: f"{results.get(test, 'absent')}: {reasons.get(test, '')[:300]}" for test in found[kind]}
        for kind in ("regressions", "stale", "unknown") if found[kind]
    }
    assert not report, json.dumps(report, indent=1)
    assert _listing() == before, "the suite run wrote inside the installed package"


def test_comparison_flags_regressions_and_stale_differences(monkeypatch: pytest.MonkeyPatch) -> None:
    base = {"a.py::t[m]": "passed", "a.py::u[m]": "passed", "a.py::v[m]": "failed", "a.py::w[m]": "passed"}
    monkeypatch.setattr(harness, "baseline", lambda: base)
    monkeypatch.setattr(harness, "differences", lambda: {"a.py::w[m]": "by design"})
    ours = {"a.py::t[m]": "passed", "a.py::u[m]": "failed", "a.py::v[m]": "passed", "a.py::w[m]": "failed"}
    assert harness.compare(ours) == {"regressions": ["a.py::u[m]"], "stale": [], "unknown": [], "gains": ["a.py::v[m]"]}
    ours["a.py::w[m]"] = "passed"  # a documented difference that no longer holds
    assert harness.compare(ours)["stale"] == ["a.py::w[m]"]
    del ours["a.py::t[m]"]  # a test that did not run at all is never counted as passing
    assert harness.compare(ours)["unknown"] == ["a.py::t[m]"]


def test_differences_name_known_tests_and_sections() -> None:
    base = harness.baseline()
    guide = (harness.REPO / "docs" / "migrating-from-nnterp.md").read_text()
    anchors = {_anchor(line.lstrip("#")) for line in guide.splitlines() if line.startswith("#")}
    for test, why in harness.differences().items():
        assert base.get(test) == "passed", f"{test}: listed as a difference but nnterp does not pass it"
        section = why.rsplit("#", 1)[1].rstrip(")")
        assert section in anchors, f"{test}: no section {section!r} in docs/migrating-from-nnterp.md"


def test_suite_is_unpacked_with_only_the_import_root_renamed(tmp_path: Path) -> None:
    import zipfile

    wheel = harness.wheel()
    suite = harness.unpack(wheel, tmp_path, "nnspec")
    with zipfile.ZipFile(wheel) as archive:
        original = archive.read("nnterp/tests/test_model_renaming.py").decode()
    renamed = (suite / "tests" / "test_model_renaming.py").read_text()
    assert renamed == original.replace("nnterp", "nnspec") and "nnterp" not in renamed
