"""Tiny offline checkpoints: a spec's ``[tiny]`` config, random weights, a locally trained tokenizer.

A checkpoint is written with ``save_pretrained`` and meant to be loaded back through the real
loading path (``from_pretrained`` / ``StandardizedTransformer(path)``). Built checkpoints are
cached under :func:`cache_root` (``$NNSPEC_CACHE``, else ``$XDG_CACHE_HOME/nnspec``, else
``~/.cache/nnspec``), keyed by spec, variant, the tiny config and the transformers version; concurrent builders (pytest-xdist workers) are safe because
each builds in a private folder and renames it into place.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Optional

from ..compiler.schema import Spec
from ..errors import TinyCheckpointError, did_you_mean
from ..runtime.adapter import installed_version

#: Bumped whenever the checkpoint layout or the tokenizer recipe changes.
FORMAT = 4
VOCAB_SIZE = 384
_MARKER = "nnspec-tiny.json"

_CORPUS = [
    "The Eiffel Tower is in the city of Paris.",
    "The capital of France is Paris, and the capital of England is London.",
    "The capital of Spain is Madrid. The capital of Italy is Rome.",
    "Hello world, how are you? I am fine, thank you.",
    "A transformer reads tokens, mixes them with attention and transforms them with an MLP.",
    "Mechanistic interpretability studies the residual stream of language models.",
    "The quick brown fox jumps over the lazy dog.",
    "Once upon a time there was a small model that lived on a laptop.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 11 12 100 1000.",
    "Cats, dogs, birds and fish are animals; oak, pine and maple are trees.",
    "She said: \"Logit lens decodes every layer.\" He replied: 'Patchscopes too!'",
]


def cache_root() -> Path:
    """Where tiny checkpoints and tokenizers are cached: ``$NNSPEC_CACHE`` when set, else
    ``$XDG_CACHE_HOME/nnspec`` when that is set to an absolute path (as the XDG base directory
    rules ask), else ``~/.cache/nnspec``. Empty variables count as unset; ``~`` is expanded."""
    explicit = os.environ.get("NNSPEC_CACHE", "").strip()
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    if xdg and os.path.isabs(os.path.expanduser(xdg)):
        return Path(xdg).expanduser() / "nnspec"
    return Path.home() / ".cache" / "nnspec"


def _train_tokenizer(kind: str) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = _CORPUS * 4
    if kind == "byte_level":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        special = ["<|endoftext|>"]
        trainer = trainers.BpeTrainer(
            vocab_size=VOCAB_SIZE, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        )
        tok.train_from_iterator(corpus, trainer)
        return PreTrainedTokenizerFast(
            tokenizer_object=tok,
            bos_token="<|endoftext|>",
            eos_token="<|endoftext|>",
            unk_token="<|endoftext|>",
            pad_token="<|endoftext|>",
            model_input_names=["input_ids", "attention_mask"],
        )
    # Sentencepiece-style: words carry a leading "▁", unknown characters fall back to <unk>.
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    special = ["<unk>", "<s>", "</s>"]
    alphabet = sorted(set("".join(_CORPUS)) | set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"))
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=special, initial_alphabet=alphabet + ["▁"])
    tok.train_from_iterator(corpus, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tok.token_to_id("<s>"))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="</s>",
        model_input_names=["input_ids", "attention_mask"],
    )


def tokenizer(kind: str = "byte_level") -> Any:
    """A small tokenizer trained locally (cached on disk), ``byte_level`` or ``metaspace``."""
    from transformers import AutoTokenizer

    # Keyed by transformers version: tokenizer files record a class name that versions spell differently.
    path = cache_root() / "tokenizers" / f"{kind}-v{FORMAT}-transformers{installed_version('transformers')}"
    if not (path / "tokenizer.json").is_file():
        publish(path, lambda staging: _train_tokenizer(kind).save_pretrained(staging))
    return AutoTokenizer.from_pretrained(str(path))


def publish(path: Path, build: Any, replace: bool = False) -> Path:
    """Build into a private folder next to ``path`` and rename it into place, so ``path`` only
    ever holds a complete result.

    With ``replace``, a folder already at ``path`` (a tiny checkpoint nnspec wrote, checked by
    :func:`refuse_non_empty`) is swapped out once the new one is complete; without it, a folder
    another process published first wins (concurrent cache builders).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        build(staging)
        if replace and path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}-old-", dir=path.parent))
            os.replace(path, old / "checkpoint")
            os.replace(staging, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            try:
                os.replace(staging, path)
            except OSError:
                if not path.exists():  # another process won the race otherwise
                    raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


def tiny_config_values(spec: Spec, variant: Optional[str] = None) -> dict[str, Any]:
    """The config overrides of ``spec``'s tiny checkpoint (plus ``variant``'s); a key a child spec
    removes with ``unset`` is absent (the HF default applies)."""
    values = dict(spec.tiny.config)
    if variant is not None:
        if variant not in spec.variants:
            raise TinyCheckpointError(
                f"spec {spec.name!r} has no variant {variant!r}{did_you_mean(variant, spec.variants)}; "
                f"variants: {', '.join(spec.variants) or 'none'}"
            )
        values.update(spec.variants[variant])
    return values


def _special_ids(tok: Any) -> dict[str, int]:
    return {
        "bos_token_id": tok.bos_token_id,
        "eos_token_id": tok.eos_token_id,
        "pad_token_id": tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
    }


def _fill_zero_matrices(model: Any, seed: int) -> list[str]:
    """Give random values to weight matrices the model's initialisation leaves at zero.

    Some initialisations zero a projection so that a fresh model starts as if a branch were
    absent (a zero gate, a zero output projection). With random weights that branch would add
    exactly nothing, and no check could tell it from a missing one; a trained checkpoint has no
    such zeros. Vectors (biases, norm weights) are left as initialised. Returns the names filled.
    """
    import torch

    generator = torch.Generator().manual_seed(seed + 1)
    filled = []
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.ndim >= 2 and parameter.is_floating_point() and parameter.numel() and not parameter.any():
                parameter.copy_(0.02 * torch.randn(parameter.shape, generator=generator, dtype=torch.float32).to(parameter.dtype))
                filled.append(name)
    return filled


def _write(
    config: Any, tok: Any, directory: Path, marker: dict[str, Any], seed: int, what: str, spec: Optional[Spec] = None,
) -> Path:
    """Random weights for ``config`` (float32) built by the class the runtime loads for ``spec``,
    saved with ``tok`` and the marker file."""
    import torch

    from ..runtime.loading import auto_class, dtype_kwarg, from_config

    torch.manual_seed(seed)
    try:
        model = from_config(auto_class(config, spec), config, **dtype_kwarg(torch.float32))
    except Exception as exc:  # noqa: BLE001 - any constructor failure is reported with its source
        raise TinyCheckpointError(f"{what}: {config.model_type} cannot be built from this config: {exc}") from exc
    _fill_zero_matrices(model, seed)
    model.generation_config.pad_token_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    directory.mkdir(parents=True, exist_ok=True)
    try:
        model.save_pretrained(directory)
    except RuntimeError as exc:
        # Releases before 5 refuse to write tensors the model shares without declaring them in
        # _tied_weights_keys (a tied Mamba-2, Zamba2's shared transformer) as safetensors; the
        # same weights written as a PyTorch state dict load back as they are.
        if "shared tensors" not in str(exc):
            raise
        model.save_pretrained(directory, safe_serialization=False)
    if type(model.config) is not type(config):
        # A causal-LM class that builds only the text model of a composite config saves the text
        # config; a published checkpoint holds the whole one, which is what loading must read.
        config.save_pretrained(directory)
    tok.save_pretrained(directory)
    (directory / _MARKER).write_text(json.dumps({**marker, "seed": seed, "format": FORMAT}, indent=2), encoding="utf-8")
    return directory


def refuse_non_empty(directory: Path | str, force: bool = False) -> Path:
    """``directory`` as a Path, after refusing one that exists and holds anything (unless ``force``,
    which still only allows a folder that holds a tiny checkpoint this module wrote)."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise TinyCheckpointError(f"{directory}: exists and is not a directory")
    if directory.is_dir() and any(directory.iterdir()):
        if not force:
            raise TinyCheckpointError(
                f"{directory}: the directory is not empty; choose an empty or new one (or pass --force to "
                "replace a tiny checkpoint nnspec wrote there)"
            )
        if not (directory / _MARKER).is_file():
            raise TinyCheckpointError(
                f"{directory}: not a tiny checkpoint written by nnspec (no {_MARKER}); --force only replaces those"
            )
    return directory


def build(spec: Spec, directory: Path | str, variant: Optional[str] = None, seed: int = 0) -> Path:
    """Write a tiny random checkpoint of ``spec`` (and ``variant``) with its tokenizer to ``directory``."""
    from transformers import AutoConfig

    directory = Path(directory)
    tok = tokenizer(spec.tiny.tokenizer)
    values = tiny_config_values(spec, variant)
    values.setdefault("vocab_size", len(tok))
    special = _special_ids(tok)
    model_type = spec.model_types[0]
    try:
        if spec.tiny.nested:
            config = AutoConfig.for_model(model_type, **_composite(model_type, spec.tiny.nested, values, len(tok), special))
        else:
            config = AutoConfig.for_model(model_type, **{**values, **special})
    except (ValueError, TypeError) as exc:
        raise TinyCheckpointError(f"spec {spec.name!r}: cannot build a {model_type} config from [tiny]: {exc}") from exc
    marker = {"spec": spec.name, "variant": variant, "config": values}
    return _write(config, tok, directory, marker, seed, f"spec {spec.name!r}", spec)


def _composite(model_type: str, nested: str, values: dict[str, Any], vocab_size: int, special: dict[str, int]) -> dict[str, Any]:
    """A composite config's values: the model type's default config with every size shrunk (as a
    real config's: vision and audio towers included), and sub-config ``nested`` (the text model the
    spec describes) built from its defaults and ``values``, as the text spec's own checkpoint is."""
    from transformers import AutoConfig

    from .shrink import shrink_config

    default = AutoConfig.for_model(model_type).to_dict()
    if not isinstance(default.get(nested), dict):
        # A release from before the composite config split its text model off (Qwen2.5-VL before
        # transformers 4.52: a vision_config, the text model's keys at the top level) takes the
        # spec's values at its top level; a config with no sub-config at all is a spec error.
        if not any(isinstance(value, dict) and "model_type" in value for value in default.values()):
            raise TinyCheckpointError(f"tiny.nested = {nested!r}: the {model_type} config has no sub-config of that name")
        shrunk = shrink_config(default, vocab_size, special).config
        for key, value in values.items():
            shrunk[key] = {**shrunk[key], **value} if isinstance(value, dict) and isinstance(shrunk.get(key), dict) else value
        shrunk.update(special)
        return {k: v for k, v in shrunk.items() if k not in ("model_type", "transformers_version")}
    shrunk = shrink_config(default, vocab_size, special).config
    # A value naming another part of the composite config ({vision_config = {...}} or a top-level
    # key such as mm_tokens_per_image) goes there; the rest builds the text model as its own spec
    # does: its defaults plus the spec's sizes.
    text = {}
    for key, value in values.items():
        if key != nested and isinstance(value, dict) and isinstance(shrunk.get(key), dict):
            shrunk[key] = {**shrunk[key], **value}
        elif key != nested and key in default and key not in default[nested]:
            shrunk[key] = value
        elif key.endswith("_token_id") and key not in default and key not in default[nested]:
            # A token id neither level's defaults hold (a release whose composite defaults omit an
            # id the published configs state at the top level, where the model reads it, e.g.
            # Qwen2.5-VL's vision_start_token_id before transformers 4.57): both levels.
            shrunk[key] = value
            text[key] = value
        else:
            text[key] = value
    shrunk[nested] = {**text, **special}
    return {k: v for k, v in shrunk.items() if k not in ("model_type", "transformers_version")}


def _spec_for(model_type: str) -> Optional[Spec]:
    """The bundled spec serving ``model_type`` (None: none does)."""
    from ..errors import UnsupportedArchitectureError
    from ..runtime.registry import adapter_for_model_type

    try:
        return adapter_for_model_type(model_type).spec
    except UnsupportedArchitectureError:
        return None


def tokenizer_kind_for(model_type: str) -> str:
    """The tiny tokenizer style of the spec serving ``model_type`` (byte-level when none does)."""
    from ..errors import UnsupportedArchitectureError
    from ..runtime.registry import adapter_for_model_type

    try:
        return adapter_for_model_type(model_type).spec.tiny.tokenizer
    except UnsupportedArchitectureError:
        return "byte_level"


def _sub_config_sizes(config: Any) -> Any:
    """``config`` with the sizes its sub-configs leave to their class defaults stated (a
    vision-language config often gives only what differs from the text or vision class's default,
    which is the full-size model): stated, the shrinker shrinks them like every other size."""
    from transformers import AutoConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    from .shrink import SIZE_KEYS

    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type not in CONFIG_MAPPING:
        return config
    parent = CONFIG_MAPPING[model_type]
    sizes = {key for keys in SIZE_KEYS.values() for key in keys}
    out = dict(config)
    # Config classes state their sub-configs (``sub_configs``) from transformers 4.47 on; before,
    # a sub-config dict that names its own model_type says its class.
    sub_configs = getattr(parent, "sub_configs", None) or {
        k: None for k, v in config.items() if isinstance(v, dict) and "model_type" in v
    }
    for key, kind in sub_configs.items():
        value = config.get(key)
        if not isinstance(value, dict):
            continue
        own = value.get("model_type")
        if own in CONFIG_MAPPING and CONFIG_MAPPING[own] is not parent:
            kind = CONFIG_MAPPING[own]
        if kind is None or kind is AutoConfig:
            continue
        try:
            default = kind().to_dict()
        except Exception:  # noqa: BLE001 - a class without usable defaults keeps the config as it is
            continue
        missing = {
            k: v for k, v in default.items()
            if k in sizes and k not in value and isinstance(v, int) and not isinstance(v, bool)
        }
        if missing:
            out[key] = {**value, **missing}
    return out


def build_from_config(
    config: dict[str, Any], directory: Path | str, name: str = "config.json", seed: int = 0,
    tokenizer_kind: Optional[str] = None,
) -> Path:
    """Write a tiny checkpoint of a real ``config`` (parsed ``config.json``): every size shrunk
    (see :mod:`nnspec.verification.shrink`), every other key kept, random float32 weights, the tiny
    tokenizer. The shrunk config goes through ``AutoConfig.from_pretrained``, the path a
    published checkpoint's config takes.

    Args:
        name: the Hub id or file the config came from (recorded, and named in errors).
    """
    from transformers import AutoConfig

    from .shrink import apply_sizes, shrink_config

    directory = Path(directory)
    model_type = config.get("model_type") if isinstance(config, dict) else None
    tok = tokenizer(tokenizer_kind or tokenizer_kind_for(str(model_type)))
    shrunk = shrink_config(_sub_config_sizes(config), len(tok), _special_ids(tok))
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    if model_type not in CONFIG_MAPPING_NAMES:
        raise TinyCheckpointError(
            f"{name}: model_type {model_type!r} is not known to transformers {installed_version('transformers')}"
            f"{did_you_mean(str(model_type), CONFIG_MAPPING_NAMES)}"
        )
    staging = Path(tempfile.mkdtemp(prefix=".config-"))
    try:
        (staging / "config.json").write_text(json.dumps(shrunk.config, indent=2), encoding="utf-8")
        try:
            loaded = AutoConfig.from_pretrained(str(staging))
        except Exception as exc:  # noqa: BLE001 - config classes raise many kinds of errors
            raise TinyCheckpointError(f"{name}: the shrunk config does not load: {type(exc).__name__}: {exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    adjusted = apply_sizes(loaded, shrunk)
    marker = {
        "source": name,
        "model_type": model_type,
        "changed": {k: [v[0], v[1]] for k, v in shrunk.changed.items()},
        "dropped": shrunk.dropped,
        "class_sizes_set": adjusted,
    }
    return _write(loaded, tok, directory, marker, seed, name, _spec_for(str(model_type)))


def checkpoint(spec: Spec, variant: Optional[str] = None) -> Path:
    """The cached tiny checkpoint of ``spec`` (built on first use); a ``variant`` made by
    :func:`nnspec.verification.realconfigs.row_name` is the corpus config of that Hub id."""
    from .realconfigs import real_id

    hub_id = real_id(variant)
    if hub_id is not None:
        return real_checkpoint(hub_id)
    key = json.dumps(
        [spec.name, variant, tiny_config_values(spec, variant), spec.tiny.tokenizer, spec.model_types[0],
         installed_version("transformers"), FORMAT],
        sort_keys=True,
        default=str,
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    path = cache_root() / "tiny" / f"{spec.name}-{variant or 'base'}-{digest}"
    if not (path / _MARKER).is_file():
        publish(path, lambda staging: build(spec, staging, variant))
    return path


@functools.cache
def _shrinker_digest() -> str:
    from . import shrink

    return hashlib.sha256(Path(shrink.__file__).read_bytes()).hexdigest()[:12]


def real_checkpoint(hub_id: str) -> Path:
    """The cached tiny checkpoint of the corpus config of ``hub_id`` (built on first use)."""
    from .realconfigs import get

    real = get(hub_id)
    config = real.load()
    # The shrinker's own code is part of the key: a change to how sizes are shrunk changes the
    # checkpoint a published config gives, so one built before must not be reused.
    key = json.dumps([hub_id, config, installed_version("transformers"), FORMAT, _shrinker_digest()],
                     sort_keys=True, default=str)
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    path = cache_root() / "real" / f"{hub_id.replace('/', '__')}-{digest}"
    if not (path / _MARKER).is_file():
        publish(path, lambda staging: build_from_config(config, staging, name=hub_id))
    return path
