"""A short nnspec script written as a user would, with type annotations.

``tests/test_typing.py`` type-checks it with mypy (the standard names are typed: accessors index
to tensors that keep ``.save()``) and runs it on a tiny checkpoint. Run it yourself with a local
checkpoint directory or a hub id: ``python examples/typed_usage.py gpt2``.
"""

from __future__ import annotations

import sys

import torch

from nnspec import StandardizedTransformer


def last_token_states(model: StandardizedTransformer, prompt: str) -> list[torch.Tensor]:
    """Every block's output at the last position, ``num_layers`` tensors of ``(batch, hidden)``."""
    saved: list[torch.Tensor] = []
    with model.trace(prompt):
        for i in range(model.num_layers):
            saved.append(model.layers_output[i][:, -1].save())
    return saved


def ablate_first_mlp(model: StandardizedTransformer, prompt: str) -> torch.Tensor:
    """Logits ``(batch, seq, vocab)`` with layer 0's MLP contribution set to zero."""
    with model.trace(prompt):
        contribution = model.mlps_output[0]
        model.mlps_output[0] = torch.zeros_like(contribution)
        logits = model.logits.save()
    return logits


def main(checkpoint: str) -> dict[str, float]:
    model = StandardizedTransformer(checkpoint)
    states = last_token_states(model, "The quick brown fox")
    top = model.project_on_vocab(states[-1]).softmax(-1).max().item()
    ablated = ablate_first_mlp(model, "The quick brown fox")
    width: int = model.hidden_size
    return {"layers": float(len(states)), "hidden": float(width), "top_prob": top, "logit_max": ablated.max().item()}


if __name__ == "__main__":
    print(main(sys.argv[1]))
