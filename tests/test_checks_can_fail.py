"""The conformance checks catch wrong specs: each mutation below states a false fact about a real
architecture, and the matrix must report which promise broke, on which layer, by how much."""

from __future__ import annotations

from pathlib import Path

import pytest

from nnspec.runtime.registry import adapter_by_name
from nnspec.verification import conformance, tiny

from .conftest import checkpoint

MUTATIONS = {
    # Falcon adds attention into the MLP output in place: without clone the MLP value is wrong.
    "falcon": ("[mlp]\nclone = false\n", {"contribution"}),
    # BLOOM's branches return residual + branch: forgetting it breaks the identity.
    "bloom": ('[attention]\nincludes_residual = ""\n', {"contribution"}),
    # Gemma 2's residual receives the post-norm output, not self_attn's; and its logits are capped.
    # (on a checkpoint whose cap is small enough to shape tiny logits visibly).
    "gemma2": ('[attention]\ncontribution = "self_attn"\n[logits]\ntransforms = []\n', {"contribution", "project_on_vocab"}),
    # OPT's fc1/fc2 see flattened tokens.
    "opt": ("[mlp]\nflattened = false\n", {"contribution", "branch_inputs", "edit_mlps_output"}),
    # Position embeddings are not token embeddings (ground truth: get_input_embeddings()).
    "gpt2": ('[modules]\nembed_tokens = "transformer.wpe"\n', {"branch_inputs"}),
    # A tuple element that is not the hidden state.
    "llama": ("[attention]\nelement = 1\n", {"contribution", "edit_attentions_output"}),
    # Mamba's output_hidden_states has no embeddings entry: read as the usual numbering, the
    # ground truth is off by one block.
    "mamba": ('[layer]\nhidden_states = "inputs"\n', {"layers_io", "read_order"}),
    # xLSTM's recurrence reads left-pad tokens: without the declared limit, the padding row fails
    # by far more than rounding.
    "xlstm": ('[limits]\npadding = ""\n', {"padding"}),
    # Nemotron-H's MoE blocks called token mixers, its Mamba blocks MLPs: every sum still holds, but
    # the MoE mixes no tokens and the Mamba mixer does.
    "nemotron_h": (
        '[attention]\nper_layer = { config_key = "layers_block_type", kinds = { linear_attention = "none", '
        'mlp = "none", moe = "recurrent" }, mlp_modules = { linear_attention = "mixer", full_attention = "", '
        'mlp = "mixer", moe = "" } }\n',
        {"token_mixing"},
    ),
}


#: Config changes that make a mutation visible on a tiny model (test-chosen, not a spec's).
TINY = {"gemma2": {"final_logit_softcapping": 1.0}}


def _with_config(base: str, values: dict) -> Path:
    spec = adapter_by_name(base).spec
    return tiny.checkpoint(spec.model_copy(update={"tiny": spec.tiny.model_copy(update={"config": {**spec.tiny.config, **values}})}))


@pytest.mark.parametrize("base", sorted(MUTATIONS))
def test_wrong_spec_fails_with_location_and_size(base: str, tmp_path: Path) -> None:
    patch, expected = MUTATIONS[base]
    spec_file = tmp_path / f"{base}_wrong.toml"
    spec_file.write_text(f'name = "{base}_wrong"\nextends = "{base}"\nmodel_types = ["{base}"]\n{patch}')
    path = checkpoint(base) if base not in TINY else _with_config(base, TINY[base])
    subject = conformance.load_subject(base, path, spec=str(spec_file))
    results = {r.check: r for r in conformance.run_checks(subject)}
    failed = {name for name, r in results.items() if not r.passed}
    assert expected <= failed, failed
    if "contribution" in expected and "differs" in results["contribution"].error:
        assert "layer 0" in results["contribution"].error and "differs from plain transformers by" in results["contribution"].error


