"""The unserved list names exactly the causal-LM model types no spec serves, each with a reason
about the model's structure, never a tooling gap or a quoted error."""

from __future__ import annotations

import re
import sys

from nnspec.compiler.loader import BUNDLED_DIR
from nnspec.runtime.registry import model_types

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

UNSUPPORTED = tomllib.loads((BUNDLED_DIR.parent / "data" / "unsupported.toml").read_text(encoding="utf-8"))
#: What a reason must not be: a tool that failed, an error message, a to-do.
NOT_A_REASON = re.compile(
    r"tiny config does not build|scaffold could not|Error\b|size of tensor|not written yet|needs an? \[|"
    r"not .*describes yet|load its text model type instead",
    re.IGNORECASE,
)


def test_the_list_is_exactly_the_unserved_causal_lm_types() -> None:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    served = set(model_types())
    assert set(UNSUPPORTED) == set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES) - served
    assert len(served & set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)) >= 150


def test_every_reason_is_structural() -> None:
    bad = {t: r for t, r in UNSUPPORTED.items() if NOT_A_REASON.search(r) or len(r) < 40}
    assert not bad, bad


def test_no_limit_quotes_an_error() -> None:
    from nnspec.runtime.registry import adapter_by_name, spec_names

    bad = {}
    for name in spec_names():
        for capability, reason in adapter_by_name(name).spec.limits.declared().items():
            if NOT_A_REASON.search(reason) or len(reason) < 40:
                bad[f"{name}.{capability}"] = reason
    assert not bad, bad
