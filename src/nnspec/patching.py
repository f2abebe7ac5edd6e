"""Activation patching sweeps: one clean activation at a time patched into the corrupted run, for
every layer, position and head, with the metric read after each patch.

The sweeps follow TransformerLens's ``patching`` module (same function names, same argument order
``(model, corrupted, clean, metric)``, same result axes), over nnspec's standard values, so one
call works on every architecture a spec serves:

============================== =========================== ==========================
sweep                          standard value patched      result
============================== =========================== ==========================
``resid_pre``                  ``layers_input[i]``         ``(layers, positions)``
``resid_post``                 ``layers_output[i]``        ``(layers, positions)``
``attn_out``                   ``attentions_output[i]``    ``(layers, positions)``
``mixer_out``                  ``mixers_output[i]``        ``(layers, positions)``
``mlp_out``                    ``mlps_output[i]``          ``(layers, positions)``
``attn_head_out_all_pos``      ``attention_heads_output``  ``(layers, heads)``
``attn_head_out_by_pos``       ``attention_heads_output``  ``(layers, positions, heads)``
``attn_head_{q,k,v}_all_pos``  ``queries`` / ``keys`` /    ``(layers, heads)``
                               ``values``
``attn_head_{q,k,v}_by_pos``   the same                    ``(layers, positions, heads)``
``attn_head_pattern_all_pos``  ``attention_probabilities`` ``(layers, heads)``
``attn_head_pattern_by_pos``   the same (query position)   ``(layers, positions, heads)``
============================== =========================== ==========================

``get_act_patch_block_every`` stacks ``resid_pre``, ``attn_out`` and ``mlp_out`` (``(3, layers,
positions)``); ``get_act_patch_attn_head_all_pos_every`` / ``..._by_pos_every`` stack the five head
sweeps (``(5, layers, [positions,] heads)``). ``get_act_patch(model, sweep, ...)`` runs any sweep by name.

How a sweep runs: one forward over the clean input reads every value the sweep patches from; then
the corrupted input is repeated along the batch dimension, ``batch_size`` copies per forward, and
each copy receives a different patch (rows of one copy are the corrupted prompts, in order). The
metric is called once per patch on that copy's logits, ``(batch, seq, vocab)``: exactly the logits
one forward of the corrupted prompts with that single patch applied would give.

Attention-only values (``attn_out``, per-head sweeps) on a layer whose token mixer is not attention
and MLP values on a layer without an MLP are NaN in the result when ``layers`` is left at its
default (every layer); a layer chosen explicitly that lacks the value is refused with its reason.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence, Union

import torch

from .errors import (
    CapabilityUnavailableError,
    InputError,
    InputTypeError,
    PositionError,
    UnknownNameError,
    did_you_mean,
)
from .runtime.accessors import layer_index

#: ``metric(logits)`` -> a scalar, or one value per prompt ``(batch,)``.
Metric = Callable[[torch.Tensor], Any]
#: Prompts (a string or a list of strings of one token length), token ids ``(batch, seq)`` or
#: ``(seq,)``, or an encoding with ``input_ids`` and optionally ``attention_mask``.
Tokens = Union[str, Sequence[str], torch.Tensor, Sequence[Sequence[int]], Mapping]
Indices = Union[int, Sequence[int], torch.Tensor, None]

DEFAULT_BATCH_SIZE = 16


@dataclass(frozen=True)
class Sweep:
    """One kind of sweep: the standard value it patches and the axes of its result.

    ``seq_axis`` / ``head_axis`` are the value's position and head dimensions (``queries[i]`` is
    ``(batch, heads, seq, head_dim)``, ``attention_heads_output[i]`` ``(batch, seq, heads, head_dim)``);
    ``heads`` names the model's per-layer head count for that value.
    """

    name: str
    value: str
    by_position: bool
    by_head: bool
    seq_axis: int = 1
    head_axis: Optional[int] = None
    heads: str = "num_heads_per_layer"

    @property
    def axes(self) -> tuple[str, ...]:
        """The result's axes, before any per-prompt axis of the metric."""
        return ("layer",) + (("position",) if self.by_position else ()) + (("head",) if self.by_head else ())


