"""Tiny offline checkpoints: a spec's ``[tiny]`` config, random weights, a locally trained tokenizer.

A checkpoint is written with ``save_pretrained`` and meant to be loaded back through the real
loading path (``from_pretrained`` / ``StandardizedTransformer(path)``). Built checkpoints are
cached under ``$NNSPEC_CACHE`` (default ``~/.cache/nnspec``), keyed by spec, variant, the tiny
config and the transformers version; concurrent builders (pytest-xdist workers) are safe because
each builds in a private folder and renames it into place.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Optional

from ..compiler.schema import Spec
from ..errors import TinyCheckpointError, did_you_mean
from .adapter import installed_version

#: Bumped whenever the checkpoint layout or the tokenizer recipe changes.
FORMAT = 3
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
    """Where tiny checkpoints and tokenizers are cached (``$NNSPEC_CACHE`` or ``~/.cache/nnspec``)."""
    return Path(os.environ.get("NNSPEC_CACHE", Path.home() / ".cache" / "nnspec"))


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
        _publish(path, lambda staging: _train_tokenizer(kind).save_pretrained(staging))
    return AutoTokenizer.from_pretrained(str(path))


def _publish(path: Path, build: Any) -> None:
    """Build into a private folder next to ``path`` and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        build(staging)
        try:
            os.replace(staging, path)
        except OSError:
            if not path.exists():  # another process won the race otherwise
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def tiny_config_values(spec: Spec, variant: Optional[str] = None) -> dict[str, Any]:
    """The config overrides of ``spec``'s tiny checkpoint (plus ``variant``'s).

    An empty string removes an inherited override, leaving the HF default.
    """
    values = dict(spec.tiny.config)
    if variant is not None:
        if variant not in spec.variants:
            raise TinyCheckpointError(
                f"spec {spec.name!r} has no variant {variant!r}{did_you_mean(variant, spec.variants)}; "
                f"variants: {', '.join(spec.variants) or 'none'}"
            )
        values.update(spec.variants[variant])
    return {key: value for key, value in values.items() if value != ""}


def build(spec: Spec, directory: Path | str, variant: Optional[str] = None, seed: int = 0) -> Path:
    """Write a tiny random checkpoint of ``spec`` (and ``variant``) with its tokenizer to ``directory``."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    directory = Path(directory)
    tok = tokenizer(spec.tiny.tokenizer)
    values = tiny_config_values(spec, variant)
    values.setdefault("vocab_size", len(tok))
    special = {
        "bos_token_id": tok.bos_token_id,
        "eos_token_id": tok.eos_token_id,
        "pad_token_id": tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
    }
    model_type = spec.model_types[0]
    try:
        config = AutoConfig.for_model(model_type, **{**values, **special})
    except (ValueError, TypeError) as exc:
        raise TinyCheckpointError(f"spec {spec.name!r}: cannot build a {model_type} config from [tiny]: {exc}") from exc
    torch.manual_seed(seed)
    try:
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    except Exception as exc:  # noqa: BLE001 - any constructor failure is reported with the spec
        raise TinyCheckpointError(f"spec {spec.name!r}: {model_type} cannot be built from its tiny config: {exc}") from exc
    model.generation_config.pad_token_id = special["pad_token_id"]
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tok.save_pretrained(directory)
    (directory / _MARKER).write_text(
        json.dumps({"spec": spec.name, "variant": variant, "config": values, "seed": seed, "format": FORMAT}, indent=2),
        encoding="utf-8",
    )
    return directory


def checkpoint(spec: Spec, variant: Optional[str] = None) -> Path:
    """The cached tiny checkpoint of ``spec`` (built on first use)."""
    key = json.dumps(
        [spec.name, variant, tiny_config_values(spec, variant), spec.tiny.tokenizer, spec.model_types[0],
         installed_version("transformers"), FORMAT],
        sort_keys=True,
        default=str,
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    path = cache_root() / "tiny" / f"{spec.name}-{variant or 'base'}-{digest}"
    if not (path / _MARKER).is_file():
        _publish(path, lambda staging: build(spec, staging, variant))
    return path
