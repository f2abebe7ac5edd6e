"""A branch's ``element`` as a path into nested tuples: an attention that returns
``((output, cache), bias)`` states ``element = [0, 0]``. Reading and writing follow the path;
a path that does not end on a tensor fails naming what the module returned; a bad path is
refused in the spec file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nnspec.compiler.records import Read
from nnspec.errors import ModelStructureError, SpecError
from nnspec.runtime.adapter import Adapter
from nnspec.runtime.ports import pick, replace

HIDDEN, OTHER = torch.ones(2), torch.zeros(2)


def test_pick_follows_the_path() -> None:
    assert pick(HIDDEN, 0) is HIDDEN  # a module that returns the tensor itself
    assert pick((HIDDEN, OTHER), 1) is OTHER
    assert pick(((HIDDEN, None), OTHER), (0, 0), where="w") is HIDDEN
    assert pick(((HIDDEN, None), OTHER), [0, 0], where="w") is HIDDEN


@pytest.mark.parametrize("raw, element, found", [
    (((HIDDEN, None), OTHER), 0, "a tuple of 2 (element types: tuple, Tensor), so element 0"),
    (((None, HIDDEN), OTHER), (0, 0), "a tuple of 2 (element types: NoneType, Tensor), so element 0"),
    ((HIDDEN,), 3, "a tuple of 1 (element types: Tensor), so element 3"),
])
def test_a_path_that_ends_off_a_tensor_names_what_the_module_returned(raw, element, found: str) -> None:
    with pytest.raises(ModelStructureError, match=r"spec.toml: attention.element = .*: the module returned " + found.replace("(", r"\(").replace(")", r"\)")):
        pick(raw, element, where=f"spec.toml: attention.element = {element}")


def test_replace_rebuilds_every_level() -> None:
    cache = object()
    out = replace(((HIDDEN, cache), OTHER), (0, 0), OTHER)
    assert out[0][0] is OTHER and out[0][1] is cache and out[1] is OTHER and isinstance(out[0], tuple)
    assert replace([HIDDEN, cache], 0, OTHER) == [OTHER, cache]
    assert replace(HIDDEN, 0, OTHER) is OTHER


def _spec(tmp: Path, element: str) -> Path:
    path = tmp / "nested.toml"
    path.write_text(f'name = "nested"\nextends = "llama"\nmodel_types = ["llama"]\n\n[attention]\nelement = {element}\n')
    return path


def test_the_record_states_the_path(tmp_path: Path) -> None:
    adapter = Adapter.from_file(_spec(tmp_path, "[0, 0]"))
    record = type(adapter).attentions_output
    assert isinstance(record, Read) and record.element == (0, 0)


@pytest.mark.parametrize("element", ["[]", "[0, -1]", "-1", "[true]"])
def test_a_bad_path_is_refused_naming_the_file_and_key(tmp_path: Path, element: str) -> None:
    with pytest.raises(SpecError) as caught:
        Adapter.from_file(_spec(tmp_path, element))
    assert "nested.toml" in str(caught.value) and "attention.element" in str(caught.value)
