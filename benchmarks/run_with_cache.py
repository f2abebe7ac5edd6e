"""run_with_cache of every layer's residual stream against plain transformers with
output_hidden_states=True, batch 8, same run. Target: at most 1.1x.

    python benchmarks/run_with_cache.py [--repeats 15] [--batch 8]
"""

from __future__ import annotations

from common import interleaved, report, setup

PROMPTS = [
    "The Eiffel Tower is in the city of",
    "The capital of France is",
    "Once upon a time there was a small model that lived on a laptop",
    "Mechanistic interpretability studies the residual stream",
    "Hello world, how are you today?",
    "Cats, dogs, birds and fish are animals",
    "The quick brown fox jumps over the lazy dog",
    "Numbers: 0 1 2 3 4 5 6 7 8 9",
]


def main() -> None:
    args, path = setup(__doc__, batch=8)
    import torch
    from transformers import AutoModelForCausalLM

    from nnspec import StandardizedTransformer

    model = StandardizedTransformer(path, dispatch=True)
    hf = AutoModelForCausalLM.from_pretrained(path)
    prompts = (PROMPTS * (args.batch // len(PROMPTS) + 1))[: args.batch]
    encoded = model.tokenizer(prompts, return_tensors="pt", padding=True)
    positions = (encoded["attention_mask"].cumsum(-1) - 1).clamp(min=0)

    @torch.no_grad()
    def floor() -> object:
        return hf(**encoded, position_ids=positions, output_hidden_states=True).hidden_states

    def cache() -> object:
        return model.run_with_cache(prompts, names=["layers_input", "layers_output"])

    times = interleaved({"transformers hidden_states": floor, "nnspec run_with_cache": cache}, args.repeats)
    report(f"every layer's residual stream, GPT-2-small-sized, batch {args.batch}", times, "transformers hidden_states", target=1.1)


if __name__ == "__main__":
    main()
