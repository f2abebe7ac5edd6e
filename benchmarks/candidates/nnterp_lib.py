"""The peer, nnterp (in its own environment, NNsight 0.7): the shared standardized workloads, and
NNsight's cache and nnterp's load-time renaming check where nnterp has no counterpart of its own."""

from __future__ import annotations

from typing import Any

import torch
from workloads import PROMPTS, stack_layers

from candidates.base import first
from candidates.standardized import Standardized


class NNterp(Standardized):
    library = "nnterp"
    packages = ("torch", "transformers", "nnsight", "nnterp")

    def run_run_with_cache(self) -> Any:
        model = self.model
        modules = []
        for i in range(model.num_layers):
            modules.append(model.layers[i])
        with model.trace(PROMPTS) as tracer:
            cache = tracer.cache(modules=modules).save()
        return cache

    def canonical(self, name: str, output: Any) -> torch.Tensor:
        if name == "run_with_cache":
            return stack_layers([first(entry.output) for entry in output.values()])
        return output

    def run_validate(self) -> None:
        from nnterp.rename_utils import check_model_renaming, get_ignores

        check_model_renaming(self.model, self.path, get_ignores(self.model._model, None), allow_dispatch=True)


CANDIDATE = NNterp
