"""The conformance checks catch wrong specs: each mutation below states a false fact about a real
architecture, and the matrix must report which promise broke, on which layer, by how much."""

from __future__ import annotations

from pathlib import Path

import pytest

from nnspec.runtime import conformance

from .conftest import checkpoint

MUTATIONS = {
    # Falcon adds attention into the MLP output in place: without clone the MLP value is wrong.
    "falcon": ("[mlp]\nclone = false\n", {"contribution"}),
    # BLOOM's branches return residual + branch: forgetting it breaks the identity.
    "bloom": ('[attention]\nincludes_residual = ""\n', {"contribution"}),
    # Gemma 2's residual receives the post-norm output, not self_attn's; and its logits are capped.
    "gemma2": ('[attention]\ncontribution = "self_attn"\n[logits]\ntransforms = []\n', {"contribution", "project_on_vocab"}),
    # OPT's fc1/fc2 see flattened tokens.
    "opt": ("[mlp]\nflattened = false\n", {"contribution", "branch_inputs", "edit_mlps_output"}),
    # A tuple element that is not the hidden state.
    "llama": ("[attention]\nelement = 1\n", {"contribution", "edit_attentions_output"}),
}


@pytest.mark.parametrize("base", sorted(MUTATIONS))
def test_wrong_spec_fails_with_location_and_size(base: str, tmp_path: Path) -> None:
    patch, expected = MUTATIONS[base]
    spec_file = tmp_path / f"{base}_wrong.toml"
    spec_file.write_text(f'name = "{base}_wrong"\nextends = "{base}"\nmodel_types = ["{base}"]\n{patch}')
    subject = conformance.load_subject(base, checkpoint(base), spec=str(spec_file))
    results = {r.check: r for r in conformance.run_checks(subject)}
    failed = {name for name, r in results.items() if not r.passed}
    assert expected <= failed, failed
    if "contribution" in expected and "differs" in results["contribution"].error:
        assert "layer 0" in results["contribution"].error and "differs from plain transformers by" in results["contribution"].error
