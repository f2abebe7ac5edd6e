"""logit_lens and patchscope_lens timings, as ratios against baselines measured in the same run.

- logit_lens vs the floor: a plain transformers forward with output_hidden_states plus the final
  norm and unembedding of every layer's last-token state. Target: at most 1.05x.
- patchscope_lens over all layers (one batched forward) vs one trace per layer (the peers'
  method), checking the results are identical. Target: at least 3x faster.

    python benchmarks/interventions.py [--repeats 15] [--batch 8] [--dir /tmp/nnspec-bench]
"""

from __future__ import annotations

from common import interleaved, model_pair, report, setup


def main() -> None:
    args, path = setup(__doc__, batch=8)
    import torch

    from nnspec.interventions import TargetPrompt, logit_lens, patchscope_lens

    model, hf, prompts, encoded, positions = model_pair(path, args.batch)

    @torch.no_grad()
    def floor() -> torch.Tensor:
        out = hf(**encoded, position_ids=positions, output_hidden_states=True)
        states = torch.stack([h[:, -1] for h in out.hidden_states[1:]], 1)
        return hf.lm_head(hf.transformer.ln_f(states)).softmax(-1)

    def lens() -> torch.Tensor:
        return logit_lens(model, prompts)

    times = interleaved({"floor (plain transformers)": floor, "nnspec logit_lens": lens}, args.repeats)
    report(f"logit lens, GPT-2-small-sized, batch {args.batch}", times, "floor (plain transformers)", target=1.05)

    sources = prompts[: max(1, args.batch // 4)]
    target = TargetPrompt("king king\n1135 1135\nhello hello\n?", -1)
    layers = list(range(model.num_layers))

    def per_layer() -> torch.Tensor:
        states = []
        with model.trace(sources):
            for layer in layers:
                states.append(model.layers_output[layer][:, -1].save())
        out = []
        for layer in layers:
            with model.trace([target.prompt] * len(sources)):
                model.layers_output[layer][:, -1] = states[layer]
                probs = model.next_token_probs.save()
            out.append(probs)
        return torch.stack(out, 1)

    def batched() -> torch.Tensor:
        return patchscope_lens(model, source_prompts=sources, target_patch_prompts=target, layers=layers)

    with torch.no_grad():
        same = torch.allclose(per_layer(), batched(), atol=1e-5)
    times = interleaved({"one trace per layer": per_layer, "nnspec patchscope_lens": batched}, max(5, args.repeats // 2))
    ratio = report(f"patchscope lens over {len(layers)} layers, {len(sources)} source(s)", times, "one trace per layer")
    print(f"  speed-up: {1 / ratio:.2f}x (target >= 3x: {'meets' if 1 / ratio >= 3 else 'MISSES'}); identical results: {same}")


if __name__ == "__main__":
    main()
