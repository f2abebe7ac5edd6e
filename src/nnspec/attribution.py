"""Direct logit attribution: each part of the residual stream's share of a token's final logit.

The final residual stream is a sum of parts (the embeddings, every layer's token-mixer and MLP
contribution; optionally every attention head). The final norm divides the whole stream by one
scale per position; freezing that scale (as TransformerLens does) makes everything after the
residual stream affine, so each part maps to a logit and the parts' logits plus one constant (the
norm's bias and the unembedding's bias carried through) sum exactly to the model's logit.

The specs do not state which kind of norm a model uses. :func:`frozen_norm` finds out from the
module itself, for any norm of the form ``weight * P(x) / scale(x) + bias`` with ``P`` centring
(LayerNorm) or not (RMSNorm and its variants, such as ``1 + weight``), and checks that form on the
values it is used on; a norm of any other form is refused.

Where the model's final transform is not linear (logit softcapping) or the spec declares that
``project_on_vocab`` cannot reproduce the logits, the attribution is refused with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence, Union

import torch

from .errors import CapabilityUnavailableError, InputError, InputTypeError
from .runtime.adapter import read_config, text_config
from .runtime.unembed import apply_logit_transforms

#: Relative agreement required when a helper checks its own decomposition against the model.
SELF_CHECK_RTOL = 1e-3


def self_check_rtol(dtype: torch.dtype) -> float:
    """:data:`SELF_CHECK_RTOL`, widened to a few rounding steps of ``dtype`` for half-precision
    models (a bfloat16 sum of parts rounds at about 1e-2 of its size)."""
    return max(SELF_CHECK_RTOL, 8 * torch.finfo(dtype).eps) if dtype.is_floating_point else SELF_CHECK_RTOL


@dataclass
class FrozenNorm:
    """A norm ``weight * P(x) / scale + bias`` with ``scale`` frozen at one residual stream.

    ``centered``: ``P`` subtracts the mean over the hidden size (LayerNorm); otherwise ``P`` is the
    identity (RMSNorm). ``weight`` and ``bias`` are ``(hidden,)``; ``scale`` is ``(..., 1)``, one per
    position of the stream it was frozen at."""

    centered: bool
    weight: torch.Tensor
    bias: torch.Tensor
    scale: torch.Tensor

    def normalize(self, parts: torch.Tensor) -> torch.Tensor:
        """``P(parts) / scale``: TransformerLens's ``hook_normalized`` of each part (before the weight)."""
        if self.centered:
            parts = parts - parts.mean(-1, keepdim=True)
        return parts / self.scale.to(parts.dtype)

    def apply(self, parts: torch.Tensor) -> torch.Tensor:
        """Each part's share of the norm's output, ``weight * P(part) / scale`` (the bias left out):
        the shares of parts that sum to the stream sum to the norm's output minus its bias."""
        return self.weight.to(parts.dtype) * self.normalize(parts)


