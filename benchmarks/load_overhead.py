"""Load overhead: StandardizedTransformer(path) against a bare NNsight TransformersModel(path).

Both load lazily (meta device) with a tokenizer loaded from the checkpoint, on a GPT-2-small-sized
random checkpoint, interleaved in one run. Target: at most 1.5x the bare load. Also times the first
trace (weights dispatched + one forward) relative to bare NNsight, for context.

    python benchmarks/load_overhead.py [--repeats 15] [--dir /tmp/nnspec-bench]
"""

from __future__ import annotations

from common import interleaved, report, setup


def main() -> None:
    args, path = setup(__doc__)
    from nnsight.modeling.transformers import TransformersModel
    from transformers import AutoTokenizer

    from nnspec import StandardizedTransformer

    def bare() -> object:
        return TransformersModel(path, task="text-generation", tokenizer=AutoTokenizer.from_pretrained(path))

    def nnspec() -> object:
        return StandardizedTransformer(path)

    times = interleaved({"bare NNsight": bare, "nnspec": nnspec}, args.repeats)
    report("load (lazy, meta device), GPT-2-small-sized", times, "bare NNsight", target=1.5)

    def first_trace(build: object) -> object:
        def run() -> None:
            model = build()
            with model.trace("The Eiffel Tower is in the city of"):
                model.output.logits.save() if not isinstance(model, StandardizedTransformer) else model.logits.save()

        return run

    times = interleaved({"bare NNsight": first_trace(bare), "nnspec": first_trace(nnspec)}, max(3, args.repeats // 3), warmup=1)
    report("load + dispatch + first trace", times, "bare NNsight")


if __name__ == "__main__":
    main()
