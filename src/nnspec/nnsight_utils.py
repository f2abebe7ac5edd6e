"""Activation collection helpers (nnterp's names plus ``collect_activations``)."""

from .runtime.activations import collect_activations, collect_token_activations_batched, get_token_activations

__all__ = ["collect_activations", "collect_token_activations_batched", "get_token_activations"]
