"""Direct logit attribution over the standard names (see :mod:`nnspec.runtime.attribution`)."""

from .runtime.attribution import (
    FrozenNorm,
    LogitAttribution,
    attribution_refusal,
    frozen_norm,
    head_results,
    logit_attribution,
    logit_directions,
)

__all__ = [
    "FrozenNorm",
    "LogitAttribution",
    "attribution_refusal",
    "frozen_norm",
    "head_results",
    "logit_attribution",
    "logit_directions",
]
