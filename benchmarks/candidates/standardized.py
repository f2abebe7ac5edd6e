"""nnspec and nnterp share one candidate: the same user code with only the import changed, which
is the compatibility nnspec promises. Subclasses state the library and what differs."""

from __future__ import annotations

import importlib
from typing import Any

import torch
from workloads import COLLECT_BATCH, PATCHSCOPE_SOURCES, PATCHSCOPE_TARGET, PROMPTS, collection_prompts

from candidates.base import Candidate


class Standardized(Candidate):
    #: The package whose ``StandardizedTransformer`` and helpers are used.
    library = ""

    def _module(self, name: str) -> Any:
        return importlib.import_module(f"{self.library}.{name}" if name else self.library)

    def load(self, path: str) -> Any:
        return self._module("").StandardizedTransformer(path)

    def open(self, path: str, arch: str, paths: dict[str, Any]) -> None:
        super().open(path, arch, paths)
        self.model = self.load(path)
        self.model.dispatch()
        self.prompts = collection_prompts()

    def read_layers(self, inputs: Any) -> list[torch.Tensor]:
        # A loop, not a comprehension: NNsight 0.7 runs a trace body from its source and loses
        # names bound inside a comprehension there.
        model = self.model
        states = []
        with model.trace(inputs):
            for i in range(model.num_layers):
                states.append(model.layers_output[i].save())
        return states

    def run_logit_lens(self) -> torch.Tensor:
        return self._module("interventions").logit_lens(self.model, PROMPTS)

    def run_patchscope(self) -> torch.Tensor:
        interventions = self._module("interventions")
        target = interventions.TargetPrompt(PATCHSCOPE_TARGET, -1)
        layers = list(range(self.model.num_layers))
        return interventions.patchscope_lens(self.model, source_prompts=PATCHSCOPE_SOURCES, target_patch_prompts=target, layers=layers)

    def run_collect(self) -> torch.Tensor:
        collect = self._module("nnsight_utils").collect_token_activations_batched
        return collect(self.model, self.prompts, batch_size=COLLECT_BATCH)
