"""A bias the block adds together with a branch output (GPT-NeoX-Japanese's last attention returns
it beside its output) is part of that branch's contribution: with a non-zero bias, the identity
still holds and setting the contribution gives the same logits as the same edit made with a hook."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from nnspec import StandardizedTransformer

from .conftest import checkpoint


@pytest.fixture(scope="module")
def biased(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = AutoModelForCausalLM.from_pretrained(checkpoint("gpt_neox_japanese"), dtype=torch.float32)
    last = model.gpt_neox_japanese.layers[-1].attention
    with torch.no_grad():
        last.dense_bias.copy_(torch.randn(last.dense_bias.shape, generator=torch.Generator().manual_seed(0)))
    path = tmp_path_factory.mktemp("gnj-bias")
    model.save_pretrained(path)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (path / name).write_bytes((checkpoint("gpt_neox_japanese") / name).read_bytes())
    return path


def test_the_bias_is_part_of_the_contribution(biased: Path) -> None:
    model = StandardizedTransformer(biased)
    last = model.num_layers - 1
    with model.trace("The Eiffel Tower is in Paris"):
        x = model.layers_input[last].save()
        a = model.attentions_output[last].save()
        f = model.mlps_output[last].save()
        y = model.layers_output[last].save()
    torch.testing.assert_close(x + a + f, y)


def test_setting_it_keeps_the_bias(biased: Path) -> None:
    from nnspec.verification.conformance import load_subject, run_checks

    subject = load_subject("gnj-bias", biased)
    results = {r.check: r for r in run_checks(subject, ["contribution", "edit_attentions_output", "read_order"])}
    assert all(r.passed for r in results.values()), {k: r.error for k, r in results.items() if not r.passed}


def test_a_bias_element_beyond_the_output_is_a_named_error(tmp_path: Path) -> None:
    from nnspec.errors import ModelStructureError

    spec = tmp_path / "gnj_wrong.toml"
    spec.write_text('name = "gnj_wrong"\nextends = "gpt_neox_japanese"\nmodel_types = ["gpt_neox_japanese"]\n'
                    "[attention]\nbias_element = 7\n")
    model = StandardizedTransformer(checkpoint("gpt_neox_japanese"), spec=str(spec))
    with pytest.raises(ModelStructureError, match="bias_element = 7, but the module returned a tuple of 3"):
        with model.trace("Hello world"):
            model.attentions_output[0].save()