def frozen_norm(module: torch.nn.Module, stream: torch.Tensor, label: str = "the final norm") -> FrozenNorm:
    """``module`` as a :class:`FrozenNorm` at ``stream`` ``(..., hidden)``; refused where the
    module is not a per-position scale followed by an elementwise weight and bias."""
    with torch.no_grad():
        hidden = stream.shape[-1]
        x = stream.detach()
        probe: dict[str, Any] = dict(dtype=x.dtype, device=x.device)
        out = module(x)
        bias = module(torch.zeros(1, 1, hidden, **probe))[0, 0]
        if not torch.isfinite(bias).all():
            raise CapabilityUnavailableError(f"{label} gives no finite output for a zero input, so it has no frozen form")
        # LayerNorm ignores a constant added to every hidden unit; RMSNorm does not.
        shift = float(x.float().abs().mean()) + 1.0
        shifted = module(x + shift)
        centered = _max_diff(shifted, out) <= self_check_rtol(x.dtype) * (float(out.float().abs().max()) + 1e-12)
        # The elementwise weight: a large probe, nonzero in every unit (and centred where P centres),
        # makes the norm's epsilon negligible: norm(k*u) - bias = weight * u / rms(u).
        sign = torch.ones(hidden, **probe)
        sign[1::2] = -1
        u = sign - sign.mean() if centered else sign
        k = 100.0
        weight = (module((k * u).reshape(1, 1, hidden))[0, 0] - bias) * u.float().pow(2).mean().sqrt().to(u.dtype) / u
        centred = x - x.mean(-1, keepdim=True) if centered else x
        numerator = (weight * centred).float().norm(dim=-1, keepdim=True)
        denominator = (out - bias).float().norm(dim=-1, keepdim=True)
        scale = numerator / denominator.clamp_min(torch.finfo(torch.float32).tiny)
        norm = FrozenNorm(centered, weight, bias, scale)
        rebuilt = norm.apply(x) + bias
        if _max_diff(rebuilt, out) > self_check_rtol(x.dtype) * (float(out.float().abs().max()) + 1e-12):
            raise CapabilityUnavailableError(
                f"{label} ({type(module).__name__}) is not a per-position scale followed by an elementwise weight and "
                f"bias (LayerNorm or RMSNorm form): rebuilt from that form it differs by {_max_diff(rebuilt, out):.3g}, "
                "so it has no frozen-scale linear form to attribute through"
            )
        return norm


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max()) if a.numel() else 0.0


# -- the affine map from the final norm's output to the logits --------------------------------------


def final_norm_module(model: Any) -> Optional[torch.nn.Module]:
    """The final norm module the model applies (None where it has none)."""
    path = model.spec.modules.ln_final
    if path is None or path not in model._final_modules:
        return None
    return model._module.get_submodule(path)


def unembedding_refusal(model: Any) -> Optional[str]:
    """Why the map from the final norm's output to the logits is not linear on this model (None: it is)."""
    reason = model.spec.limits.project_on_vocab
    if reason:
        return f"project_on_vocab is not available for this model: {reason}"
    config = text_config(model._module.config)
    for transform in model.spec.logits.transforms:
        if transform.op == "softcap" and read_config(config, transform.key) is not None:
            return (
                f"the model softcaps its logits (config.{transform.key} = {read_config(config, transform.key)}), a "
                "nonlinear final transform: no sum of per-part logits equals the capped logit"
            )
    return None


def unembed(model: Any, normalized: torch.Tensor) -> torch.Tensor:
    """The modules and transforms after the final norm (``before_lm_head``, ``lm_head``, logit
    multipliers), applied to the final norm's output ``(..., hidden)`` -> ``(..., vocab)``."""
    if not model.dispatched:
        model.dispatch()
    norm = model.spec.modules.ln_final
    x = normalized
    for path in model._final_modules:
        if path != norm:
            x = model._module.get_submodule(path)(x)
    x = model._module.get_submodule(model.spec.modules.lm_head)(x)
    return apply_logit_transforms(x, model.spec, text_config(model._module.config))


def token_ids(model: Any, tokens: Any, label: str = "tokens") -> torch.Tensor:
    """``tokens`` (an id, a single-token string, or a list / tensor of either) as a long tensor of ids."""
    if isinstance(tokens, torch.Tensor):
        if tokens.dtype.is_floating_point or tokens.dtype == torch.bool:
            raise InputTypeError(f"{label}: token ids are integers, got a {tokens.dtype} tensor")
        ids = tokens.long()
    elif isinstance(tokens, (str, int)) and not isinstance(tokens, bool):
        ids = torch.tensor(_one_id(model, tokens, label))
    elif isinstance(tokens, (list, tuple)) and tokens:
        ids = torch.tensor([_one_id(model, t, f"{label}[{i}]") for i, t in enumerate(tokens)])
    else:
        raise InputTypeError(f"{label}: expected a token id, a single-token string, or a list or tensor of them, got {tokens!r}")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= model.vocab_size):
        raise InputError(f"{label}: token ids must lie in 0..{model.vocab_size - 1}, got {ids.tolist()}")
    return ids


