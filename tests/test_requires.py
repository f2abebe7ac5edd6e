"""A spec's ``[requires]``: the transformers releases it serves at all, and why others are not.

Outside the range a load is refused before the weights load, naming the spec, the range, the
installed release and the spec's reason (``allow_unverified=True`` loads with a warning); the matrix
marks the spec's rows not run with that reason, and the compatibility page shows n/a* and lists it.
A real config's own range in ``SOURCES.toml`` does the same for its row only."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from nnspec import StandardizedTransformer
from nnspec.errors import NnspecWarning, SpecError, VersionFailureError
from nnspec.runtime import compat
from nnspec.runtime.adapter import Adapter, installed_version
from nnspec.verification import compatibility, matrix, realconfigs
from tests.conftest import checkpoint

TF = installed_version("transformers")
REASON = "these releases build the blocks without the module the spec reads"


def _spec(tmp: Path, specifier: str, reason: str = REASON) -> Path:
    path = tmp / "llama_new.toml"
    path.write_text(
        'name = "llama_new"\nextends = "llama"\nmodel_types = ["llama"]\n\n'
        f'[requires]\ntransformers = "{specifier}"\nreason = "{reason}"\n'
    )
    return path


def test_a_release_outside_the_range_is_refused_before_loading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import transformers

    def no_load(*args, **kwargs):
        raise AssertionError("weights were loaded")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_load)
    with pytest.raises(VersionFailureError) as caught:
        StandardizedTransformer(checkpoint("llama"), spec=str(_spec(tmp_path, "<1")))
    message = str(caught.value)
    assert f"spec 'llama_new' serves transformers <1 only, not {TF}: {REASON}" in message
    assert "Install transformers<1, or pass allow_unverified=True" in message


def test_allow_unverified_loads_with_the_reason_as_a_warning(tmp_path: Path) -> None:
    with pytest.warns(NnspecWarning, match=f"serves transformers <1 only, not {TF}: {REASON}"):
        model = StandardizedTransformer(checkpoint("llama"), spec=str(_spec(tmp_path, "<1")), allow_unverified=True)
    assert model.num_layers > 0


def test_a_release_inside_the_range_is_silent(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", NnspecWarning)
        model = StandardizedTransformer(checkpoint("llama"), spec=str(_spec(tmp_path, ">=1")))
    assert model.num_layers > 0


def test_the_generated_adapter_states_the_range(tmp_path: Path) -> None:
    adapter = Adapter.from_file(_spec(tmp_path, ">=4.46,<9"))
    assert adapter.requires_transformers == ">=4.46,<9" and adapter.requires_reason == REASON
    assert Adapter.from_file(_spec(tmp_path, ">=1")).spec.requires is not None
    from nnspec.runtime.registry import adapter_by_name

    assert adapter_by_name("llama").requires_transformers is None


@pytest.mark.parametrize("specifier, reason, message", [
    ("4.46+", REASON, "'4.46+' is not a version specifier like '>=5.3,<6'"),
    (">=4.46", " ", "requires.reason must say what the releases outside the range lack"),
])
def test_a_bad_range_names_the_file_and_key(tmp_path: Path, specifier: str, reason: str, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        Adapter.from_file(_spec(tmp_path, specifier, reason))
    assert "llama_new.toml" in str(caught.value) and "requires" in str(caught.value) and message in str(caught.value)


def test_unserved_release_reads_the_range() -> None:
    assert compat.unserved_release("spec 'x'", ">=4.46", "why", "4.46.0") == ""
    assert compat.unserved_release("spec 'x'", ">=4.46", "why", "5.0.0.dev0") == ""
    assert compat.unserved_release("spec 'x'", ">=4.46", "why", "4.45.2") == "spec 'x' serves transformers >=4.46 only, not 4.45.2: why"
    assert compat.unserved_release("spec 'x'", None, "", "4.45.2") == ""


def test_the_matrix_does_not_run_an_unserved_release(monkeypatch: pytest.MonkeyPatch) -> None:
    from nnspec.compiler.schema import Requires
    from nnspec.runtime import registry
    from nnspec.verification import tiny

    narrowed = registry.adapter_by_name("llama").spec.model_copy(
        update={"requires": Requires(transformers="<1", reason=REASON)})
    monkeypatch.setattr(registry, "adapter_by_name", lambda name: type("A", (), {"spec": narrowed}))
    monkeypatch.setattr(tiny, "checkpoint", lambda *a, **k: (_ for _ in ()).throw(AssertionError("built")))
    row = matrix.run_one("llama", None)
    assert row["unavailable"] == f"spec 'llama' serves transformers <1 only, not {TF}: {REASON}" and not row["error"]


def test_the_page_marks_unserved_cells_and_lists_the_reasons(tmp_path: Path) -> None:
    def report(version: str, rows: list[dict]) -> dict:
        return {"schema": 3, "wall_seconds": 1.0, "versions": {"transformers": version, "nnsight": "0.8.1", "torch": "2"},
                "rows": rows}

    def row(spec: str, variant, unavailable: str = "", passed: bool = True) -> dict:
        return {"spec": spec, "variant": variant, "error": "", "unavailable": unavailable,
                "results": [{"check": "layers_io", "passed": passed, "error": "" if passed else "boom"}]}

    old = f"spec 'jamba' serves transformers >=4.54 only, not 4.45.2: {REASON}"
    config = "config 'org/model' serves transformers >=4.48 only, not 4.45.2: an older release cannot read its rope_scaling"
    for name, version, rows in (
        ("a", "4.45.2", [row("jamba", None, old), row("llama", None), row("llama", "hub:org/model", config),
                         row("gpt2", None, "transformers 4.45.2 has no model type 'gpt2'")]),
        ("b", "5.0.0", [row("jamba", None), row("llama", None), row("llama", "hub:org/model")]),
    ):
        (tmp_path / name).mkdir()
        (tmp_path / name / "matrix.json").write_text(json.dumps(report(version, rows)))
    data = compatibility.merge(tmp_path)
    first = data["runs"][0]["specs"]
    assert first["jamba"]["status"] == "unavailable" and first["llama"]["status"] == "pass"
    assert first["llama"]["not_run"] == {"llama/hub:org/model": config}
    page = compatibility.markdown(data)
    assert "| jamba | n/a* | pass |" in page and "| gpt2 | n/a | - |" in page and "| llama | pass | pass |" in page
    assert f"- jamba (tf 4.45.2): spec 'jamba' serves transformers >=4.54 only: {REASON}" in page
    assert "- llama/hub:org/model (tf 4.45.2): config 'org/model' serves transformers >=4.48 only: an older" in page


def test_a_real_config_range_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    assert realconfigs._release_range("org/m", {}) == ""
    assert realconfigs._release_range("org/m", {"transformers": ">=4.48", "transformers_reason": "why"}) == ">=4.48"
    from nnspec.errors import TinyCheckpointError

    with pytest.raises(TinyCheckpointError, match=r"\['org/m'\]: transformers = '4.48\+' is not a version specifier"):
        realconfigs._release_range("org/m", {"transformers": "4.48+", "transformers_reason": "why"})
    with pytest.raises(TinyCheckpointError, match="needs transformers_reason"):
        realconfigs._release_range("org/m", {"transformers": ">=4.48"})
    with pytest.raises(TinyCheckpointError, match="transformers_reason without a transformers range"):
        realconfigs._release_range("org/m", {"transformers_reason": "why"})


def test_a_child_spec_does_not_inherit_the_range(tmp_path: Path) -> None:
    """A release's own failure is a fact about one model type: a spec that extends one with
    [requires] is served on every release unless it states its own."""
    parent = _spec(tmp_path, "<1")
    child = tmp_path / "llama_child.toml"
    child.write_text('name = "llama_child"\nextends = "llama_new"\nmodel_types = ["llama"]\n')
    from nnspec.compiler.loader import load_spec_file

    assert load_spec_file(parent).spec.requires is not None
    assert load_spec_file(child).spec.requires is None