@pytest.mark.parametrize("base", ["bloom", "falcon"])
def test_read_order_row_catches_a_runtime_that_reads_in_model_order_only(base: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """BLOOM's contribution needs the attention's input residual, Falcon binds values before
    rotary: without fetching those early, the documented order fails, and the row must say so."""
    from nnspec import StandardizedTransformer

    monkeypatch.setattr(StandardizedTransformer, "_fetch_early", lambda self, name, i: None)
    subject = conformance.load_subject(base, checkpoint(base))
    (result,) = conformance.run_checks(subject, ["read_order"])
    assert not result.passed and "OutOfOrderReadError" in result.error and "was requested, after" in result.error


def test_out_of_order_read_names_the_standard_values() -> None:
    from nnspec import StandardizedTransformer
    from nnspec.errors import OutOfOrderReadError

    model = StandardizedTransformer(checkpoint("gpt2"))
    with pytest.raises(OutOfOrderReadError, match=r"layers_input\[0\] was requested, after layers_output\[1\].*layers_input, mixers_input, attentions_input"):
        with model.trace("Hello world"):
            model.layers_output[1].save()
            model.layers_input[0].save()


# -- the checks share forwards: each sharing must still catch what separate runs caught -------------

#: The checks that make all their edits in one batched forward (a block of rows per edit).
BATCHED_EDITS = {"residual", "token_mixing", "edit_layers_output", "edit_attentions_output", "edit_mlps_output",
                 "attention_probabilities"}


def test_every_block_of_an_edit_batch_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """A runtime whose writes reach only the first prompts of a batch: every batched edit row
    fails (each block of rows carries its own layer's edit and is compared on its own)."""
    from nnspec.runtime.accessors import ValueAccessor

    subject = conformance.load_subject("llama", checkpoint("llama"))
    original = ValueAccessor.__setitem__
    first = subject.input_ids.shape[0]

    def first_rows_only(self: ValueAccessor, index: int, value: object) -> None:
        kept = self[index].clone()
        kept[:first] = value[:first]
        original(self, index, kept)

    monkeypatch.setattr(ValueAccessor, "__setitem__", first_rows_only)
    results = {r.check: r for r in conformance.run_checks(subject, sorted(BATCHED_EDITS))}
    failed = {name for name, r in results.items() if not r.passed}
    assert failed == BATCHED_EDITS, failed
    assert "[1]" in results["edit_layers_output"].error and "differs from plain transformers by" in results["edit_layers_output"].error


def test_a_value_that_breaks_the_shared_read_fails_only_its_own_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The read-only checks share one trace; a value that cannot be read fails its own check (and
    the read-order row), while the others read theirs again and pass."""
    from nnspec.runtime.accessors import AttentionProbabilitiesAccessor

    subject = conformance.load_subject("llama", checkpoint("llama"))

    def broken(self: AttentionProbabilitiesAccessor, index: int) -> None:
        raise RuntimeError("probabilities broken on purpose")

    monkeypatch.setattr(AttentionProbabilitiesAccessor, "__getitem__", broken)
    results = {r.check: r for r in conformance.run_checks(subject)}
    failed = {name for name, r in results.items() if not r.passed}
    assert failed == {"attention_probabilities", "read_order"}, failed
    assert "probabilities broken on purpose" in results["attention_probabilities"].error


def test_shared_values_are_read_again_for_each_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Values read once serve one :func:`run_checks` call only: a later call sees the runtime as it
    is then (a port that now returns a scaled value fails)."""
    from nnspec.runtime.accessors import ValueAccessor

    subject = conformance.load_subject("gpt2", checkpoint("gpt2"))
    assert all(r.passed for r in conformance.run_checks(subject, ["layers_io", "contribution"]))
    original = ValueAccessor.__getitem__

    def scaled(self: ValueAccessor, index: int) -> object:
        value = original(self, index)
        return value * 1.01 if self.label == "layers_output" and index == 0 else value

    monkeypatch.setattr(ValueAccessor, "__getitem__", scaled)
    results = {r.check: r for r in conformance.run_checks(subject, ["layers_io", "contribution"])}
    assert not results["layers_io"].passed and "layers_output[0]" in results["layers_io"].error
    assert not results["contribution"].passed and "layer 0" in results["contribution"].error
