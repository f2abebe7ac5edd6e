"""The floor: plain transformers with torch forward hooks, the least work that computes each answer.

Left-padded batches get mask-derived position ids (what a correct implementation must pass), and
workloads that never read the logits run the base model only, as the libraries stop their traces
after the last layer they read.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional

import torch
from workloads import (
    COLLECT_BATCH,
    PATCHSCOPE_SOURCES,
    PATCHSCOPE_TARGET,
    PROMPTS,
    collection_prompts,
    stack_layers,
    token_batch,
)

from candidates.base import Candidate, first
from nnspec.runtime.batching import positions_from_mask


class Floor(Candidate):
    """Loads with weights (``from_pretrained``), so it has no lazy load to compare."""

    def open(self, path: str, arch: str, paths: dict[str, Any]) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        super().open(path, arch, paths)
        self.model = AutoModelForCausalLM.from_pretrained(path).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.blocks = list(self.model.get_submodule(paths["layers"]))
        self.final = [self.model.get_submodule(p) for p in paths["final"]]
        self.prompts = collection_prompts()
        self.check_ids = token_batch(2, 9, seed=1)["input_ids"]

    @contextmanager
    def _hooks(self, make: Callable[[int], Callable]) -> Iterator[None]:
        handles = [block.register_forward_hook(make(i)) for i, block in enumerate(self.blocks)]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def _encode(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        encoded = dict(self.tokenizer(prompts, return_tensors="pt", padding=True))
        encoded["position_ids"] = positions_from_mask(encoded["attention_mask"])
        return encoded

    @torch.no_grad()
    def _states(self, inputs: dict[str, torch.Tensor], last: bool, logits: bool = True) -> list[torch.Tensor]:
        """Every block's output (``last``: only the last column), from one forward."""
        states: list[Optional[torch.Tensor]] = [None] * len(self.blocks)

        def make(i: int) -> Callable:
            def hook(module: Any, args: Any, output: Any) -> None:
                states[i] = first(output)[:, -1] if last else first(output)

            return hook

        with self._hooks(make):
            (self.model if logits else self.model.base_model)(**inputs)
        return states  # type: ignore[return-value]

    def read_layers(self, inputs: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        return self._states(inputs, last=False)

    @torch.no_grad()
    def run_logit_lens(self) -> torch.Tensor:
        x = torch.stack(self._states(self._encode(PROMPTS), last=True, logits=False), 1)
        for module in self.final:
            x = module(x)
        return x.softmax(-1)

    @torch.no_grad()
    def run_patchscope(self) -> torch.Tensor:
        latents = self._states(self._encode(PATCHSCOPE_SOURCES), last=True, logits=False)
        target = self._encode([PATCHSCOPE_TARGET] * len(PATCHSCOPE_SOURCES))
        out = []
        for layer, latent in enumerate(latents):

            def patch(module: Any, args: Any, output: Any) -> Any:
                hidden = first(output).clone()
                hidden[:, -1] = latent
                return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

            handle = self.blocks[layer].register_forward_hook(patch)
            try:
                out.append(self.model(**target, logits_to_keep=1).logits[:, -1].softmax(-1))
            finally:
                handle.remove()
        return torch.stack(out, 1)

    def run_collect(self) -> torch.Tensor:
        parts = []
        for start in range(0, len(self.prompts), COLLECT_BATCH):
            batch = self.prompts[start : start + COLLECT_BATCH]
            parts.append(stack_layers(self._states(self._encode(batch), last=True, logits=False)))
        return torch.cat(parts, 1)

    def run_run_with_cache(self) -> dict[str, torch.Tensor]:
        states = self._states(self._encode(PROMPTS), last=False, logits=False)
        return {f"layers_output.{i}": state for i, state in enumerate(states)}

    def canonical(self, name: str, output: Any) -> torch.Tensor:
        if name == "run_with_cache":
            return stack_layers(list(output.values()))
        return output

    @torch.no_grad()
    def run_validate(self) -> Any:
        return self.model(self.check_ids, output_hidden_states=True)


CANDIDATE = Floor
