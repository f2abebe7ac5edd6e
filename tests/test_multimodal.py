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


# -- an image through the model's own processor ---------------------------------------------------


@pytest.fixture(scope="module")
def llava(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """The tiny LLaVA checkpoint with its processor: the tokenizer gains the image token, the model
    a row for it (the config's image token id points there), and a CLIP image processor at the
    vision tower's image size."""
    from transformers import AutoTokenizer, CLIPImageProcessor, LlavaForConditionalGeneration, LlavaProcessor

    source = checkpoint("llava")
    tokenizer = AutoTokenizer.from_pretrained(source)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    model = LlavaForConditionalGeneration.from_pretrained(source, dtype=torch.float32)
    model.resize_token_embeddings(len(tokenizer))
    model.config.image_token_index = tokenizer.convert_tokens_to_ids("<image>")
    vision = model.config.vision_config
    size = vision.image_size
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size}),
        tokenizer=tokenizer,
        patch_size=vision.patch_size,
        vision_feature_select_strategy=model.config.vision_feature_select_strategy,
        num_additional_image_tokens=1,
    )
    path = tmp_path_factory.mktemp("llava-processor")
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path, processor


def _image(seed: int, size: int = 64) -> object:
    from PIL import Image

    pixels = torch.randint(0, 256, (size, size, 3), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)
    return Image.fromarray(pixels.numpy())


def test_processor_output_traces_and_image_positions_match_plain_transformers(llava: tuple[Path, object]) -> None:
    from transformers import LlavaForConditionalGeneration

    path, processor = llava
    inputs = processor(text="<image> The Eiffel Tower is in", images=_image(0), return_tensors="pt")
    image = inputs["input_ids"][0] == processor.tokenizer.convert_tokens_to_ids("<image>")
    assert int(image.sum()) > 1
    hf = LlavaForConditionalGeneration.from_pretrained(path, attn_implementation="eager", dtype=torch.float32).eval()
    with torch.no_grad():
        reference = hf(**inputs, output_hidden_states=True)
        other = hf(**processor(text="<image> The Eiffel Tower is in", images=_image(1), return_tensors="pt"),
                   output_hidden_states=True)
    model = StandardizedTransformer(path, attn_implementation="eager", dtype=torch.float32)
    assert type(model._module).__name__ == "LlavaForConditionalGeneration"
    with model.trace(inputs):
        first = model.layers_output[0].save()
        middle = model.layers_output[1].save()
        logits = model.logits.save()
    # The whole sequence, image positions included, as plain transformers computes it.
    assert first.shape[1] == inputs["input_ids"].shape[1]
    torch.testing.assert_close(first[0, image], reference.hidden_states[1][0, image])
    torch.testing.assert_close(middle[0, image], reference.hidden_states[2][0, image])
    torch.testing.assert_close(logits, reference.logits)
    # The pixels reach those positions: another image gives other values there.
    assert (reference.hidden_states[1][0, image] - other.hidden_states[1][0, image]).abs().max() > 1e-3
    # The same through token ids with pixel_values beside them.
    with model.trace(inputs["input_ids"], pixel_values=inputs["pixel_values"]):
        again = model.layers_output[0].save()
    torch.testing.assert_close(again, first)


# -- loading and shrinking vision-language configs -------------------------------------------------


def test_the_class_follows_what_the_spec_describes() -> None:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText

    from nnspec.runtime.loading import auto_class
    from nnspec.runtime.registry import adapter_by_name

    # A wrapper spec (modules.language_model) describes the whole model.
    assert auto_class(AutoConfig.for_model("llava"), adapter_by_name("llava").spec) is AutoModelForImageTextToText
    # A spec of what the causal-LM class builds keeps it (Llama 4's text model).
    assert auto_class(AutoConfig.for_model("llama4"), adapter_by_name("llama4").spec) is AutoModelForCausalLM
    assert auto_class(AutoConfig.for_model("llama")) is AutoModelForCausalLM
    # A type in no causal-LM mapping is built by the image-text-to-text class whatever the spec.
    assert auto_class(AutoConfig.for_model("paligemma")) is AutoModelForImageTextToText


def test_the_rope_split_between_position_streams_follows_the_head_size() -> None:
    from nnspec.verification.shrink import shrink_config

    config = {
        "model_type": "qwen2_5_vl", "hidden_size": 3584, "num_attention_heads": 28,
        "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
    }
    shrunk = shrink_config(config, 384, {"bos_token_id": 0, "eos_token_id": 0, "pad_token_id": 0}).config
    assert shrunk["rope_scaling"]["mrope_section"] == [2, 3, 3]  # head_dim 16: 8 rotary frequencies
    assert shrunk["rope_scaling"]["type"] == "mrope"


def test_sub_config_sizes_left_to_defaults_are_shrunk(tmp_path: Path) -> None:
    from transformers import AutoConfig

    from nnspec.verification.tiny import build_from_config

    # A published LLaVA config states only what differs from the Llama and CLIP defaults.
    config = {
        "model_type": "llava", "image_token_index": 32000,
        "text_config": {"model_type": "llama", "vocab_size": 32064, "max_position_embeddings": 4096},
        "vision_config": {"model_type": "clip_vision_model", "hidden_size": 1024, "image_size": 336, "patch_size": 14},
    }
    path = build_from_config(config, tmp_path / "llava", name="test")
    built = AutoConfig.from_pretrained(path)
    assert built.text_config.hidden_size == 64 and built.text_config.num_hidden_layers <= 3
    assert built.text_config.intermediate_size == 128
    assert built.vision_config.hidden_size == 64 and built.vision_config.image_size == 336
    assert built.text_config.rms_norm_eps == AutoConfig.for_model("llama").rms_norm_eps
