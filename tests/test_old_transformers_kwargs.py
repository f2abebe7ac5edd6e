"""The weights' dtype keyword on transformers releases older than 4.56, which only know ``torch_dtype=``.

The installed transformers is new; the detected version is monkeypatched to an old one, and what
reaches transformers' loaders is recorded.
"""

from __future__ import annotations

import pytest
import torch
import transformers

from nnspec import StandardizedTransformer
from nnspec.errors import InputError
from nnspec.runtime import adapter as adapter_module
from nnspec.runtime import loading
from tests.conftest import checkpoint

REAL_VERSION = adapter_module.installed_version


def _pretend(monkeypatch: pytest.MonkeyPatch, version: str) -> None:
    """Make nnspec read ``version`` as the installed transformers."""
    monkeypatch.setattr(
        adapter_module, "installed_version", lambda package: version if package == "transformers" else REAL_VERSION(package)
    )


@pytest.mark.parametrize(("version", "keyword"), [
    ("4.45.2", "torch_dtype"), ("4.55.4", "torch_dtype"), ("4.56.0", "dtype"), ("4.57.6", "dtype"), ("5.24.0", "dtype"),
])
def test_dtype_kwarg_follows_the_release(monkeypatch: pytest.MonkeyPatch, version: str, keyword: str) -> None:
    _pretend(monkeypatch, version)
    assert loading.dtype_kwarg(torch.float16) == {keyword: torch.float16}


def test_user_dtype_is_renamed_only_on_old_releases(monkeypatch: pytest.MonkeyPatch) -> None:
    _pretend(monkeypatch, "4.48.3")
    assert loading.normalize_dtype_kwargs({"dtype": torch.bfloat16, "device_map": None}) == {
        "torch_dtype": torch.bfloat16, "device_map": None,
    }
    assert loading.normalize_dtype_kwargs({"torch_dtype": "auto"}) == {"torch_dtype": "auto"}
    _pretend(monkeypatch, "5.24.0")
    assert loading.normalize_dtype_kwargs({"dtype": torch.bfloat16}) == {"dtype": torch.bfloat16}
    assert loading.normalize_dtype_kwargs({"torch_dtype": torch.bfloat16}) == {"torch_dtype": torch.bfloat16}


@pytest.mark.parametrize("version", ["4.45.2", "5.24.0"])
def test_both_dtype_names_are_refused(monkeypatch: pytest.MonkeyPatch, version: str) -> None:
    _pretend(monkeypatch, version)
    with pytest.raises(InputError, match="torch_dtype"):
        loading.normalize_dtype_kwargs({"dtype": torch.float16, "torch_dtype": torch.float16})
    with pytest.raises(InputError, match="dtype"):
        StandardizedTransformer(str(checkpoint("llama")), dtype=torch.float16, torch_dtype=torch.float16)


