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
