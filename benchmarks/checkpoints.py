"""The benchmark checkpoints, built offline once under a cache folder (random weights, a locally
trained tokenizer, ``save_pretrained``), so every candidate loads them through the real path."""

from __future__ import annotations

import shutil
from pathlib import Path

from workloads import CHECKPOINTS


def _config(name: str):
    from transformers import AutoConfig

    if name == "gpt2-small":
        return AutoConfig.for_model("gpt2", n_layer=12, n_embd=768, n_head=12, vocab_size=50257)
    llama = dict(max_position_embeddings=2048, tie_word_embeddings=False)
    if name == "llama-12":
        return AutoConfig.for_model("llama", num_hidden_layers=12, hidden_size=768, intermediate_size=2048,
                                    num_attention_heads=12, num_key_value_heads=12, vocab_size=32000, **llama)
    if name == "llama-7b-meta":
        return AutoConfig.for_model("llama", num_hidden_layers=32, hidden_size=4096, intermediate_size=11008,
                                    num_attention_heads=32, num_key_value_heads=32, vocab_size=32000, **llama)
    raise KeyError(f"no benchmark checkpoint named {name!r}; known: {', '.join(c.name for c in CHECKPOINTS)}")


def build(name: str, root: Path) -> Path:
    """The folder of checkpoint ``name`` under ``root``, built on first use."""
    import torch
    from transformers import AutoModelForCausalLM

    from nnspec.runtime.registry import adapter_by_name
    from nnspec.verification import tiny

    folder = root / name
    if (folder / "config.json").is_file():
        return folder
    checkpoint = next(c for c in CHECKPOINTS if c.name == name)
    staging = root / f".{name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    config = _config(name)
    if checkpoint.weights:
        torch.manual_seed(0)
        AutoModelForCausalLM.from_config(config).save_pretrained(staging)
    else:
        config.save_pretrained(staging)
    tiny.tokenizer(adapter_by_name(checkpoint.arch).spec.tiny.tokenizer).save_pretrained(staging)
    staging.rename(folder)
    return folder
