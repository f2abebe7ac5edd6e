"""One candidate of the large-model benchmark in a process of its own, driven by ``large.py``.

    python benchmarks/large_worker.py CANDIDATE

Each process serves one load, so the load's time and peak memory are those of a process that has
only imported its libraries. Requests, one JSON object per line, each answered by one line:

``versions``
    the versions of the packages the candidate uses.
``load`` {path, device, layers}
    builds the model from ``path`` in bfloat16 with ``device_map="auto"`` (weights loaded, ready to
    run) and answers ``seconds``, the resident memory after the load (``rss``) and the peak during it
    (``rss_peak``), in bytes; on CUDA also ``gpu`` (bytes allocated after the load).
``answer`` {file, batch, tokens}
    runs the trace once (untimed, it also warms up) and saves every layer's output, stacked as
    ``(layers, batch, tokens, hidden)`` in float32 (bfloat16 values widen exactly), to ``file``.
``time``
    runs the trace once and answers ``seconds``, ``rss_before`` and ``rss_peak`` (the resident memory
    before it and the peak during it, the peak counter reset first) and, on CUDA, ``gpu_peak`` (bytes).

Errors answer ``error`` with the exception's type and message. Library output goes to stderr.
"""

from __future__ import annotations

import gc
import importlib
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from candidates.base import envoy, first  # noqa: E402
from protocol import installed_versions, serve  # noqa: E402
from workloads import token_batch  # noqa: E402


def rss_kib(field: str = "VmRSS") -> int:
    """A memory field of this process's ``/proc/self/status`` in KiB (``VmRSS``: resident now,
    ``VmHWM``: the peak since the counter was last reset)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def reset_peak() -> None:
    """Start the kernel's peak-resident counter again from the current size (Linux)."""
    Path("/proc/self/clear_refs").write_text("5")


class Large:
    """A candidate: ``build`` loads the model, ``read`` returns every layer's output of one forward."""

    packages: tuple[str, ...] = ("torch", "transformers", "accelerate")
    #: Modules imported before the load is timed (what a program has imported before it loads).
    imports: tuple[str, ...] = ("transformers", "accelerate")

    def __init__(self) -> None:
        self.model: Any = None
        self.inputs: dict[str, torch.Tensor] = {}
        for name in self.imports:
            importlib.import_module(name)

    def versions(self) -> dict[str, str]:
        return installed_versions(self.packages)

    def build(self, path: str, layers: str) -> None:
        raise NotImplementedError

    def warm(self, path: str) -> None:
        """Import the checkpoint's model class (transformers imports it lazily), so the timed load
        does not include it."""
        import transformers
        from transformers import AutoConfig
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

        getattr(transformers, MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[AutoConfig.from_pretrained(path).model_type])

    def read(self) -> list[torch.Tensor]:
        raise NotImplementedError


def _kwargs() -> dict[str, Any]:
    return {"dtype": torch.bfloat16, "device_map": "auto"}


class Floor(Large):
    """Plain transformers with forward hooks on the blocks: the least work that reads every layer."""

    def build(self, path: str, layers: str) -> None:
        from transformers import AutoModelForCausalLM

        self.model = AutoModelForCausalLM.from_pretrained(path, **_kwargs()).eval()
        self.blocks = list(self.model.get_submodule(layers))

    @torch.no_grad()
    def read(self) -> list[torch.Tensor]:
        states: list[Optional[torch.Tensor]] = [None] * len(self.blocks)

        def make(i: int) -> Callable:
            def hook(module: Any, args: Any, output: Any) -> None:
                states[i] = first(output)

            return hook

        handles = [block.register_forward_hook(make(i)) for i, block in enumerate(self.blocks)]
        try:
            self.model(**self.inputs)
        finally:
            for handle in handles:
                handle.remove()
        return states  # type: ignore[return-value]


class Bare(Large):
    """Bare NNsight on the native module paths."""

    packages = (*Large.packages, "nnsight")
    imports = (*Large.imports, "nnsight", "nnsight.modeling.transformers", "candidates.nnsight_bare")

    def build(self, path: str, layers: str) -> None:
        from candidates.nnsight_bare import construct

        self.model = construct(path, dispatch=True, **_kwargs())
        self.blocks = envoy(self.model, layers)

    def read(self) -> list[torch.Tensor]:
        states = []
        with self.model.trace(self.inputs):
            for block in self.blocks:
                states.append(first(block.output).save())
        return states


class Spec(Large):
    """nnspec's standard names: ``layers_output[i]`` for every layer."""

    packages = (*Large.packages, "nnsight", "nnspec")
    imports = (*Bare.imports, "nnspec")

    def warm(self, path: str) -> None:
        super().warm(path)
        from nnspec import StandardizedTransformer  # noqa: F401 - the package imports it on first use

    def build(self, path: str, layers: str) -> None:
        from nnspec import StandardizedTransformer

        self.model = StandardizedTransformer(path, dispatch=True, **_kwargs())

    def read(self) -> list[torch.Tensor]:
        model = self.model
        states = []
        with model.trace(self.inputs):
            for i in range(model.num_layers):
                states.append(model.layers_output[i].save())
        return states


CANDIDATES = {"transformers": Floor, "nnsight": Bare, "nnspec": Spec}


class Server:
    """The request loop's state: the candidate, its device and inputs."""

    def __init__(self, name: str) -> None:
        from transformers.utils import logging

        torch.set_num_threads(1)
        logging.set_verbosity_error()
        logging.disable_progress_bar()
        self.candidate = CANDIDATES[name]()
        self.device = "cpu"

    def _sync(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request["op"]
        candidate = self.candidate
        if op == "versions":
            return {"versions": candidate.versions()}
        if op == "load":
            self.device = request["device"]
            candidate.warm(request["path"])
            gc.collect()
            reset_peak()
            start = time.perf_counter()
            candidate.build(request["path"], request["layers"])
            self._sync()
            seconds = time.perf_counter() - start
            answer = {"seconds": seconds, "rss": rss_kib() * 1024, "rss_peak": rss_kib("VmHWM") * 1024}
            if self.device == "cuda":
                answer["gpu"] = torch.cuda.memory_allocated()
            return answer
        if candidate.model is None:
            raise RuntimeError(f"{op} before load")
        if op == "answer":
            inputs = token_batch(request["batch"], request["tokens"])
            candidate.inputs = {k: v.to(self.device) for k, v in inputs.items()}
            states = candidate.read()
            stacked = torch.stack([s.detach().float().cpu() for s in states], 0)
            torch.save(stacked, request["file"])
            return {"shape": list(stacked.shape)}
        if op == "time":
            if not candidate.inputs:
                raise RuntimeError("time before answer (the inputs are made there)")
            gc.collect()
            if self.device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            before = rss_kib()
            reset_peak()
            self._sync()
            start = time.perf_counter()
            candidate.read()
            self._sync()
            seconds = time.perf_counter() - start
            answer = {"seconds": seconds, "rss_before": before * 1024, "rss_peak": rss_kib("VmHWM") * 1024}
            if self.device == "cuda":
                answer["gpu_peak"] = torch.cuda.max_memory_allocated()
            return answer
        raise ValueError(f"unknown request {op!r}; known: versions, load, answer, time")


def main() -> None:
    serve(lambda: Server(sys.argv[1]).handle)


if __name__ == "__main__":
    main()