def _one_id(model: Any, token: Any, label: str) -> int:
    if isinstance(token, str):
        return model.to_single_token(token)
    if isinstance(token, bool) or not isinstance(token, int):
        raise InputTypeError(f"{label}: expected a token id or a single-token string, got {token!r}")
    return token


def logit_directions(model: Any, tokens: Any) -> torch.Tensor:
    """The residual-stream direction (after the final norm) whose dot product with a part's share
    of the norm output is that part's logit for each token: TransformerLens's ``W_U[:, token]``
    with the logit multipliers folded in. ``tokens.shape + (hidden,)``. Refused where the map to
    the logits is not linear."""
    reason = unembedding_refusal(model)
    if reason:
        raise CapabilityUnavailableError(f"logit directions are not available: {reason}")
    ids = token_ids(model, tokens)
    weight = next(model._module.parameters())
    hidden = model.residual_shape[-1]
    flat = ids.reshape(-1)
    with torch.enable_grad():
        point = torch.zeros(flat.numel(), hidden, dtype=weight.dtype, device=weight.device, requires_grad=True)
        logits = unembed(model, point)
        logits[torch.arange(flat.numel()), flat.to(logits.device)].sum().backward()
    assert point.grad is not None  # backward() above filled it
    return point.grad.detach().reshape(tuple(ids.shape) + (hidden,))


def unembed_constant(model: Any, norm_bias: Optional[torch.Tensor], tokens: torch.Tensor) -> torch.Tensor:
    """The logit of each token when the norm's output is its bias alone (the biases of the norm
    and of the unembedding carried through), ``tokens.shape``."""
    weight = next(model._module.parameters())
    hidden = model.residual_shape[-1]
    base = torch.zeros(hidden, dtype=weight.dtype, device=weight.device) if norm_bias is None else norm_bias.to(weight.dtype)
    with torch.no_grad():
        logits = unembed(model, base.reshape(1, hidden))[0]
    return logits[tokens.to(logits.device)]


# -- per-head results ---------------------------------------------------------------------------------


def output_projection(model: Any, layer: int) -> torch.nn.Module:
    """Layer ``layer``'s attention output projection (the spec's ``attention.output_projection``)."""
    projection = model.spec.attention.output_projection
    branch = model.branch("attention", layer)
    if not projection or branch.module is None:
        raise CapabilityUnavailableError(
            f"per-head results are not available on layer {layer}: the spec ({model.adapter.source}) names no "
            "attention.output_projection"
        )
    block = model._module.get_submodule(model.spec.modules.layers)[layer]
    return block.get_submodule(f"{branch.module}.{projection}")