def test_standardized_transformer_passes_torch_dtype_on_old_releases(monkeypatch: pytest.MonkeyPatch) -> None:
    """``StandardizedTransformer(path, dtype=...)`` on a release older than 4.56: the loader gets
    ``torch_dtype=`` (never ``dtype=``, which it would reject), and the weights are in that dtype."""
    # 4.55.4 takes torch_dtype, and none of llama's version overrides (blocks returning their cache
    # before 4.48) applies to it: the structural check runs against the installed module code.
    _pretend(monkeypatch, "4.55.4")
    seen: list[dict] = []
    original = transformers.AutoModelForCausalLM.from_pretrained.__func__

    def spy(cls, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        seen.append(dict(kwargs))
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", classmethod(spy))
    model = StandardizedTransformer(str(checkpoint("llama")), dtype=torch.float16, allow_unverified=True, dispatch=True)
    assert seen, "the weights were not loaded through AutoModelForCausalLM.from_pretrained"
    assert all("dtype" not in kwargs for kwargs in seen)
    assert seen[-1]["torch_dtype"] == torch.float16
    assert {p.dtype for p in model._module.parameters()} == {torch.float16}


def test_a_text_model_loads_no_feature_extractor_or_image_processor(monkeypatch: pytest.MonkeyPatch) -> None:
    """transformers 4.48 to 4.53 leave the text-generation pipeline class saying it loads a feature
    extractor and an image processor; a text checkpoint has neither, so nnspec asks for neither."""
    from nnsight.modeling.transformers import TransformersModel

    from nnspec.runtime.model import StandardizedModel

    every = {"tokenizer", "feature_extractor", "image_processor", "processor"}
    monkeypatch.setattr(TransformersModel, "_loaded_preprocessors", lambda self: set(every))
    model = object.__new__(StandardizedModel)
    model.task = "text-generation"
    assert model._loaded_preprocessors() == {"tokenizer", "processor"}
    model.task = "image-text-to-text"
    assert model._loaded_preprocessors() == every


def test_a_composite_config_whose_causal_lm_class_builds_the_text_model() -> None:
    """Releases whose from_config hands the whole composite config to a class that takes only
    the text config (before 5.10): nnspec builds from the text config, as from_pretrained does."""
    import transformers

    from nnspec.runtime.loading import builds_text_model, from_config
    from nnspec.runtime.registry import adapter_by_name
    from nnspec.verification.tiny import tiny_config_values

    auto = transformers.AutoModelForCausalLM
    composite = transformers.AutoConfig.for_model("qwen3_5", **{"text_config": tiny_config_values(adapter_by_name("qwen3_5").spec)})
    assert builds_text_model(auto, composite)
    model = from_config(auto, composite)
    assert type(model.config) is type(composite.get_text_config())
    assert not builds_text_model(auto, transformers.AutoConfig.for_model("llama"))


def test_a_meta_build_that_reads_a_tensor_value_loads_the_weights_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    """A module that reads a tensor's value while it is built cannot be built on the meta device;
    the model then loads its weights at once (as dispatch=True does), saying so."""
    from nnsight.modeling.transformers import TransformersModel

    from nnspec import StandardizedTransformer
    from nnspec.errors import NnspecWarning
    from tests.conftest import checkpoint

    real_init = TransformersModel.__init__
    calls: list = []

    def meta_fails(self, *args, **kwargs):
        calls.append(kwargs.get("dispatch"))
        if not kwargs.get("dispatch"):
            raise RuntimeError("Tensor.item() cannot be called on meta tensors")
        return real_init(self, *args, **kwargs)

    monkeypatch.setattr(TransformersModel, "__init__", meta_fails)
    with pytest.warns(NnspecWarning, match="while building the model on the meta device .*loading its weights now"):
        model = StandardizedTransformer(checkpoint("llama"))
    assert calls == [None, True] and model.dispatched

    def other_failure(self, *args, **kwargs):
        raise RuntimeError("shapes do not match")

    monkeypatch.setattr(TransformersModel, "__init__", other_failure)
    with pytest.raises(RuntimeError, match="shapes do not match"):
        StandardizedTransformer(checkpoint("llama"))


def test_before_image_text_to_text_a_whole_vision_language_model_is_built_as_vision_to_seq(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """transformers 4.45 has no image-text-to-text auto class and maps LLaVA only for vision-to-seq:
    the class nnspec builds the whole wrapper with is that one (a text model stays causal-LM)."""
    import transformers
    from transformers.models.auto import modeling_auto

    from nnspec.runtime.loading import auto_class
    from nnspec.runtime.registry import adapter_by_name

    sentinel = type("AutoModelForVision2Seq", (), {})
    monkeypatch.delattr(modeling_auto, "MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES")
    monkeypatch.setattr(modeling_auto, "MODEL_FOR_VISION_2_SEQ_MAPPING_NAMES", {"llava": "LlavaForConditionalGeneration"}, raising=False)
    monkeypatch.setattr(transformers, "AutoModelForVision2Seq", sentinel, raising=False)
    llava = transformers.AutoConfig.for_model("llava")
    assert auto_class(llava, adapter_by_name("llava").spec) is sentinel
    assert auto_class(transformers.AutoConfig.for_model("llama"), adapter_by_name("llama").spec) is transformers.AutoModelForCausalLM
