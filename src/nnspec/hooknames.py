"""TransformerLens hook names as aliases of nnspec's standard cache keys.

A TransformerLens hook name is accepted wherever a cache key or a ``names_filter`` is, but only
where the value it names means the same as an nnspec value: ``blocks.3.hook_resid_pre`` is
``layers_input.3``. A hook whose TransformerLens meaning nnspec does not serve (the queries
before rotary, MLP neurons, the per-block norm scales...) is refused with the reason and the
nearest standard name, never mapped to something close.

Layouts follow TransformerLens where they differ: ``attn.hook_rot_q`` / ``attn.hook_rot_k`` /
``attn.hook_v`` come back ``(batch, pos, heads, head_dim)``, where ``queries`` / ``keys`` /
``values`` are ``(batch, heads, pos, head_dim)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from .errors import CapabilityUnavailableError, UnknownNameError, closest

#: Per-block hooks (the part after ``blocks.{i}.``) -> (standard name, layout change).
#: ``"heads_second"``: the standard value is ``(batch, heads, pos, d)``, TransformerLens's
#: ``(batch, pos, heads, d)``.
LAYER_HOOKS: dict[str, tuple[str, Optional[str]]] = {
    "hook_resid_pre": ("layers_input", None),
    "hook_resid_mid": ("resid_mid", None),
    "hook_resid_post": ("layers_output", None),
    "hook_attn_out": ("attentions_output", None),
    "hook_mlp_out": ("mlps_output", None),
    "attn.hook_z": ("attention_heads_output", None),
    "attn.hook_pattern": ("attention_probabilities", None),
    "attn.hook_rot_q": ("queries", "heads_second"),
    "attn.hook_rot_k": ("keys", "heads_second"),
    "attn.hook_v": ("values", "heads_second"),
    "attn.hook_result": ("head_results", None),
}

#: Model-level hooks -> (standard name, layout change).
MODEL_HOOKS: dict[str, tuple[str, Optional[str]]] = {
    "hook_embed": ("token_embeddings", None),
    "ln_final.hook_scale": ("ln_final_scale", None),
    "ln_final.hook_normalized": ("ln_final_normalized", None),
}

#: TransformerLens's short names (``cache["resid_pre", 3]``, ``utils.get_act_name``) -> hook.
SHORT_NAMES: dict[str, str] = {
    "resid_pre": "hook_resid_pre",
    "resid_mid": "hook_resid_mid",
    "resid_post": "hook_resid_post",
    "attn_out": "hook_attn_out",
    "mlp_out": "hook_mlp_out",
    "z": "attn.hook_z",
    "pattern": "attn.hook_pattern",
    "rot_q": "attn.hook_rot_q",
    "rot_k": "attn.hook_rot_k",
    "v": "attn.hook_v",
    "result": "attn.hook_result",
    "embed": "hook_embed",
    "scale": "ln_final.hook_scale",
    "normalized": "ln_final.hook_normalized",
}

_ROTARY = (
    "TransformerLens's {hook} is before any rotary embedding; nnspec's {name} are as they enter the score "
    "computation (after rotary), TransformerLens's {rot}. On a model without rotary embeddings the two are the "
    "same: ask for {rot} or {name}"
)
#: Hooks whose TransformerLens meaning nnspec does not serve, with the reason.
NOT_PROVIDED: dict[str, str] = {
    "attn.hook_q": _ROTARY.format(hook="hook_q", name="queries", rot="'blocks.{i}.attn.hook_rot_q'"),
    "attn.hook_k": _ROTARY.format(hook="hook_k", name="keys", rot="'blocks.{i}.attn.hook_rot_k'"),
    "attn.hook_attn_scores": "the pre-softmax scores are not a standard value; attention_probabilities "
    "('blocks.{i}.attn.hook_pattern') are",
    "mlp.hook_pre": "MLP neurons are not standard values (the specs name the MLP module, not its activation); "
    "mlps_input / mlps_output ('blocks.{i}.hook_mlp_out') are",
    "mlp.hook_post": "MLP neurons are not standard values (the specs name the MLP module, not its activation); "
    "mlps_input / mlps_output ('blocks.{i}.hook_mlp_out') are",
    "ln1.hook_scale": "the blocks' input norms are not named by the specs; apply_ln_to_stack(stack, layer={i}) "
    "finds and applies the norm in front of the attention",
    "ln2.hook_scale": "the blocks' input norms are not named by the specs; apply_ln_to_stack(stack, layer={i}, "
    "mlp_input=True) finds and applies the norm in front of the MLP",
    "ln1.hook_normalized": "TransformerLens's value is before the norm's weight; nnspec's attentions_input[{i}] is "
    "what the attention reads (after the weight and bias)",
    "ln2.hook_normalized": "TransformerLens's value is before the norm's weight; nnspec's mlps_input[{i}] is "
    "what the MLP reads (after the weight and bias)",
    "hook_attn_in": "TransformerLens's attn_in is the residual stream before the norm ('blocks.{i}.hook_resid_pre', "
    "layers_input); nnspec's attentions_input is after the norm",
    "hook_mlp_in": "TransformerLens's mlp_in is the residual stream before the norm ('blocks.{i}.hook_resid_mid'); "
    "nnspec's mlps_input is after the norm",
    "hook_q_input": "per-head split inputs are not standard values; attentions_input is the attention's input",
    "hook_k_input": "per-head split inputs are not standard values; attentions_input is the attention's input",
    "hook_v_input": "per-head split inputs are not standard values; attentions_input is the attention's input",
}
NOT_PROVIDED_MODEL: dict[str, str] = {
    "hook_pos_embed": "the specs name no position-embedding module; layers_input[0] - token_embeddings holds "
    "whatever the model adds to (or does to) the token embeddings before block 0",
    "hook_tokens": "token ids are model.input_ids inside a trace, or model.to_tokens(prompts)",
}

_BLOCK = re.compile(r"^blocks\.(-?\d+)\.(.+)$")


@dataclass(frozen=True)
class Alias:
    """What a TransformerLens hook name stands for: the standard key (``"layers_input.3"``, or a
    bare model-level name) and the layout change applied on the way out."""

    key: str
    name: str
    layer: Optional[int]
    layout: Optional[str] = None


def hook_names(num_layers: int) -> list[str]:
    """Every TransformerLens hook name nnspec accepts, for a model of ``num_layers`` blocks."""
    names = list(MODEL_HOOKS)
    for i in range(num_layers):
        names += [f"blocks.{i}.{hook}" for hook in LAYER_HOOKS]
    return names


def aliases_of(name: str, layer: Optional[int]) -> list[str]:
    """The TransformerLens hook names of standard value ``name`` (on ``layer``), for name filters."""
    if layer is None:
        return [hook for hook, (standard, _) in MODEL_HOOKS.items() if standard == name]
    return [f"blocks.{layer}.{hook}" for hook, (standard, _) in LAYER_HOOKS.items() if standard == name]


def is_hook_name(name: str) -> bool:
    """Whether ``name`` is written as a TransformerLens hook name (not whether nnspec serves it)."""
    return name.startswith("blocks.") or name.startswith("hook_") or name.startswith("ln_final.")


def resolve(name: str, num_layers: int, standard: list[str]) -> Alias:
    """The standard key a TransformerLens hook name stands for.

    Raises :class:`CapabilityUnavailableError` with the reason for a hook whose meaning nnspec does
    not serve, and :class:`UnknownNameError` with the closest standard name and the closest hook
    name for anything else; ``standard`` lists the standard names to suggest from."""
    if name in MODEL_HOOKS:
        target, layout = MODEL_HOOKS[name]
        return Alias(target, target, None, layout)
    if name in NOT_PROVIDED_MODEL:
        raise CapabilityUnavailableError(f"{name!r} is not provided: {NOT_PROVIDED_MODEL[name]}")
    match = _BLOCK.match(name)
    if match:
        layer, hook = int(match.group(1)), match.group(2)
        if hook in LAYER_HOOKS or hook in NOT_PROVIDED:
            if not -num_layers <= layer < num_layers:
                from .errors import LayerIndexError

                raise LayerIndexError(
                    f"{name!r}: layer {layer} is out of range for a model with {num_layers} layers "
                    f"(valid: 0..{num_layers - 1}, or -{num_layers}..-1 from the end)"
                )
            layer %= num_layers
            if hook in NOT_PROVIDED:
                raise CapabilityUnavailableError(f"{name!r} is not provided: {NOT_PROVIDED[hook].format(i=layer)}")
            target, layout = LAYER_HOOKS[hook]
            return Alias(f"{target}.{layer}", target, layer, layout)
    raise UnknownNameError(unknown_message(name, num_layers, standard))


def unknown_message(name: str, num_layers: int, standard: list[str]) -> str:
    """``'x' is not a standard name or a TransformerLens hook name`` with the closest of each."""
    hooks = hook_names(num_layers) + list(SHORT_NAMES)
    near_hook = closest(name, hooks, 1) or closest(_hook_part(name), list(LAYER_HOOKS) + list(MODEL_HOOKS), 1)
    near_standard = closest(name.split(".")[0], standard, 1) if not is_hook_name(name) else []
    if not near_standard and near_hook:  # the standard name the closest hook stands for
        hook = SHORT_NAMES.get(near_hook[0], near_hook[0])
        match = _BLOCK.match(hook)
        target = LAYER_HOOKS.get(match.group(2) if match else hook) or MODEL_HOOKS.get(hook)
        near_standard = [f"{target[0]}.{match.group(1)}" if match else target[0]] if target else []
    if not near_standard:
        near_standard = closest(_hook_part(name), standard, 1)
    hints = []
    if near_standard:
        hints.append(f"closest standard name: {near_standard[0]!r}")
    if near_hook:
        hints.append(f"closest TransformerLens hook name: {near_hook[0]!r}")
    return f"{name!r} is not a standard name or a TransformerLens hook name nnspec serves" + (
        f" ({'; '.join(hints)})" if hints else ""
    )


def _hook_part(name: str) -> str:
    """``attn.hook_z`` of ``blocks.0.attn.hook_z``; the short name of a hook (``resid_pre``)."""
    match = _BLOCK.match(name)
    hook = match.group(2) if match else name
    tail = hook.rsplit(".", 1)[-1]
    return tail[len("hook_"):] if tail.startswith("hook_") else tail


def short_name(name: str, layer: Optional[int], num_layers: int, standard: list[str]) -> Alias:
    """The alias of TransformerLens's ``cache[name, layer]`` (``("resid_pre", 3)``)."""
    hook = SHORT_NAMES[name]
    if hook in MODEL_HOOKS:
        if layer is not None:
            raise UnknownNameError(f"cache[{name!r}, {layer!r}]: {name!r} is a model-level value; ask for cache[{name!r}]")
        return resolve(hook, num_layers, standard)
    if layer is None:
        raise UnknownNameError(f"cache[{name!r}]: {name!r} is a per-layer value; ask for cache[{name!r}, layer]")
    return resolve(f"blocks.{layer}.{hook}", num_layers, standard)
