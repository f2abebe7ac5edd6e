"""nnspec: the shared standardized workloads, plus its own ``run_with_cache`` and conformance check."""

from __future__ import annotations

from typing import Any

import torch
from workloads import PROMPTS

from candidates.standardized import Standardized


class NNspec(Standardized):
    library = "nnspec"
    packages = ("torch", "transformers", "nnsight", "nnspec")

    def run_run_with_cache(self) -> Any:
        return self.model.run_with_cache(PROMPTS, names=["layers_output"])

    def canonical(self, name: str, output: Any) -> torch.Tensor:
        if name == "run_with_cache":
            return output.stack("layers_output").float()
        return output

    def task(self, name: str) -> Any:
        if name == "validate" and getattr(self, "subject", None) is None:
            from nnspec.verification.conformance import load_subject

            self.subject = load_subject(self.arch, self.path)
        return super().task(name)

    def run_validate(self) -> list[Any]:
        """Every conformance check; raises when one fails, so only a passing check is timed."""
        from nnspec.verification.conformance import run_checks

        results = run_checks(self.subject)
        failed = [f"{r.check}: {r.error}" for r in results if not r.passed]
        if failed:
            raise AssertionError("conformance failed: " + "; ".join(failed))
        return results


CANDIDATE = NNspec
