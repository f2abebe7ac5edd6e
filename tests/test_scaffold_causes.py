"""Conformance results carry structured failure fields, and the scaffold decides from them alone."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any, Optional

import pytest
import torch

from nnspec.errors import ConformanceError
from nnspec.scaffold import draft
from nnspec.verification import compatibility, conformance, matrix

from .conftest import checkpoint


def result(check: str, cause: Optional[str] = None, message: str = "", variant: Optional[str] = None,
           layer: Optional[int] = None) -> conformance.CheckResult:
    if cause is None:
        return conformance.CheckResult(check, True, 0.0, 0.0, variant=variant)
    return conformance.CheckResult(check, False, float("nan"), 0.0, message, cause, layer, variant, 0.5)


def settle(monkeypatch: pytest.MonkeyPatch, rounds: list[list[conformance.CheckResult]],
           body: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """The body ``_settle`` leaves when the checks return ``rounds`` in turn (then all pass)."""
    script = iter(rounds)
    monkeypatch.setattr(draft, "_run_checks", lambda body, name: next(script, [result("logits")]))
    body = copy.deepcopy(body or {"name": "x", "extends": "llama", "variants": {"own": {"k": 1}}})
    draft._settle(body, "x", check=True)
    return body


def test_same_cause_with_other_wording_gives_the_same_draft(monkeypatch: pytest.MonkeyPatch) -> None:
    worded = settle(monkeypatch, [[result("qkv", "probabilities_not_softmax_qk", "qkv: softmax(q k^T) of layer 0 vs attentions[0] differs by 0.3")]])
    reworded = settle(monkeypatch, [[result("qkv", "probabilities_not_softmax_qk", "scores disagree")]])
    assert worded == reworded and reworded["attention"] == {"score_scale": 1.0}
    # A second refutation of the same cause: the score is declared other than scaled dot-product.
    twice = settle(monkeypatch, [[result("qkv", "probabilities_not_softmax_qk", "a")]] * 2)
    assert twice["attention"] == {"score": "other"} and "limits" not in twice


def test_message_text_does_not_decide(monkeypatch: pytest.MonkeyPatch) -> None:
    """A message naming what another cause's message names changes nothing: the cause decides."""
    body = settle(monkeypatch, [[result("qkv", "qkv_shape", "softmax(q k^T) attention_heads_output vs attention output")]])
    assert "score_scale" not in body["attention"] and "score" not in body["attention"]
    assert body["limits"] == {"qkv": draft.LIMIT_REASONS["qkv_shape"], "per_head_output": draft.LIMIT_REASONS["qkv_shape"]}
    heads = settle(monkeypatch, [[result("qkv", "heads_output_not_projection_input", "nothing familiar")]])
    assert heads["limits"] == {"per_head_output": draft.LIMIT_REASONS["heads_output_not_projection_input"]}
    assert heads["attention"] == {"per_head_output": ""}


def test_limit_reasons_are_fixed_sentences(monkeypatch: pytest.MonkeyPatch) -> None:
    body = settle(monkeypatch, [[result("attention_probabilities", "softmax_count", "layer 3 computed 7 softmaxes (tolerance 1e-5)", layer=3)]])
    reason = body["limits"]["attention_probabilities"]
    assert reason == draft.LIMIT_REASONS["softmax_count"] and not re.search(r"\d", reason)
    assert set(draft.LIMIT_REASONS) == set(conformance.FAILURE_CAUSES)


def test_failing_inherited_variant_found_from_the_variant_field(monkeypatch: pytest.MonkeyPatch) -> None:
    """A variant failing where the base passes is dropped; its check name carries no variant."""
    rounds = [[result("logits"), result("logits", "mismatch", "logits: logits differ", variant="parents_moe")]]
    body = settle(monkeypatch, rounds)
    assert body["variants"] == {"own": {"k": 1}} and body["unset"] == ["variants.parents_moe"]
    # A check failing on the base as well is not blamed on the variant.
    both = [[result("logits", "mismatch", "x"), result("logits", "mismatch", "x", variant="parents_moe")]]
    assert settle(monkeypatch, both)["variants"] == {"own": {"k": 1}}


def test_result_label_names_the_variant() -> None:
    assert result("qkv", "mismatch", variant="moe").label == "qkv [moe]" and result("qkv").label == "qkv"


def test_assert_close_carries_cause_layer_and_measured_error() -> None:
    a, b = torch.zeros(2, 3), torch.zeros(2, 3)
    b[1, 2] = 0.25
    with pytest.raises(ConformanceError) as info:
        conformance.assert_close("qkv", "x", a, b, cause="probabilities_not_softmax_qk", layer=4)
    assert (info.value.cause, info.value.layer, info.value.max_error) == ("probabilities_not_softmax_qk", 4, 0.25)
    with pytest.raises(ConformanceError) as info:
        conformance.assert_close("logits", "x", a, b[:1])
    assert info.value.cause == "shape_mismatch" and info.value.max_error is None
    crashed = conformance.failed_result("logits", KeyError("k"), variant="v")
    assert (crashed.cause, crashed.variant, crashed.passed) == ("error", "v", False)


def test_a_real_check_reports_its_cause(tmp_path: Path) -> None:
    """Llama with unscaled scores declared: qkv fails on layer 0 for the softmax-of-scores cause,
    with the measured error the message states."""
    spec = tmp_path / "llama_unscaled.toml"
    spec.write_text('name = "llama_unscaled"\nextends = "llama"\ndescription = "test"\nmodel_types = ["llama"]\n'
                    '[attention]\nscore_scale = 1.0\n', encoding="utf-8")
    subject = conformance.load_subject("llama_unscaled", checkpoint("llama"), spec=str(spec))
    (qkv,) = conformance.run_checks(subject, ["qkv"])
    assert not qkv.passed and qkv.cause == "probabilities_not_softmax_qk" and qkv.layer == 0
    stated = float(re.search(r"differs from plain transformers by (\S+)", qkv.error).group(1))
    assert qkv.max_error is not None and qkv.max_error > 1e-4 and f"{qkv.max_error:.3g}" == f"{stated:.3g}"


def test_matrix_schema_is_one_the_merger_reads() -> None:
    assert matrix.SCHEMA == 3 and matrix.SCHEMA in compatibility.MATRIX_SCHEMAS