def _head_sweeps(short: str, value: str, seq_axis: int, head_axis: int, heads: str) -> list[Sweep]:
    return [
        Sweep(f"attn_head_{short}_all_pos", value, False, True, seq_axis, head_axis, heads),
        Sweep(f"attn_head_{short}_by_pos", value, True, True, seq_axis, head_axis, heads),
    ]


#: Every sweep by name.
SWEEPS: dict[str, Sweep] = {
    s.name: s
    for s in [
        Sweep("resid_pre", "layers_input", True, False),
        Sweep("resid_post", "layers_output", True, False),
        Sweep("attn_out", "attentions_output", True, False),
        Sweep("mixer_out", "mixers_output", True, False),
        Sweep("mlp_out", "mlps_output", True, False),
        *_head_sweeps("out", "attention_heads_output", 1, 2, "num_heads_per_layer"),
        *_head_sweeps("q", "queries", 2, 1, "num_heads_per_layer"),
        *_head_sweeps("k", "keys", 2, 1, "num_kv_heads_per_layer"),
        *_head_sweeps("v", "values", 2, 1, "num_kv_heads_per_layer"),
        *_head_sweeps("pattern", "attention_probabilities", 2, 1, "num_heads_per_layer"),
    ]
}

#: TransformerLens sweeps with no counterpart here, and why.
NOT_OFFERED = {
    "resid_mid": "the residual stream between the attention and MLP branches is only derived (the cache's "
    "resid_mid is layers_input + attentions_output), not a value the model can be given; "
    "patch 'attn_out' (what the attention adds to it) or 'resid_pre' of the layer instead",
}


# -- inputs -----------------------------------------------------------------------------------------


