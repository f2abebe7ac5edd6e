"""run_with_cache of every layer's residual stream against plain transformers with
output_hidden_states=True, batch 8, same run. Target: at most 1.1x.

    python benchmarks/run_with_cache.py [--repeats 15] [--batch 8]
"""

from __future__ import annotations

from common import PROMPTS, interleaved, report, setup



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
