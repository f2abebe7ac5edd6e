"""What the conformance checks cost: forwards per check, counted with a forward pre-hook on the
plain model and a counter on every nnspec trace. The checks share one plain-transformers forward
(at load) and one trace of the standard values, and make each edit check's edits in one batched
forward, so the number of forwards does not grow with the number of layers."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import pytest

from nnspec import StandardizedTransformer
from nnspec.runtime.registry import adapter_by_name
from nnspec.verification import conformance, tiny

from .conftest import checkpoint

#: The most forwards (nnspec traces + plain-transformers forwards) all checks may take together.
BUDGET = 40
#: Checks that compare values read once for all (no forward of their own).
READ_ONLY = ("contribution", "project_on_vocab", "branch_inputs", "qkv")
#: Checks whose edits of every layer run in one batched forward each side.
BATCHED = ("residual", "token_mixing", "edit_layers_output", "edit_attentions_output", "edit_mlps_output", "attention_probabilities")


class Counter:
    """Forwards run while a check runs: ``hf`` on the plain model, ``nnspec`` traces."""

    def __init__(self, subject: conformance.Subject, monkeypatch: pytest.MonkeyPatch) -> None:
        self.hf = self.nnspec = 0
        self.rows: list[int] = []
        subject.hf.register_forward_pre_hook(self._hf, with_kwargs=True)
        original = StandardizedTransformer.interleave

        def interleave(model: Any, *args: Any, **kwargs: Any) -> Any:
            self.nnspec += 1
            return original(model, *args, **kwargs)

        monkeypatch.setattr(StandardizedTransformer, "interleave", interleave)

    def _hf(self, module: Any, args: tuple, kwargs: dict) -> None:
        self.hf += 1
        ids = args[0] if args else kwargs.get("input_ids")
        self.rows.append(0 if ids is None else ids.shape[0])

    @property
    def total(self) -> int:
        return self.hf + self.nnspec


def per_check(subject: conformance.Subject, names: Optional[list[str]] = None) -> dict[str, int]:
    """Forwards each check of one :func:`run_checks` call takes (a value read once for all counts
    for the first check that asks); every check must pass."""
    counts: dict[str, int] = {}
    with pytest.MonkeyPatch.context() as patch:
        counter = Counter(subject, patch)
        for name, check in list(conformance.CHECKS.items()):

            def counted(s: conformance.Subject, check: Any = check, name: str = name) -> float:
                before = counter.total
                try:
                    return check(s)
                finally:
                    counts[name] = counter.total - before

            patch.setitem(conformance.CHECKS, name, counted)
        results = conformance.run_checks(subject, names)
    assert all(r.passed for r in results), [f"{r.check}: {r.error}" for r in results if not r.passed]
    return counts


def _gpt2(layers: int) -> Path:
    spec = adapter_by_name("gpt2").spec
    return tiny.checkpoint(spec.model_copy(update={"tiny": spec.tiny.model_copy(update={"config": {**spec.tiny.config, "n_layer": layers}})}))


def test_all_checks_fit_the_budget_and_do_not_grow_with_depth() -> None:
    shallow = per_check(conformance.load_subject("gpt2", checkpoint("gpt2")))
    deep = per_check(conformance.load_subject("gpt2-6", _gpt2(6)))
    assert sum(shallow.values()) + 1 <= BUDGET  # + the reference forward at load
    assert deep == shallow, {k: (shallow[k], deep[k]) for k in deep if deep[k] != shallow[k]}
    assert all(deep[name] == 0 for name in READ_ONLY), deep
    assert all(deep[name] <= 2 for name in BATCHED), deep


def test_hybrid_fits_the_budget() -> None:
    # Mamba and attention layers, MoE MLPs, recurrent states: refusals cost no forward.
    counts = per_check(conformance.load_subject("jamba", checkpoint("jamba")))
    assert sum(counts.values()) + 1 <= BUDGET, counts
    assert counts["mixer_states"] <= 1 and all(counts[name] == 0 for name in READ_ONLY), counts


def test_a_subset_computes_only_what_it_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    subject = conformance.load_subject("llama", checkpoint("llama"))
    counter = Counter(subject, monkeypatch)
    (result,) = conformance.run_checks(subject, ["layers_io"])
    assert result.passed and (counter.hf, counter.nnspec) == (0, 1)  # the shared read, nothing else
    (result,) = conformance.run_checks(subject, ["logits"])
    assert result.passed and (counter.hf, counter.nnspec) == (1, 3)  # + text prompts, both ways
    assert max(counter.rows) <= len(conformance.PROMPTS)  # no batch of edits ran


def test_edit_batches_hold_one_block_of_rows_per_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    subject = conformance.load_subject("llama", checkpoint("llama"))
    counter = Counter(subject, monkeypatch)
    (result,) = conformance.run_checks(subject, ["edit_layers_output"])
    assert result.passed and counter.rows == [subject.num_layers * subject.input_ids.shape[0]]
