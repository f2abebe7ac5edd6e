"""The interface every candidate implements, and helpers the NNsight-based ones share."""

from __future__ import annotations

from typing import Any, Callable

import torch
from protocol import installed_versions
from workloads import stack_layers, token_batch


class NotApplicable(Exception):
    """The candidate has no counterpart for a workload (the page shows the reason)."""


class Candidate:
    """One library under test. ``open`` loads a checkpoint with weights for every workload but
    ``load``; ``task(name)`` returns the zero-argument callable that is timed; ``canonical`` turns
    its output into the tensor compared across candidates (untimed)."""

    #: Distributions whose versions the page reports for this candidate.
    packages: tuple[str, ...] = ("torch", "transformers")

    def __init__(self) -> None:
        self.path = ""
        self.arch = ""
        self.paths: dict[str, Any] = {}
        self.model: Any = None

    def versions(self) -> dict[str, str]:
        return installed_versions(self.packages)

    def load(self, path: str) -> Any:
        """Construct the model object from ``path`` as the library does by default (overridden by
        the candidates that have a load to compare)."""
        raise NotImplementedError

    def open(self, path: str, arch: str, paths: dict[str, Any]) -> None:
        """Load ``path`` with weights, ready for the read workloads. ``arch`` names the spec and
        ``paths`` holds the native module paths it states: ``layers`` (the block list) and
        ``final`` (final norm, any modules before the unembedding, the unembedding)."""
        self.path, self.arch, self.paths = path, arch, paths

    def read_layers(self, inputs: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Every layer's output, ``(batch, seq, hidden)`` each, from one forward over ``inputs``."""
        raise NotImplementedError

    def run_trace_1x8(self) -> torch.Tensor:
        return stack_layers(self.read_layers(token_batch(1, 8)))

    def run_trace_8x128(self) -> torch.Tensor:
        return stack_layers(self.read_layers(token_batch(8, 128)))

    def close(self) -> None:
        """Drop every model and input the candidate holds."""
        self.__dict__.clear()
        Candidate.__init__(self)

    def task(self, name: str) -> Callable[[], Any]:
        """The callable timed for workload ``name``."""
        if name == "load":
            if type(self).load is Candidate.load:
                raise NotApplicable("loads weights eagerly; no lazy load to compare")
            path = self.path
            return lambda: self.load(path)
        method = getattr(self, f"run_{name}", None)
        if method is None:
            raise NotApplicable(f"{type(self).__name__} has no {name} workload")
        return method

    def canonical(self, name: str, output: Any) -> torch.Tensor:
        """The tensor compared across candidates; most workloads already return it."""
        return output


def first(value: Any) -> torch.Tensor:
    """A module output as a tensor (the hidden state when the module returns a tuple)."""
    return value[0] if isinstance(value, (tuple, list)) else value


def envoy(model: Any, path: str) -> Any:
    """The Envoy at dotted module ``path`` of an NNsight model."""
    for part in path.split("."):
        model = getattr(model, part)
    return model