def head_results(model: Any, layer: int, heads_output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each head's share of the output projection's output, from ``attention_heads_output[layer]``
    ``(batch, seq, heads, head_dim)``: ``((batch, seq, heads, out), (out,))``, the per-head results
    and the projection's bias (zero without one). Results plus bias sum to the projection's output.

    Computed by the projection itself on the heads one at a time (every other head zeroed), so it
    holds for any linear projection layout; its own output on all heads checks it."""
    if not isinstance(heads_output, torch.Tensor) or heads_output.ndim != 4:
        shape = tuple(heads_output.shape) if isinstance(heads_output, torch.Tensor) else type(heads_output).__name__
        raise InputError(f"per-head results: attention_heads_output[{layer}] should be (batch, seq, heads, head_dim), got {shape}")
    module = output_projection(model, layer)
    weight = next(module.parameters(), None)
    z = heads_output if weight is None else heads_output.to(dtype=weight.dtype, device=weight.device)
    batch, seq, heads, dim = z.shape
    with torch.no_grad():
        bias = module(torch.zeros(1, heads * dim, dtype=z.dtype, device=z.device))[0]
        eye = torch.eye(heads, dtype=z.dtype, device=z.device)
        masked = z.unsqueeze(2) * eye.reshape(1, 1, heads, heads, 1)  # (batch, seq, head, heads, dim)
        results = module(masked.reshape(batch, seq, heads, heads * dim)) - bias
        whole = module(z.reshape(batch, seq, heads * dim))
    if _max_diff(results.sum(2) + bias, whole) > self_check_rtol(z.dtype) * (float(whole.float().abs().max()) + 1e-12):
        raise CapabilityUnavailableError(
            f"per-head results are not available on layer {layer}: the output projection "
            f"({type(module).__name__}) is not linear in its input, so its output does not split per head"
        )
    return results, bias


def residual_head_results(model: Any, layer: int, heads_output: torch.Tensor,
                          contribution: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`head_results` as parts of the residual stream: scaled by the branch's multiplier,
    and checked against the attention's contribution ``attentions_output[layer]`` (where the
    contribution is not the projection's output, e.g. a norm follows it, refused with that reason)."""
    results, bias = head_results(model, layer, heads_output)
    scale = model._structure.attention.scale
    if scale is not None:
        results, bias = results * scale, bias * scale
    if contribution is not None:
        total = results.sum(2) + bias
        if total.shape != contribution.shape or _max_diff(total, contribution) > self_check_rtol(contribution.dtype) * (
            float(contribution.float().abs().max()) + 1e-12
        ):
            raise CapabilityUnavailableError(
                f"per-head parts of the residual stream are not available on layer {layer}: the attention's "
                "contribution (attentions_output) is not its output projection's output (a step such as a norm "
                "follows the projection), so it does not split per head"
            )
    return results, bias


# -- direct logit attribution -------------------------------------------------------------------------


@dataclass
class LogitAttribution:
    """Per-part shares of the logits of some tokens at each prompt's last position.

    ``contributions``: ``(parts, batch)``, one row per part, named by ``labels`` (``"embed"``,
    ``"attention.3"`` or per head ``"L3H0"`` with ``"attention_bias.3"``, ``"mixer.3"``,
    ``"mlp.3"``); ``constant``: ``(batch,)``, the logit of the final norm's bias and the
    unembedding's bias; ``logits``: ``(batch,)``, the model's logits of the tokens (of ``tokens``
    minus ``incorrect_tokens`` where given). ``contributions.sum(0) + constant == logits``."""

    contributions: torch.Tensor
    labels: list[str]
    constant: torch.Tensor
    logits: torch.Tensor
    tokens: torch.Tensor
    scale: torch.Tensor = field(repr=False)


def attribution_refusal(model: Any) -> Optional[str]:
    """Why direct logit attribution is not available on this model (None: it is)."""
    reason = unembedding_refusal(model)
    if reason:
        return reason
    if model.spec.limits.contribution:
        return f"the residual stream does not split into branch contributions on this model: {model.spec.limits.contribution}"
    if any(p > 1 for p in model.layer_passes):
        return ("some blocks run several times per forward and only their last pass's contributions are standard "
                "values, so the parts do not sum to the final residual stream")
    if len(model.residual_shape) > 1:
        return f"the residual stream holds several streams {tuple(model.residual_shape)}, which the final modules combine"
    return None


def attribution_names(model: Any, per_head: bool) -> list[str]:
    """What :func:`logit_attribution` reads from a cache."""
    names = ["layers_input", "attentions_output", "mixers_output", "mlps_output", "layers_output", "logits"]
    return names + (["attention_heads_output"] if per_head else [])


def logit_attribution(
    model: Any,
    prompts: Union[str, Sequence[str], Any],
    tokens: Any,
    incorrect_tokens: Any = None,
    per_head: bool = False,
) -> LogitAttribution:
    """Direct logit attribution at each prompt's last position.

    Args:
        model: a :class:`~nnspec.StandardizedTransformer`.
        prompts: prompts (one forward runs over them), or an :class:`~nnspec.cache.ActivationCache`
            holding what :func:`attribution_names` lists, every layer, and the logits.
        tokens: the token whose logit is split: one for every prompt (an id or a single-token
            string) or one per prompt.
        incorrect_tokens: optional; split the logit difference ``tokens - incorrect_tokens`` instead.
        per_head: split each attention layer's part per head (with the projection's bias as its
            own part), where the spec gives the per-head output and the contribution is the output
            projection's output.

    Returns:
        :class:`LogitAttribution`: ``contributions`` ``(parts, batch)`` summing, with ``constant``,
        to ``logits`` ``(batch,)``.
    """
    reason = attribution_refusal(model)
    if reason:
        raise CapabilityUnavailableError(f"direct logit attribution is not available for this model: {reason}")
    from .cache import ActivationCache, run_with_cache

    if not isinstance(per_head, bool):
        raise InputTypeError(f"per_head: expected True or False, got {per_head!r}")
    if per_head and model.attention_heads_output.unavailable is not None:
        raise CapabilityUnavailableError(
            f"per-head attribution is not available: attention_heads_output is not available for this model: "
            f"{model.attention_heads_output.unavailable}"
        )
    correct = token_ids(model, tokens, "tokens")
    wrong = None if incorrect_tokens is None else token_ids(model, incorrect_tokens, "incorrect_tokens")
    if isinstance(prompts, ActivationCache):
        cache = prompts
        if cache.logits is None or not cache.has_batch_dim:
            raise InputError(
                "logit_attribution(cache): the cache needs the logits and its batch dimension: build it with "
                "run_with_cache(prompts, return_type='logits') and without remove_batch_dim"
            )
    else:
        cache = run_with_cache(model, prompts, names_filter=_served_names(model, per_head), return_type="logits")
    batch = cache[f"layers_output.{model.num_layers - 1}"].shape[0]
    correct = _per_prompt(correct, batch, "tokens")
    wrong = None if wrong is None else _per_prompt(wrong, batch, "incorrect_tokens")
    parts, labels = cache.decompose_resid(per_head=per_head)
    parts = parts[:, :, -1]  # (parts, batch, hidden) at the last position
    final = cache[f"layers_output.{model.num_layers - 1}"][:, -1]
    module = final_norm_module(model)
    if module is not None:
        norm = frozen_norm(module, final)
        shares, bias, scale = norm.apply(parts), norm.bias, norm.scale
    else:
        shares, bias, scale = parts, None, torch.ones(final.shape[:-1] + (1,))
    directions = logit_directions(model, correct)
    constant = unembed_constant(model, bias, correct)
    if wrong is not None:
        directions = directions - logit_directions(model, wrong)
        constant = constant - unembed_constant(model, bias, wrong)
    contributions = (shares.to(directions.dtype) * directions.to(shares.device).unsqueeze(0)).sum(-1)
    assert cache.logits is not None  # a given cache was checked above; run_with_cache(return_type="logits") keeps them
    logits = cache.logits[:, -1]
    rows = torch.arange(batch)
    expected = logits[rows, correct] - (logits[rows, wrong] if wrong is not None else 0)
    rebuilt = contributions.sum(0) + constant.to(contributions.device)
    if _max_diff(rebuilt, expected) > self_check_rtol(parts.dtype) * (float(logits.float().abs().max()) + 1.0):
        raise CapabilityUnavailableError(
            f"direct logit attribution is not available for this model: the parts' logits sum to a value "
            f"{_max_diff(rebuilt, expected):.3g} away from the model's logit, so the modules after the residual stream "
            "are not linear with the norm's scale frozen"
        )
    return LogitAttribution(contributions, labels, constant, expected, correct, scale)


def _served_names(model: Any, per_head: bool) -> Any:
    """A names filter: the standard values the attribution reads, on the layers that have them."""
    wanted = set(attribution_names(model, per_head))
    return lambda key: key.split(".")[0] in wanted


def _per_prompt(ids: torch.Tensor, batch: int, label: str) -> torch.Tensor:
    if ids.ndim == 0:
        return ids.expand(batch)
    if ids.shape != (batch,):
        raise InputError(f"{label}: give one token for every prompt or one per prompt ({batch}), got shape {tuple(ids.shape)}")
    return ids


__all__ = [
    "FrozenNorm",
    "LogitAttribution",
    "attribution_refusal",
    "frozen_norm",
    "head_results",
    "logit_attribution",
    "logit_directions",
]