def _tokens(model: Any, data: Any, label: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``data`` as ``(input_ids, attention_mask)``, both ``(batch, seq)``, with no padding added."""
    if isinstance(data, str) or (isinstance(data, (list, tuple)) and data and all(isinstance(p, str) for p in data)):
        prompts = [data] if isinstance(data, str) else list(data)
        encoded = []
        for i, prompt in enumerate(prompts):
            if not prompt:
                raise InputError(f"{label}[{i}]: an empty string has no tokens to run")
            encoded.append(model.tokenizer(prompt, return_tensors="pt")["input_ids"][0])
        lengths = [len(ids) for ids in encoded]
        if len(set(lengths)) > 1:
            raise InputError(
                f"{label}: the prompts tokenize to different lengths ({', '.join(str(n) for n in lengths)} tokens): "
                "patching compares the same positions across runs, so padding would shift them. Give prompts of one "
                "token length, or aligned token ids (a (batch, seq) tensor, or a dict with input_ids and attention_mask)"
            )
        ids = torch.stack(encoded)
        return ids, torch.ones_like(ids)
    mask = None
    if isinstance(data, Mapping):
        if "input_ids" not in data:
            raise InputError(f"{label}: an encoding needs 'input_ids' (keys given: {', '.join(map(str, data))})")
        ids, mask = data["input_ids"], data.get("attention_mask")
    else:
        ids = data
    ids = _id_tensor(ids, f"{label} input_ids")
    if mask is None:
        mask = torch.ones_like(ids)
    else:
        mask = _id_tensor(mask, f"{label} attention_mask")
        if mask.shape != ids.shape:
            raise InputError(f"{label}: attention_mask has shape {tuple(mask.shape)}, input_ids {tuple(ids.shape)}")
    return ids, mask


def _id_tensor(value: Any, label: str) -> torch.Tensor:
    if isinstance(value, (list, tuple)):
        if not value:
            raise InputError(f"{label}: empty")
        rows = [value] if not isinstance(value[0], (list, tuple, torch.Tensor)) else list(value)
        widths = {len(row) for row in rows}
        if len(widths) > 1:
            raise InputError(
                f"{label}: rows of different lengths ({', '.join(str(len(r)) for r in rows)}); pad them yourself to one "
                "aligned length and pass an attention_mask"
            )
        try:
            value = torch.tensor([list(map(int, row)) for row in rows], dtype=torch.long)
        except (TypeError, ValueError):
            raise InputTypeError(f"{label}: expected token ids (ints)") from None
    if not isinstance(value, torch.Tensor):
        raise InputTypeError(
            f"{label}: expected prompts (str or list of str), token ids (a tensor or list of int lists) or an encoding "
            f"dict, got {type(value).__name__}"
        )
    if value.dtype.is_floating_point or value.dtype == torch.bool or value.is_complex():
        raise InputTypeError(f"{label}: expected integer token ids, got a {value.dtype} tensor")
    if value.ndim == 1:
        value = value.unsqueeze(0)
    if value.ndim != 2 or value.numel() == 0:
        raise InputError(f"{label}: expected shape (batch, seq) or (seq,) with at least one token, got {tuple(value.shape)}")
    return value.long().cpu()


def _pair(model: Any, corrupted: Any, clean: Any) -> tuple[torch.Tensor, torch.Tensor, Optional[tuple[torch.Tensor, torch.Tensor]]]:
    """Corrupted ids and mask, and the clean ones (None when ``clean`` is a cache), checked to align."""
    ids, mask = _tokens(model, corrupted, "corrupted")
    if _is_cache(clean):
        return ids, mask, None
    clean_ids, clean_mask = _tokens(model, clean, "clean")
    if clean_ids.shape[0] != ids.shape[0]:
        raise InputError(
            f"clean has {clean_ids.shape[0]} prompts and corrupted {ids.shape[0]}: each corrupted prompt is patched from "
            "the clean prompt at the same batch row, so give as many of each"
        )
    if clean_ids.shape[1] != ids.shape[1]:
        raise InputError(
            f"clean is {clean_ids.shape[1]} tokens long and corrupted {ids.shape[1]}: patching moves a value between the "
            "same positions of both runs, so they must have one token length"
        )
    if not torch.equal(clean_mask, mask):
        raise InputError(
            "clean and corrupted have different attention masks: the same column would hold a real token in one run "
            "and padding in the other; pad both the same way"
        )
    return ids, mask, (clean_ids, clean_mask)


def _is_cache(value: Any) -> bool:
    from .cache import ActivationCache

    return isinstance(value, ActivationCache)


def _sweep(name: Any) -> Sweep:
    if not isinstance(name, str):
        raise InputTypeError(f"sweep: expected a sweep name (str), got {type(name).__name__}")
    key = name[len("get_act_patch_"):] if name.startswith("get_act_patch_") else name
    if key in SWEEPS:
        return SWEEPS[key]
    if key in NOT_OFFERED:
        raise UnknownNameError(f"sweep {name!r} is not offered: {NOT_OFFERED[key]}")
    raise UnknownNameError(f"unknown sweep {name!r}{did_you_mean(key, SWEEPS)}; sweeps: {', '.join(SWEEPS)}")


def _indices(values: Indices, label: str) -> Optional[list[int]]:
    if values is None:
        return None
    if isinstance(values, torch.Tensor):
        if values.ndim > 1 or values.dtype.is_floating_point:
            raise InputTypeError(f"{label}: expected an int or a 1-d list of ints, got a {values.dtype} tensor of shape {tuple(values.shape)}")
        values = values.tolist()
    listed: list[Any] = list(values) if isinstance(values, (list, tuple, range)) else [values]  # checked one by one below
    if not listed:
        raise InputError(f"{label} is empty")
    out = []
    for value in listed:
        try:
            if isinstance(value, bool):
                raise TypeError
            out.append(operator.index(value))
        except TypeError:
            raise InputTypeError(f"{label}: {value!r} is not an integer index") from None
    return out


def _layer_reason(accessor: Any, i: int) -> Optional[str]:
    """Why ``accessor`` serves no value at layer ``i`` on this model (None: it does)."""
    try:
        port = accessor.port(i)
        check = getattr(port, "_check", None)  # attention internals: eager only, softmax layers only
        if check is not None:
            check()
    except CapabilityUnavailableError as exc:
        return str(exc)
    return None


@dataclass
class _Plan:
    """What a checked sweep will do."""

    sweep: Sweep
    layers: list[int]
    served: list[bool]
    positions: Optional[list[int]]
    heads: Optional[list[int]]
    head_counts: list[int]


def _plan(model: Any, sweep: Sweep, seq: int, layers: Any, positions: Indices, heads: Indices, explicit: bool) -> _Plan:
    accessor = getattr(model, sweep.value)
    if accessor.unavailable is not None:
        raise CapabilityUnavailableError(f"sweep {sweep.name!r}: {sweep.value} is not available for this model: {accessor.unavailable}")
    chosen = list(range(model.num_layers)) if layers is None else [
        layer_index("layers", layer, model.num_layers) for layer in _indices(layers, "layers") or ()
    ]
    reasons = [_layer_reason(accessor, i) for i in chosen]
    if explicit or all(r is not None for r in reasons):
        for i, reason in zip(chosen, reasons):
            if reason is not None:
                raise CapabilityUnavailableError(f"sweep {sweep.name!r} at layer {i}: {reason}")
    served = [r is None for r in reasons]
    wanted_positions: Optional[list[int]] = None
    if sweep.by_position:
        given = _indices(positions, "positions")
        wanted_positions = list(range(seq)) if given is None else []
        for p in given or []:
            if not -seq <= p < seq:
                raise PositionError(f"positions: {p} is out of range for inputs of {seq} tokens (valid: 0..{seq - 1}, or -{seq}..-1)")
            wanted_positions.append(p % seq)
    elif positions is not None:
        raise InputError(
            f"positions: sweep {sweep.name!r} patches every position at once; use "
            f"{sweep.name.replace('_all_pos', '_by_pos')!r} to sweep positions"
        )
    counts: list[int] = []
    wanted_heads: Optional[list[int]] = None
    if sweep.by_head:
        per_layer = getattr(model, sweep.heads)
        counts = [per_layer[i] for i in chosen]
        given = _indices(heads, "heads")
        if given is None:
            wanted_heads = list(range(max(c for c, ok in zip(counts, served) if ok)))
        else:
            for h in given:
                for i, count, ok in zip(chosen, counts, served):
                    if ok and not 0 <= h < count:
                        kind = "key/value heads" if "kv" in sweep.heads else "heads"
                        raise InputError(f"heads: {h} is out of range: layer {i} has {count} {kind} (valid: 0..{count - 1})")
            wanted_heads = given
    elif heads is not None:
        raise InputError(f"heads: sweep {sweep.name!r} does not patch single heads; head sweeps: {', '.join(n for n, s in SWEEPS.items() if s.by_head)}")
    return _Plan(sweep, chosen, served, wanted_positions, wanted_heads, counts)


def _metric_value(value: Any, batch: int, label: str = "metric(logits)") -> torch.Tensor:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return torch.tensor(float(value))
    if not isinstance(value, torch.Tensor):
        raise InputTypeError(f"{label} returned a {type(value).__name__}; expected a scalar tensor or one value per prompt ({batch},)")
    if value.shape not in (torch.Size(()), torch.Size((batch,))):
        raise InputError(
            f"{label} returned shape {tuple(value.shape)}; expected a scalar or one value per prompt, shape ({batch},): "
            "it receives logits (batch, seq, vocab) of the corrupted prompts with one patch applied"
        )
    return value.detach().float().cpu()


# -- running ------------------------------------------------------------------------------------------


def _model_input(ids: torch.Tensor, mask: torch.Tensor, copies: int) -> dict[str, torch.Tensor]:
    return {"input_ids": ids.repeat(copies, 1), "attention_mask": mask.repeat(copies, 1)}


@torch.no_grad()
def _clean_values(model: Any, plan: _Plan, clean: Any, batch: int, seq: int) -> tuple[dict[int, torch.Tensor], Optional[torch.Tensor]]:
    """The clean value of every served layer (and the clean logits when a forward ran)."""
    layers = sorted({i for i, ok in zip(plan.layers, plan.served) if ok})
    name = plan.sweep.value
    if _is_cache(clean):
        values = {}
        for i in layers:
            key = f"{name}.{i}"
            if key not in clean:
                raise UnknownNameError(
                    f"clean: the cache holds no {key!r}; cache it with run_with_cache(prompts, names=[{name!r}]) "
                    "or pass the clean prompts instead"
                )
            value = clean[key]
            if value.shape[0] != batch or value.shape[plan.sweep.seq_axis] != seq:
                raise InputError(
                    f"clean: the cached {key!r} has shape {tuple(value.shape)}, which does not match {batch} corrupted "
                    f"prompts of {seq} tokens"
                )
            values[i] = value
        return values, None
    ids, mask = clean
    accessor = getattr(model, name)
    saved: dict[int, Any] = {}
    with model.trace(_model_input(ids, mask, 1)):
        for i in layers:
            saved[i] = accessor[i].save()
        logits = model.logits.save()
    return {i: v for i, v in saved.items()}, logits


def _selection(shape: torch.Size, sweep: Sweep, patches: list[tuple[int, Optional[int], Optional[int]]], batch: int, device: Any) -> torch.Tensor:
    """Boolean mask broadcastable to a value of ``shape``: True where copy ``j`` takes the clean value
    (``patches[j] = (copy, position or None, head or None)``)."""
    dims = [shape[0]] + [1] * (len(shape) - 1)
    if sweep.by_position:
        dims[sweep.seq_axis] = shape[sweep.seq_axis]
    if sweep.by_head:
        assert sweep.head_axis is not None  # every per-head sweep is declared with its head axis
        dims[sweep.head_axis] = shape[sweep.head_axis]
    select = torch.zeros(dims, dtype=torch.bool)
    for copy, position, head in patches:
        index: list[Any] = [slice(copy * batch, (copy + 1) * batch)] + [slice(None)] * (len(shape) - 1)
        if position is not None:
            index[sweep.seq_axis] = position
        if head is not None:
            assert sweep.head_axis is not None  # only per-head sweeps patch single heads
            index[sweep.head_axis] = head
        select[tuple(index)] = True
    return select.to(device)


@torch.no_grad()
def _run(model: Any, plan: _Plan, ids: torch.Tensor, mask: torch.Tensor, clean_values: dict[int, torch.Tensor],
         metric: Metric, batch_size: int) -> torch.Tensor:
    sweep, batch = plan.sweep, ids.shape[0]
    accessor = getattr(model, sweep.value)
    # Every patch: (result index, layer, position or None, head or None), layer by layer.
    patches: list[tuple[tuple[int, ...], int, Optional[int], Optional[int]]] = []
    # A plan has positions (heads) exactly when its sweep goes by position (head); None: all at once.
    positions: list[Optional[int]] = [None] if plan.positions is None else list(plan.positions)
    heads: list[Optional[int]] = [None] if plan.heads is None else list(plan.heads)
    for li, (layer, ok) in enumerate(zip(plan.layers, plan.served)):
        if not ok:
            continue
        for pi, position in enumerate(positions):
            for hi, head in enumerate(heads):
                if head is not None and head >= plan.head_counts[li]:
                    continue  # this layer has fewer heads: NaN
                index = (li,) + ((pi,) if sweep.by_position else ()) + ((hi,) if sweep.by_head else ())
                patches.append((index, layer, position, head))
    sizes = [len(plan.layers)] + ([len(positions)] if sweep.by_position else []) + ([len(heads)] if sweep.by_head else [])
    result: Optional[torch.Tensor] = None
    for start in range(0, len(patches), batch_size):
        chunk = patches[start : start + batch_size]
        by_layer: dict[int, list[tuple[int, Optional[int], Optional[int]]]] = {}
        for copy, (_, layer, position, head) in enumerate(chunk):
            by_layer.setdefault(layer, []).append((copy, position, head))
        copies = len(chunk)
        with model.trace(_model_input(ids, mask, copies)):
            for layer in sorted(by_layer):
                value = accessor[layer]
                source = clean_values[layer].to(device=value.device, dtype=value.dtype)
                source = source.repeat(copies, *([1] * (source.ndim - 1)))
                select = _selection(value.shape, sweep, by_layer[layer], batch, value.device)
                accessor[layer] = torch.where(select, source, value)
            logits = model.logits.save()
        for copy, (index, _, _, _) in enumerate(chunk):
            out = _metric_value(metric(logits[copy * batch : (copy + 1) * batch]), batch)
            if result is None:
                result = torch.full(sizes + list(out.shape), float("nan"))
            elif tuple(out.shape) != tuple(result.shape[len(sizes):]):
                raise InputError(f"metric(logits) returned shape {tuple(out.shape)} after {tuple(result.shape[len(sizes):])}: it must return one shape")
            result[index] = out
    if result is None:  # no patch at all (cannot happen for a checked plan)
        result = torch.full(sizes, float("nan"))
    return result


def get_act_patch(
    model: Any,
    sweep: str,
    corrupted: Tokens,
    clean: Any,
    metric: Metric,
    *,
    layers: Indices = None,
    positions: Indices = None,
    heads: Indices = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> torch.Tensor:
    """Patch clean values into the corrupted run one at a time and return ``metric`` after each.

    Args:
        model: a :class:`~nnspec.StandardizedTransformer`.
        sweep: a name from :data:`SWEEPS` (``"resid_pre"``, ``"attn_head_out_by_pos"``...; the
            ``get_act_patch_`` prefix may be kept).
        corrupted: the prompts patched into: a string or list of strings that tokenize to one
            length, token ids ``(batch, seq)`` / ``(seq,)``, or an encoding dict with ``input_ids``
            and ``attention_mask`` (already aligned: nothing is padded here).
        clean: the prompts patched from, in the same forms and of the same shape as ``corrupted``
            (row ``b`` of the clean run is patched into row ``b`` of the corrupted run), or an
            :class:`~nnspec.cache.ActivationCache` from ``run_with_cache`` holding the
            patched value for each swept layer.
        metric: ``metric(logits)`` with ``logits`` of shape ``(batch, seq, vocab)`` (the corrupted
            prompts with one patch applied) returning a scalar, or one value per prompt ``(batch,)``.
        layers: the layers to sweep (default: all; negative counts from the end).
        positions: the positions to sweep for ``*_by_pos`` and residual/branch sweeps (default:
            all; negative counts from the end). Columns of the aligned input.
        heads: the heads to sweep for head sweeps (default: all).
        batch_size: patches per forward; a forward runs ``batch_size * batch`` rows.

    Returns:
        float32 on the CPU, axes ``(layers, [positions], [heads])`` in the order given by
        ``layers`` / ``positions`` / ``heads``, plus a last ``(batch,)`` axis when ``metric`` returns
        one value per prompt. NaN where a layer lacks the value (default ``layers`` only) or has
        fewer heads than the widest layer.

    Raises (before any forward): :class:`~nnspec.errors.UnknownNameError` for an unknown sweep,
    :class:`~nnspec.errors.LayerIndexError` / :class:`~nnspec.errors.PositionError` /
    :class:`~nnspec.errors.InputError` for indices out of range, :class:`~nnspec.errors.InputError`
    for inputs that do not align, :class:`~nnspec.errors.CapabilityUnavailableError` where the model
    has no such value. A metric of the wrong shape raises after the clean forward, before the sweep.
    """
    chosen = _sweep(sweep)
    if not hasattr(model, "num_layers") or not hasattr(model, chosen.value):
        raise InputTypeError(f"model: expected a StandardizedTransformer, got {type(model).__name__}")
    if not callable(metric):
        raise InputTypeError(f"metric: expected a callable metric(logits), got {type(metric).__name__}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size: expected a positive number of patches per forward, got {batch_size!r}")
    ids, mask, clean_tokens = _pair(model, corrupted, clean)
    batch, seq = ids.shape
    plan = _plan(model, chosen, seq, layers, positions, heads, explicit=layers is not None)
    values, clean_logits = _clean_values(model, plan, clean if clean_tokens is None else clean_tokens, batch, seq)
    if clean_logits is not None:
        _metric_value(metric(clean_logits), batch, "metric(logits) (called on the clean logits to check it)")
    return _run(model, plan, ids, mask, values, metric, batch_size)


def _doc(name: str) -> str:
    sweep = SWEEPS[name]
    what = "(layer, position" if sweep.by_position else "(layer"
    what += ", head)" if sweep.by_head else ")"
    every = " (every position at once)" if sweep.by_head and not sweep.by_position else ""
    return (
        f"Patch ``{sweep.value}`` from the clean run into the corrupted run, one {what} at a time{every}, and "
        f"return the metric after each patch: shape ``({', '.join(sweep.axes)})`` (plus ``(batch,)`` for a per-prompt "
        "metric), float32 on the CPU. See :func:`get_act_patch` for the arguments."
    )


def _by_position(name: str) -> Callable[..., torch.Tensor]:
    def sweep(model: Any, corrupted: Tokens, clean: Any, metric: Metric, *, layers: Indices = None,
              positions: Indices = None, batch_size: int = DEFAULT_BATCH_SIZE) -> torch.Tensor:
        return get_act_patch(model, name, corrupted, clean, metric, layers=layers, positions=positions, batch_size=batch_size)

    sweep.__name__ = sweep.__qualname__ = f"get_act_patch_{name}"
    sweep.__doc__ = _doc(name)
    return sweep


def _heads_all_positions(name: str) -> Callable[..., torch.Tensor]:
    def sweep(model: Any, corrupted: Tokens, clean: Any, metric: Metric, *, layers: Indices = None,
              heads: Indices = None, batch_size: int = DEFAULT_BATCH_SIZE) -> torch.Tensor:
        return get_act_patch(model, name, corrupted, clean, metric, layers=layers, heads=heads, batch_size=batch_size)

    sweep.__name__ = sweep.__qualname__ = f"get_act_patch_{name}"
    sweep.__doc__ = _doc(name)
    return sweep


def _heads_by_position(name: str) -> Callable[..., torch.Tensor]:
    def sweep(model: Any, corrupted: Tokens, clean: Any, metric: Metric, *, layers: Indices = None,
              positions: Indices = None, heads: Indices = None, batch_size: int = DEFAULT_BATCH_SIZE) -> torch.Tensor:
        return get_act_patch(
            model, name, corrupted, clean, metric, layers=layers, positions=positions, heads=heads, batch_size=batch_size
        )

    sweep.__name__ = sweep.__qualname__ = f"get_act_patch_{name}"
    sweep.__doc__ = _doc(name)
    return sweep


# (model, corrupted, clean, metric, *, layers=None, positions=None, batch_size=16) -> (layers, positions)
get_act_patch_resid_pre = _by_position("resid_pre")
get_act_patch_resid_post = _by_position("resid_post")
get_act_patch_attn_out = _by_position("attn_out")
get_act_patch_mixer_out = _by_position("mixer_out")
get_act_patch_mlp_out = _by_position("mlp_out")
# (model, corrupted, clean, metric, *, layers=None, heads=None, batch_size=16) -> (layers, heads)
get_act_patch_attn_head_out_all_pos = _heads_all_positions("attn_head_out_all_pos")
get_act_patch_attn_head_q_all_pos = _heads_all_positions("attn_head_q_all_pos")
get_act_patch_attn_head_k_all_pos = _heads_all_positions("attn_head_k_all_pos")
get_act_patch_attn_head_v_all_pos = _heads_all_positions("attn_head_v_all_pos")
get_act_patch_attn_head_pattern_all_pos = _heads_all_positions("attn_head_pattern_all_pos")
# (model, corrupted, clean, metric, *, layers=None, positions=None, heads=None, batch_size=16)
#   -> (layers, positions, heads)
get_act_patch_attn_head_out_by_pos = _heads_by_position("attn_head_out_by_pos")
get_act_patch_attn_head_q_by_pos = _heads_by_position("attn_head_q_by_pos")
get_act_patch_attn_head_k_by_pos = _heads_by_position("attn_head_k_by_pos")
get_act_patch_attn_head_v_by_pos = _heads_by_position("attn_head_v_by_pos")
get_act_patch_attn_head_pattern_by_pos = _heads_by_position("attn_head_pattern_by_pos")


def get_act_patch_block_every(
    model: Any, corrupted: Tokens, clean: Any, metric: Metric, *, layers: Indices = None, positions: Indices = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> torch.Tensor:
    """``resid_pre``, ``attn_out`` and ``mlp_out`` sweeps stacked: ``(3, layers, positions)`` (plus
    ``(batch,)`` for a per-prompt metric). See :func:`get_act_patch`."""
    return torch.stack([
        get_act_patch(model, name, corrupted, clean, metric, layers=layers, positions=positions, batch_size=batch_size)
        for name in ("resid_pre", "attn_out", "mlp_out")
    ])


def _heads_every(by_position: bool, model: Any, corrupted: Tokens, clean: Any, metric: Metric, layers: Indices,
                 positions: Indices, heads: Indices, batch_size: int) -> torch.Tensor:
    kinds = ("out", "q", "k", "v", "pattern")
    suffix = "by_pos" if by_position else "all_pos"
    extra = {"positions": positions} if by_position else {}
    results = [
        get_act_patch(model, f"attn_head_{kind}_{suffix}", corrupted, clean, metric, layers=layers, heads=heads,
                      batch_size=batch_size, **extra)
        for kind in kinds
    ]
    # Keys and values have fewer heads than queries under grouped-query attention: NaN beyond them.
    axis = 2 if by_position else 1
    widest = max(r.shape[axis] for r in results)
    padded = []
    for result in results:
        shape = list(result.shape)
        shape[axis] = widest - result.shape[axis]
        padded.append(torch.cat([result, torch.full(shape, float("nan"))], axis))
    return torch.stack(padded)


def get_act_patch_attn_head_all_pos_every(
    model: Any, corrupted: Tokens, clean: Any, metric: Metric, *, layers: Indices = None, heads: Indices = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> torch.Tensor:
    """The per-head output, query, key, value and pattern sweeps over all positions stacked:
    ``(5, layers, heads)`` (plus ``(batch,)`` for a per-prompt metric). Key and value rows are NaN
    beyond the key/value head count on grouped-query models. The pattern sweep needs eager attention
    (``StandardizedTransformer(..., enable_attention_probs=True)``). See :func:`get_act_patch`."""
    return _heads_every(False, model, corrupted, clean, metric, layers, None, heads, batch_size)


def get_act_patch_attn_head_by_pos_every(
    model: Any, corrupted: Tokens, clean: Any, metric: Metric, *, layers: Indices = None, positions: Indices = None,
    heads: Indices = None, batch_size: int = DEFAULT_BATCH_SIZE,
) -> torch.Tensor:
    """As :func:`get_act_patch_attn_head_all_pos_every`, one position at a time:
    ``(5, layers, positions, heads)``."""
    return _heads_every(True, model, corrupted, clean, metric, layers, positions, heads, batch_size)


__all__ = [
    "NOT_OFFERED",
    "SWEEPS",
    "Sweep",
    "get_act_patch",
    "get_act_patch_attn_head_all_pos_every",
    "get_act_patch_attn_head_by_pos_every",
    "get_act_patch_attn_head_k_all_pos",
    "get_act_patch_attn_head_k_by_pos",
    "get_act_patch_attn_head_out_all_pos",
    "get_act_patch_attn_head_out_by_pos",
    "get_act_patch_attn_head_pattern_all_pos",
    "get_act_patch_attn_head_pattern_by_pos",
    "get_act_patch_attn_head_q_all_pos",
    "get_act_patch_attn_head_q_by_pos",
    "get_act_patch_attn_head_v_all_pos",
    "get_act_patch_attn_head_v_by_pos",
    "get_act_patch_attn_out",
    "get_act_patch_block_every",
    "get_act_patch_mixer_out",
    "get_act_patch_mlp_out",
    "get_act_patch_resid_post",
    "get_act_patch_resid_pre",
]
