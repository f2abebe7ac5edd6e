"""Gradients of scalar metrics w.r.t. standard activations, and attribution patching."""

from .runtime.gradients import GRADIENT_VALUES, attribution_patching, gradients

__all__ = ["GRADIENT_VALUES", "attribution_patching", "gradients"]
