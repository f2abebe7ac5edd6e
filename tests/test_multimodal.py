"""Vision-language checkpoints load whole; the standard names serve the language model, and images
given with the prompt flow through: values at the image-token positions are the ones plain
transformers computes from those pixels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from nnspec import StandardizedTransformer

from .conftest import checkpoint


@pytest.fixture(scope="module")
def gemma3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Gemma 3 checkpoint with a random image projector (random init leaves it zero, so
    images would change nothing)."""
    model = AutoModelForCausalLM.from_pretrained(checkpoint("gemma3"), dtype=torch.float32)
    with torch.no_grad():
        weight = model.model.multi_modal_projector.mm_input_projection_weight
        weight.copy_(torch.randn(weight.shape, generator=torch.Generator().manual_seed(0)))
    path = tmp_path_factory.mktemp("gemma3-vision")
    model.save_pretrained(path)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (path / name).write_bytes((checkpoint("gemma3") / name).read_bytes())
    return path


def _image_prompt(path: Path) -> tuple[torch.Tensor, torch.Tensor, slice]:
    config = json.loads((path / "config.json").read_text())
    tokens = config["mm_tokens_per_image"]
    ids = torch.tensor([[5, 6] + [config["image_token_index"]] * tokens + [7, 8]])
    size = config["vision_config"]["image_size"]
    pixels = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    return ids, pixels, slice(2, 2 + tokens)


def test_images_flow_through_and_standard_names_see_their_positions(gemma3: Path) -> None:
    ids, pixels, image = _image_prompt(gemma3)
    hf = AutoModelForCausalLM.from_pretrained(gemma3, attn_implementation="eager", dtype=torch.float32).eval()
    with torch.no_grad():
        reference = hf(input_ids=ids, pixel_values=pixels, output_hidden_states=True)
        other = hf(input_ids=ids, pixel_values=pixels.flip(-1), output_hidden_states=True)
    model = StandardizedTransformer(gemma3, attn_implementation="eager", dtype=torch.float32)
    assert type(model._module).__name__ == "Gemma3ForConditionalGeneration"
    with model.trace(ids, pixel_values=pixels):
        embeddings = model.layers_input[0].save()
        first = model.layers_output[0].save()
        logits = model.logits.save()
    torch.testing.assert_close(embeddings, reference.hidden_states[0])
    torch.testing.assert_close(first, reference.hidden_states[1])
    torch.testing.assert_close(logits, reference.logits)
    # The pixels reach the image positions (another image gives other values there).
    assert (reference.hidden_states[1][0, image] - other.hidden_states[1][0, image]).abs().max() > 1e-3


def test_text_only_prompt_on_the_whole_model(gemma3: Path) -> None:
    model = StandardizedTransformer(gemma3)
    with model.trace("The Eiffel Tower is in the city of"):
        x = model.layers_input[1].save()
        a = model.attentions_output[1].save()
        f = model.mlps_output[1].save()
        y = model.layers_output[1].save()
    torch.testing.assert_close(x + a + f, y)
