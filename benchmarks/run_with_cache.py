"""run_with_cache of every layer's residual stream against plain transformers with
output_hidden_states=True, batch 8, same run. Target: at most 1.1x.

    python benchmarks/run_with_cache.py [--repeats 15] [--batch 8]
"""

from __future__ import annotations

from common import interleaved, model_pair, report, setup


def main() -> None:
    args, path = setup(__doc__, batch=8)
    import torch

    model, hf, prompts, encoded, positions = model_pair(path, args.batch)

    @torch.no_grad()
    def floor() -> object:
        return hf(**encoded, position_ids=positions, output_hidden_states=True).hidden_states

    def cache() -> object:
        return model.run_with_cache(prompts, names=["layers_input", "layers_output"])

    times = interleaved({"transformers hidden_states": floor, "nnspec run_with_cache": cache}, args.repeats)
    report(f"every layer's residual stream, GPT-2-small-sized, batch {args.batch}", times, "transformers hidden_states", target=1.1)


if __name__ == "__main__":
    main()
