"""The conformance matrix: every bundled spec, its variants and the real published configs of the
model types it serves, each against plain transformers on every contract check. A spec is
supported when its rows pass here.

One test per checkpoint runs every check on one loaded pair of models (the checks share the
reference forward and the loaded models), and reports every failing check with its reason.
"""

from __future__ import annotations

import pytest

from nnspec.verification import conformance
from nnspec.verification.conformance import CHECKS
from nnspec.verification.matrix import row_label, subjects

from .conftest import checkpoint

PAIRS = subjects()


@pytest.mark.parametrize("spec_name,variant", [pytest.param(s, v, id=row_label(s, v)) for s, v in PAIRS])
def test_conformance(spec_name: str, variant: str) -> None:
    subject = conformance.load_subject(row_label(spec_name, variant), checkpoint(spec_name, variant))
    results = conformance.run_checks(subject)
    assert [r.check for r in results] == list(CHECKS)
    failed = [f"  {r.check}: {r.error}" for r in results if not r.passed]
    assert not failed, f"{len(failed)} of {len(results)} checks fail:\n" + "\n".join(failed)


def test_every_spec_is_in_the_matrix() -> None:
    from nnspec.runtime.registry import spec_names

    assert {s for s, _ in PAIRS} == set(spec_names())
    assert len(spec_names()) >= 12
