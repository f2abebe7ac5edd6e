"""Bare NNsight: native module paths, written as an NNsight user would without a wrapper.

Runs in both environments: NNsight 0.8 builds a ``TransformersModel`` (``LanguageModel`` is
deprecated there), older releases a ``LanguageModel`` (their ``TransformersModel`` takes other
arguments).
"""

from __future__ import annotations

from typing import Any

import torch
from workloads import PROMPTS, stack_layers

from candidates.base import Candidate, envoy, first


def construct(path: str, **kwargs: Any) -> Any:
    """The model object a bare NNsight user builds for ``path``."""
    import nnsight

    if tuple(int(p) for p in nnsight.__version__.split(".")[:2]) < (0, 8):
        return nnsight.LanguageModel(path, **kwargs)
    from nnsight.modeling.transformers import TransformersModel
    from transformers import AutoTokenizer

    return TransformersModel(path, task="text-generation", tokenizer=AutoTokenizer.from_pretrained(path), **kwargs)


class BareNNsight(Candidate):
    packages = ("torch", "transformers", "nnsight")

    def load(self, path: str) -> Any:
        return construct(path)

    def open(self, path: str, arch: str, paths: dict[str, Any]) -> None:
        super().open(path, arch, paths)
        self.model = construct(path, dispatch=True)
        self.blocks = envoy(self.model, paths["layers"])

    def read_layers(self, inputs: Any) -> list[torch.Tensor]:
        states = []
        with self.model.trace(inputs):
            for block in self.blocks:
                states.append(first(block.output).save())
        return states

    def run_run_with_cache(self) -> Any:
        with self.model.trace(PROMPTS) as tracer:
            cache = tracer.cache(modules=list(self.blocks)).save()
        return cache

    def canonical(self, name: str, output: Any) -> torch.Tensor:
        if name == "run_with_cache":
            layers = self.paths["layers"]
            return stack_layers([first(output[f"model.{layers}.{i}"].output) for i in range(len(self.blocks))])
        return output


CANDIDATE = BareNNsight
