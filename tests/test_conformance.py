"""The conformance matrix: every bundled spec and variant x every contract check, against plain
transformers. A spec is supported when its row passes here."""

from __future__ import annotations

import pytest

from nnspec.runtime.conformance import CHECKS
from nnspec.runtime.matrix import subjects

from .conftest import subject

PAIRS = subjects()


@pytest.mark.parametrize("check", list(CHECKS))
@pytest.mark.parametrize(
    "spec_name,variant",
    [pytest.param(s, v, id=f"{s}/{v or 'base'}", marks=pytest.mark.xdist_group(f"{s}/{v}")) for s, v in PAIRS],
)
def test_conformance(spec_name: str, variant: str, check: str) -> None:
    CHECKS[check](subject(spec_name, variant))


def test_every_spec_is_in_the_matrix() -> None:
    from nnspec.runtime.registry import spec_names

    assert {s for s, _ in PAIRS} == set(spec_names())
    assert len(spec_names()) >= 12
