"""A standard activation cache: every requested value under its standard name, in one forward.

Keys are ``"{name}.{layer}"`` for per-layer values (``"layers_output.3"``) and the bare name for
model-level ones (``"token_embeddings"``, ``"logits"``). Values are plain tensors (never the
tuples modules return), read through the same ports as the accessors, so they mean the same.

The cache also answers to TransformerLens's keys where they mean the same value
(``cache["blocks.3.hook_resid_pre"]``, ``cache["resid_pre", 3]``; see :mod:`.hooknames`) and has
TransformerLens's residual-stream helpers over the standard names (:meth:`ActivationCache.stack_head_results`,
:meth:`~ActivationCache.apply_ln_to_stack`, :meth:`~ActivationCache.logit_attrs`, ...).

Both ways of taking the result work: ``cache = model.run_with_cache(prompts)`` gives the cache,
and ``logits, cache = model.run_with_cache(prompts)`` (TransformerLens's form) unpacks it as the
logits and the cache. Iterating a cache any other way (``for key in cache``, ``list(cache)``) goes
over its keys, as for a dict.
"""

from __future__ import annotations

import dis
import sys
from typing import Any, Callable, Optional, Sequence, Union

import nnsight
import torch

from . import hooknames
from .errors import (
    CapabilityUnavailableError,
    InputError,
    InputTypeError,
    LayerIndexError,
    ShapeMismatchError,
    UnknownNameError,
    did_you_mean,
)
from .runtime.arguments import Layers, as_layers, as_prompts
from .runtime.names import ATTENTION_INTERNALS, CACHED_BY_DEFAULT, CACHED_LAYER_VALUES, CACHED_MODEL_VALUES, LAYER_ORDER
from .runtime.names import DERIVED_VALUES as DERIVED_VALUES
from .runtime.stopping import free_stopped_forward

#: Per-layer values the cache collects, in the documented read order (the standard-name table's).
LAYER_VALUES = CACHED_LAYER_VALUES
MODEL_VALUES = CACHED_MODEL_VALUES
# DERIVED_VALUES: computed from others: ``resid_mid`` is the residual stream after the token
# mixer, ``layers_input + attentions_output`` (``mixers_output`` where the mixer is not attention).
#: What ``run_with_cache`` collects when no names are given, on the layers that have each value
#: (``mixers_*`` only where the token mixer is not attention: on attention layers they equal
#: ``attentions_*``).
DEFAULT_NAMES = CACHED_BY_DEFAULT
#: Values computed on lookup from what the cache holds (the TransformerLens aliases that name them).
_ON_LOOKUP = ("head_results", "ln_final_scale", "ln_final_normalized")
_UNSET: Any = object()
_UNPACK = dis.opmap.get("UNPACK_SEQUENCE")
_UNPACK_EX = dis.opmap.get("UNPACK_EX")
SliceLike = Union[int, tuple, list, slice, torch.Tensor, None]


def _unpacking(frame: Any) -> Optional[int]:
    """How many names the statement running in ``frame`` unpacks into (``a, b = x``: 2), or None
    where it is not unpacking (a loop, ``list(x)``...). CPython only; elsewhere always None."""
    try:
        code = frame.f_code.co_code
        op = code[frame.f_lasti]
    except (AttributeError, IndexError):
        return None
    if op == _UNPACK:
        return code[frame.f_lasti + 1]
    if op == _UNPACK_EX:
        return -1
    return None


def _slice(tensor: torch.Tensor, index: SliceLike, dim: int, label: str) -> torch.Tensor:
    """TransformerLens's slice forms along ``dim``: an int (the dim is dropped), a tuple (the
    arguments of ``slice``), a list or tensor of indices, a slice, or None (everything)."""
    if index is None:
        return tensor
    if isinstance(index, bool):
        raise InputTypeError(f"{label}: expected an int, a tuple, a list, a slice or a tensor of indices, got {index!r}")
    if isinstance(index, tuple):
        index = slice(*index)
    elif isinstance(index, list):
        index = torch.tensor(index, dtype=torch.long)
    elif isinstance(index, torch.Tensor) and index.dtype.is_floating_point:
        raise InputTypeError(f"{label}: indices must be integers, got a {index.dtype} tensor")
    elif not isinstance(index, (int, slice, torch.Tensor)):
        raise InputTypeError(f"{label}: expected an int, a tuple, a list, a slice or a tensor of indices, got {index!r}")
    where: list[Any] = [slice(None)] * tensor.ndim
    where[dim] = index
    try:
        return tensor[tuple(where)]
    except IndexError as error:
        raise InputError(f"{label}={index!r} does not fit dimension {dim} of size {tensor.shape[dim]}: {error}") from None


class ActivationCache(dict):
    """``{standard key: tensor}`` with helpers that stack layers and decompose the residual stream.

    ``logits`` holds the model's logits ``(batch, seq, vocab)`` when the forward computed them
    (None otherwise); ``model`` is the model the values came from (the helpers that apply its final
    norm, projections or unembedding need it)."""

    def __init__(self, data: dict[str, torch.Tensor], layers: list[int], num_layers: int, model: Any = None,
                 logits: Optional[torch.Tensor] = None, no_logits: Optional[str] = None) -> None:
        super().__init__(data)
        self.layers = layers
        self.num_layers = num_layers
        self.model = model
        self.logits = logits
        self.has_batch_dim = True
        # Why unpacking gives no logits: None when it gives them, "" when None was asked for.
        self._no_logits = no_logits

    # -- keys -------------------------------------------------------------------------------------

    def __iter__(self) -> Any:
        count = _unpacking(sys._getframe(1)) if hasattr(sys, "_getframe") else None
        if count is None:
            return super().__iter__()
        if count != 2:
            raise InputError(
                "an ActivationCache unpacks as `logits, cache = model.run_with_cache(...)` (two names); iterate "
                "over cache.keys() / cache.items() for its entries"
            )
        if self._no_logits:
            raise InputError(f"`logits, cache = model.run_with_cache(...)`: this forward computed no logits ({self._no_logits})")
        return iter((self.logits, self))

    def _standard(self) -> list[str]:
        return list(LAYER_VALUES + MODEL_VALUES + DERIVED_VALUES)

    def _layer(self, key: Any, layer: Any) -> int:
        if isinstance(layer, bool) or not isinstance(layer, int):
            raise UnknownNameError(
                f"cache[{key!r}]: a tuple key is (name, layer) with an integer layer, e.g. cache['layers_output', 3] "
                "or cache['resid_pre', 3]"
            )
        if not -self.num_layers <= layer < self.num_layers:
            raise LayerIndexError(
                f"cache[{key!r}]: layer {layer} is out of range for a model with {self.num_layers} layers "
                f"(valid: 0..{self.num_layers - 1}, or -{self.num_layers}..-1 from the end)"
            )
        return layer % self.num_layers

    def _locate(self, key: Any) -> hooknames.Alias:
        """The stored (or derived) key ``key`` names, with the layout to apply."""
        if isinstance(key, tuple):
            if len(key) == 1 and isinstance(key[0], str) and key[0] in hooknames.SHORT_NAMES:
                return hooknames.short_name(key[0], None, self.num_layers, self._standard())
            if len(key) == 3 and isinstance(key[0], str):
                raise UnknownNameError(
                    f"cache[{key!r}]: three-part keys name TransformerLens's per-block norm values, which nnspec does not "
                    "provide; a tuple key is (name, layer), e.g. cache['resid_pre', 3]"
                )
            if len(key) != 2 or not isinstance(key[0], str):
                raise UnknownNameError(f"cache[{key!r}]: a tuple key is (name, layer), e.g. cache['layers_output', 3]")
            name, layer = key[0], self._layer(key, key[1])
            if name in hooknames.SHORT_NAMES:
                return hooknames.short_name(name, layer, self.num_layers, self._standard())
            if name in LAYER_VALUES or name in DERIVED_VALUES:
                return hooknames.Alias(f"{name}.{layer}", name, layer)
            raise UnknownNameError(
                f"cache[{key!r}]: " + hooknames.unknown_message(name, self.num_layers, self._standard())
            )
        if not isinstance(key, str):
            raise UnknownNameError(f"cache[{key!r}]: keys are strings like 'layers_output.3' (or tuples like ('layers_output', 3))")
        if dict.__contains__(self, key):
            name, _, suffix = key.partition(".")
            return hooknames.Alias(key, name, int(suffix) if suffix.isdigit() else None)
        if hooknames.is_hook_name(key):
            return hooknames.resolve(key, self.num_layers, self._standard())
        name, _, suffix = key.partition(".")
        if name in DERIVED_VALUES and suffix.isdigit():
            return hooknames.Alias(key, name, int(suffix))
        if key in hooknames.SHORT_NAMES:
            return hooknames.short_name(key, None, self.num_layers, self._standard())
        raise UnknownNameError(f"{key!r} is not in this cache{did_you_mean(key, self.keys())}")

    def __getitem__(self, key: Union[str, tuple]) -> torch.Tensor:
        """``cache["layers_output.3"]``, ``cache["layers_output", 3]``, or TransformerLens's
        ``cache["blocks.3.hook_resid_post"]`` / ``cache["resid_post", 3]`` (see :mod:`.hooknames`)."""
        alias = self._locate(key)
        value = self._value(alias, key)
        if alias.layout == "heads_second":
            value = value.transpose(1, 2) if self.has_batch_dim else value.transpose(0, 1)
        return value

    def _value(self, alias: hooknames.Alias, asked: Any) -> torch.Tensor:
        if dict.__contains__(self, alias.key):
            return dict.__getitem__(self, alias.key)
        if alias.name == "resid_mid" and alias.layer is not None:
            return self._resid_mid(alias.layer, asked)
        if alias.name == "head_results" and alias.layer is not None:
            return self._layer_head_results(self._model("stack_head_results"), alias.layer)
        if alias.name in ("ln_final_scale", "ln_final_normalized"):
            final = self._need(f"layers_output.{self.num_layers - 1}", f"cache[{asked!r}]")
            norm = self._final_norm(f"cache[{asked!r}]")
            if norm is None:
                raise CapabilityUnavailableError(f"cache[{asked!r}]: this model applies no final norm")
            return norm.scale if alias.name == "ln_final_scale" else norm.normalize(final)
        raise UnknownNameError(f"{asked!r} ({alias.key!r}) is not in this cache{did_you_mean(alias.key, self.keys())}")

    def __contains__(self, key: Any) -> bool:
        if dict.__contains__(self, key):
            return True
        try:
            alias = self._locate(key)
        except (KeyError, LookupError, CapabilityUnavailableError, InputError):
            return False
        return dict.__contains__(self, alias.key)

    def get(self, key: Any, default: Any = None) -> Any:
        """``cache[key]`` where the cache holds it, else ``default``."""
        return self[key] if key in self else default

    def _need(self, key: str, what: str) -> torch.Tensor:
        if not dict.__contains__(self, key):
            name = key.split(".")[0]
            raise InputError(f"{what} needs {key!r} in the cache: run_with_cache(..., names=[{name!r}, ...]) on that layer")
        return dict.__getitem__(self, key)

    def _model(self, what: str) -> Any:
        if self.model is None:
            raise InputError(f"{what} needs the model: this cache was built without one")
        return self.model

    def _resid_mid(self, layer: int, asked: Any) -> torch.Tensor:
        model = self._model(f"cache[{asked!r}]")
        reason = resid_mid_refusal(model)
        if reason:
            raise CapabilityUnavailableError(f"resid_mid is not available for this model: {reason}")
        x = self._need(f"layers_input.{layer}", f"cache[{asked!r}]")
        mixer = _mixer_name(model, layer)
        return x if mixer is None else x + self._need(f"{mixer}.{layer}", f"cache[{asked!r}]")

    # -- stacks -----------------------------------------------------------------------------------

    def stack(self, name: str) -> torch.Tensor:
        """``name`` of every cached layer stacked first: ``(layers, batch, ...)``."""
        return torch.stack([self[f"{name}.{layer}"] for layer in self.layers], 0)

    def stack_activation(self, activation_name: str, layer: int = -1, sublayer_type: Optional[str] = None) -> torch.Tensor:
        """``activation_name`` (a standard name like ``"layers_output"`` or a TransformerLens short name
        like ``"resid_post"``) of layers ``0..layer-1`` (``layer=-1``: every layer) stacked first:
        ``(layers, batch, ...)``."""
        if sublayer_type is not None:
            raise InputError("stack_activation(sublayer_type=...): per-block norm values are not provided by nnspec")
        if not isinstance(activation_name, str):
            raise InputTypeError(f"stack_activation(activation_name=...): expected a name, got {activation_name!r}")
        if isinstance(layer, bool) or not isinstance(layer, int) or not (layer == -1 or 0 < layer <= self.num_layers):
            raise LayerIndexError(f"stack_activation(layer={layer!r}): expected -1 (every layer) or 1..{self.num_layers}")
        stop = self.num_layers if layer == -1 else layer
        valid = set(LAYER_VALUES) | set(DERIVED_VALUES) | set(hooknames.SHORT_NAMES)
        if activation_name not in valid:
            raise UnknownNameError(
                f"stack_activation: {hooknames.unknown_message(activation_name, self.num_layers, self._standard())}"
            )
        return torch.stack([self[activation_name, i] for i in range(stop)], 0)

    def accumulated_resid(
        self, layer: Optional[int] = None, incl_mid: bool = False, apply_ln: bool = False,
        pos_slice: SliceLike = None, mlp_input: bool = False, return_labels: bool = False,
    ) -> Union[torch.Tensor, tuple[torch.Tensor, list[str]]]:
        """The residual stream entering each block and leaving the last: ``(num_layers + 1, batch,
        seq, hidden)`` (``layer=k``: entering blocks ``0..k``, ``k + 1`` entries). ``incl_mid`` adds
        ``resid_mid`` after each block's input (``mlp_input``: block ``k``'s too); ``apply_ln``
        puts each through :meth:`apply_ln_to_stack`; labels ``"0_pre"``, ``"0_mid"``, ``"final_post"``."""
        stop = self._stop_layer(layer, "accumulated_resid")
        self._need_layers(range(min(stop + (1 if mlp_input or incl_mid else 0), self.num_layers)), "accumulated_resid")
        parts, labels = [], []
        for i in range(stop + 1):
            if i == self.num_layers:
                parts.append(self._need(f"layers_output.{i - 1}", "accumulated_resid"))
                labels.append("final_post")
                continue
            parts.append(self._resid_pre(i, "accumulated_resid"))
            labels.append(f"{i}_pre")
            if (incl_mid and i < stop) or (mlp_input and i == stop):
                parts.append(self._resid_mid(i, "accumulated_resid"))
                labels.append(f"{i}_mid")
        stack = _slice(torch.stack(parts, 0), pos_slice, -2, "accumulated_resid(pos_slice=...)")
        if apply_ln:
            stack = self.apply_ln_to_stack(stack, None if stop == self.num_layers else stop, mlp_input, pos_slice)
        return (stack, labels) if return_labels else stack

    def _resid_pre(self, i: int, what: str) -> torch.Tensor:
        if dict.__contains__(self, f"layers_input.{i}"):
            return dict.__getitem__(self, f"layers_input.{i}")
        if i > 0 and dict.__contains__(self, f"layers_output.{i - 1}"):
            return dict.__getitem__(self, f"layers_output.{i - 1}")
        return self._need(f"layers_input.{i}", what)

    def _stop_layer(self, layer: Optional[int], what: str) -> int:
        """TransformerLens's ``layer`` argument: the block whose input ends the stream (None or -1: the end)."""
        if layer is None or layer == -1:
            return self.num_layers
        if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer <= self.num_layers:
            raise LayerIndexError(f"{what}(layer={layer!r}): expected None, -1 or 0..{self.num_layers}")
        return layer

    def decompose_resid(
        self, layer: Optional[int] = None, mlp_input: bool = False, mode: str = "all", apply_ln: bool = False,
        pos_slice: SliceLike = None, incl_embeds: bool = True, return_labels: Optional[bool] = None,
        per_head: bool = False,
    ) -> Union[torch.Tensor, tuple[torch.Tensor, list[str]]]:
        """The residual stream as a sum of parts: ``(parts, batch, seq, hidden)`` (the embedding,
        then each layer's token-mixer and MLP contributions, those it has: ``1 + 2 * num_layers``
        parts on a transformer) and their labels (``"embed"``, ``"attention.3"``, ``"mixer.3"`` where
        the mixer is not attention, ``"mlp.3"``). The parts sum to ``layers_output[num_layers - 1]``;
        with ``layer=k``, to the stream entering block ``k`` (``mlp_input``: plus block ``k``'s
        attention). ``mode``: ``"all"``, ``"attn"`` or ``"mlp"`` keeps those branches; ``per_head``
        splits attention parts per head (``"L3H0"``, plus ``"attention_bias.3"``); ``apply_ln``
        puts them through :meth:`apply_ln_to_stack`. Returns ``(parts, labels)`` unless
        ``return_labels=False``."""
        if mode not in ("all", "attn", "mlp"):
            raise InputError(f"decompose_resid(mode={mode!r}): expected 'all', 'attn' or 'mlp'")
        stop = self._stop_layer(layer, "decompose_resid")
        model = self.model
        if model is not None and model.spec.limits.contribution:
            raise CapabilityUnavailableError(
                f"decompose_resid is not available for this model: {model.spec.limits.contribution}"
            )
        self._need_layers(range(min(stop + (1 if mlp_input else 0), self.num_layers)), "decompose_resid")
        parts, labels = [], []
        if incl_embeds:
            parts.append(self._need("layers_input.0", "decompose_resid"))
            labels.append("embed")
        for i in range(min(stop + (1 if mlp_input else 0), self.num_layers)):
            branches = (("attentions_output", "attention"), ("mixers_output", "mixer"), ("mlps_output", "mlp"))
            for name, label in branches:
                if i == stop and label == "mlp":
                    continue  # mlp_input: the MLP of block `stop` reads the stream before its own output
                key = f"{name}.{i}"
                if not dict.__contains__(self, key) or (label == "mixer" and dict.__contains__(self, f"attentions_output.{i}")):
                    continue
                if (mode == "attn" and label == "mlp") or (mode == "mlp" and label != "mlp"):
                    continue
                if per_head and label == "attention" and dict.__contains__(self, f"attention_heads_output.{i}"):
                    from .attribution import residual_head_results

                    heads, bias = residual_head_results(
                        self._model("decompose_resid(per_head=True)"), i,
                        self._batched(dict.__getitem__(self, f"attention_heads_output.{i}")),
                        self._batched(dict.__getitem__(self, key)),
                    )
                    heads, bias = self._unbatched(heads), bias
                    parts += list(heads.movedim(-2, 0))
                    labels += [f"L{i}H{h}" for h in range(heads.shape[-2])]
                    parts.append(bias.expand_as(dict.__getitem__(self, key)).to(dict.__getitem__(self, key).dtype))
                    labels.append(f"attention_bias.{i}")
                    continue
                parts.append(dict.__getitem__(self, key))
                labels.append(f"{label}.{i}")
        if not parts:
            raise InputError("decompose_resid: nothing to decompose with these arguments")
        stack = _slice(torch.stack([p.to(parts[0].device) for p in parts], 0), pos_slice, -2, "decompose_resid(pos_slice=...)")
        if apply_ln:
            stack = self.apply_ln_to_stack(stack, None if stop == self.num_layers else stop, mlp_input, pos_slice)
        return stack if return_labels is False else (stack, labels)

    def get_full_resid_decomposition(
        self, layer: Optional[int] = None, mlp_input: bool = False, expand_neurons: bool = False, apply_ln: bool = False,
        pos_slice: SliceLike = None, return_labels: bool = False,
    ) -> Union[torch.Tensor, tuple[torch.Tensor, list[str]]]:
        """:meth:`decompose_resid` with every attention layer split per head where it splits
        (``"L3H0"``..., ``"attention_bias.3"``): ``(parts, batch, seq, hidden)``, summing to the
        residual stream. MLP neurons are not standard values (``expand_neurons=True`` is refused)."""
        if expand_neurons:
            raise CapabilityUnavailableError(
                "get_full_resid_decomposition(expand_neurons=True): MLP neurons are not standard values (the specs name "
                "the MLP module, not its activation); pass expand_neurons=False for whole-MLP parts"
            )
        return self.decompose_resid(layer, mlp_input, "all", apply_ln, pos_slice, True, return_labels, per_head=True)

    def _layer_head_results(self, model: Any, i: int) -> torch.Tensor:
        """Layer ``i``'s per-head results, ``(batch, seq, heads, hidden)`` (no batch axis if the cache has none)."""
        from .attribution import head_results

        heads = self._need(f"attention_heads_output.{i}", "stack_head_results")
        results, _ = head_results(model, i, self._batched(heads))
        return self._unbatched(results)

    def stack_head_results(
        self, layer: int = -1, return_labels: bool = False, incl_remainder: bool = False,
        pos_slice: SliceLike = None, apply_ln: bool = False, layers: Optional[list[int]] = None,
    ) -> Union[torch.Tensor, tuple[torch.Tensor, list[str]]]:
        """Each head's result: ``attention_heads_output[i]`` through the attention's output projection
        (the spec's ``attention.output_projection``) one head at a time, the projection's bias left
        out, for layers ``0..layer-1`` (``layer=-1``: every layer): ``(layers * heads, batch, seq,
        hidden)``, labels ``"L0H0"``... Per layer, the results summed over heads plus the bias are
        the projection's output (on models where a norm follows the projection, as Gemma 2's does,
        that is not the attention's contribution to the residual stream). ``incl_remainder`` adds
        the rest of the stream entering block ``layer`` (``"remainder"``)."""
        model = self._model("stack_head_results")
        if layers is None:
            if isinstance(layer, bool) or not isinstance(layer, int) or not (layer == -1 or 0 < layer <= self.num_layers):
                raise LayerIndexError(f"stack_head_results(layer={layer!r}): expected -1 (every layer) or 1..{self.num_layers}")
            layers = [i for i in range(self.num_layers if layer == -1 else layer)
                      if value_served(model, "attention_heads_output", i)]
        parts, labels = [], []
        for i in layers:
            results = self._layer_head_results(model, i)
            parts += list(results.movedim(-2, 0))
            labels += [f"L{i}H{h}" for h in range(results.shape[-2])]
        if not parts:
            raise CapabilityUnavailableError("stack_head_results: no layer of this model has per-head attention outputs")
        stack = torch.stack(parts, 0)
        if incl_remainder:
            stop = self.num_layers if layer == -1 else layer
            total = self._need(f"layers_output.{stop - 1}", "stack_head_results(incl_remainder=True)")
            stack = torch.cat([stack, (total - stack.sum(0)).unsqueeze(0)], 0)
            labels.append("remainder")
        stack = _slice(stack, pos_slice, -2, "stack_head_results(pos_slice=...)")
        if apply_ln:
            stack = self.apply_ln_to_stack(stack, None if layer == -1 else layer, False, pos_slice)
        return (stack, labels) if return_labels else stack

    # -- norms and logits -------------------------------------------------------------------------

    def _batched(self, value: torch.Tensor) -> torch.Tensor:
        return value if self.has_batch_dim else value.unsqueeze(0)

    def _unbatched(self, value: torch.Tensor) -> torch.Tensor:
        return value if self.has_batch_dim else value.squeeze(0)

    def _final_norm(self, what: str) -> Any:
        from .attribution import final_norm_module, frozen_norm

        model = self._model(what)
        reason = model.spec.limits.project_on_vocab
        if reason:
            raise CapabilityUnavailableError(f"{what}: the final norm does not read the last block's output on this model: {reason}")
        module = final_norm_module(model)
        if module is None:
            return None
        final = self._need(f"layers_output.{self.num_layers - 1}", what)
        return frozen_norm(module, self._batched(final), "the final norm")

    def _input_norm(self, layer: int, mlp_input: bool, what: str) -> Any:
        """Block ``layer``'s norm in front of its attention (``mlp_input``: its MLP), frozen at the
        stream it reads. The specs name the branch, not its norm: the norm is the block's module
        that turns the cached stream into the cached branch input."""
        from .attribution import frozen_norm

        model = self._model(what)
        if mlp_input:
            stream = self._resid_mid(layer, what) if model.spec.residual.kind == "sequential" else self._need(
                f"layers_input.{layer}", what)
            target = self._need(f"mlps_input.{layer}", what)
        else:
            stream = self._need(f"layers_input.{layer}", what)
            target = self._need(f"{'attentions' if model.attentions_input.serves(layer) else 'mixers'}_input.{layer}", what)
        stream, target = self._batched(stream), self._batched(target)
        block = model._module.get_submodule(model.spec.modules.layers)[layer]
        weight = next(block.parameters())
        x = stream.to(device=weight.device, dtype=weight.dtype)
        for name, module in block.named_modules():
            if not name or next(module.children(), None) is not None:
                continue
            try:
                with torch.no_grad():
                    out = module(x)
            except Exception:  # noqa: BLE001 - a module that does not take one residual tensor is not the norm
                continue
            if isinstance(out, torch.Tensor) and out.shape == target.shape and torch.allclose(
                out.float(), target.float().to(out.device), rtol=1e-4, atol=1e-5
            ):
                return frozen_norm(module, x, f"block {layer}'s norm in front of its {'MLP' if mlp_input else 'attention'}")
        raise CapabilityUnavailableError(
            f"{what}: no module of block {layer} turns its residual stream into the {'MLP' if mlp_input else 'attention'} "
            "input on its own (the norm is not a module there, or the branch reads something else), so there is no norm "
            "scale to apply"
        )

    def apply_ln_to_stack(
        self, residual_stack: torch.Tensor, layer: Optional[int] = None, mlp_input: bool = False,
        pos_slice: SliceLike = None, batch_slice: SliceLike = None, has_batch_dim: bool = True,
    ) -> torch.Tensor:
        """Each part of ``residual_stack`` ``(parts, batch, seq, hidden)`` through a norm with its
        scale frozen at the cached stream: ``weight * P(part) / scale`` (``P`` centres for a LayerNorm,
        not for an RMSNorm; the norm's kind is read off the module), so that parts summing to the
        stream give shares summing to the norm's output minus its bias. The norm is the final one
        (``layer=None`` or ``num_layers``), or block ``layer``'s in front of its attention
        (``mlp_input``: its MLP). TransformerLens folds the weight into the next matrices; nnspec
        keeps the model's weights, so the weight is applied here. ``pos_slice`` / ``batch_slice``:
        how the stack was sliced from the cached positions / prompts; ``has_batch_dim=False``: the
        stack has no batch dimension (one prompt)."""
        if not isinstance(residual_stack, torch.Tensor):
            raise InputTypeError(f"apply_ln_to_stack(residual_stack=...): expected a tensor, got {type(residual_stack).__name__}")
        if layer is None or layer == self.num_layers or layer == -1:
            norm = self._final_norm("apply_ln_to_stack")
            if norm is None:
                return residual_stack  # the model applies no final norm
        else:
            if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < self.num_layers:
                raise LayerIndexError(f"apply_ln_to_stack(layer={layer!r}): expected None or 0..{self.num_layers}")
            norm = self._input_norm(layer, mlp_input, "apply_ln_to_stack")
        scale = _slice(_slice(norm.scale, batch_slice, 0, "apply_ln_to_stack(batch_slice=...)"), pos_slice, -2,
                       "apply_ln_to_stack(pos_slice=...)")
        if not has_batch_dim or not self.has_batch_dim:
            if scale.ndim >= 3:
                if scale.shape[0] != 1:
                    raise ShapeMismatchError(
                        f"apply_ln_to_stack(has_batch_dim=False): the cache holds {scale.shape[0]} prompts; slice one "
                        "with batch_slice"
                    )
                scale = scale[0]
        if residual_stack.shape[-1] != norm.weight.shape[-1]:
            raise ShapeMismatchError(
                f"apply_ln_to_stack: residual_stack ends in {residual_stack.shape[-1]}, the residual stream in "
                f"{norm.weight.shape[-1]}"
            )
        frozen = type(norm)(norm.centered, norm.weight.to(residual_stack.device), norm.bias, scale.to(residual_stack.device))
        try:
            return frozen.apply(residual_stack)
        except RuntimeError as error:
            raise ShapeMismatchError(
                f"apply_ln_to_stack: residual_stack {tuple(residual_stack.shape)} does not line up with the cached "
                f"scale {tuple(scale.shape)}; pass the pos_slice / batch_slice the stack was taken with ({error})"
            ) from None

    def logit_attrs(
        self, residual_stack: torch.Tensor, tokens: Any, incorrect_tokens: Any = None,
        pos_slice: SliceLike = None, batch_slice: SliceLike = None, has_batch_dim: bool = True,
    ) -> torch.Tensor:
        """Each part's logit for ``tokens`` (minus ``incorrect_tokens``): ``residual_stack`` ``(parts,
        *dims, hidden)``, usually from :meth:`apply_ln_to_stack`, against the logit direction of
        each token (:func:`~nnspec.attribution.logit_directions`; ``tokens`` an id, a
        single-token string, or a tensor shaped like ``dims``) -> ``(parts, *dims)``. ``pos_slice`` /
        ``batch_slice`` slice ``tokens`` given per position / prompt the way the stack was sliced.
        Refused where the model's final transform is not linear (softcapping)."""
        from .attribution import logit_directions, token_ids

        model = self._model("logit_attrs")
        if not isinstance(residual_stack, torch.Tensor):
            raise InputTypeError(f"logit_attrs(residual_stack=...): expected a tensor, got {type(residual_stack).__name__}")

        def direction(given: Any, label: str) -> torch.Tensor:
            ids = token_ids(model, given, label)
            if ids.ndim:
                ids = _slice(ids, batch_slice, 0, "logit_attrs(batch_slice=...)") if has_batch_dim else ids
                if ids.ndim > 1:
                    ids = _slice(ids, pos_slice, 1, "logit_attrs(pos_slice=...)")
            return logit_directions(model, ids)

        directions = direction(tokens, "tokens")
        if incorrect_tokens is not None:
            directions = directions - direction(incorrect_tokens, "incorrect_tokens")
        try:
            return (residual_stack * directions.to(residual_stack.device, residual_stack.dtype)).sum(-1)
        except RuntimeError:
            raise ShapeMismatchError(
                f"logit_attrs: residual_stack {tuple(residual_stack.shape)} and tokens {tuple(directions.shape[:-1])} do not "
                "line up: give one token, or tokens shaped like the stack's dimensions between parts and hidden"
            ) from None

    # -- moving -----------------------------------------------------------------------------------

    def remove_batch_dim(self) -> "ActivationCache":
        """Drop the batch dimension of every value (a cache of one prompt), in place; returns the cache."""
        if not self.has_batch_dim:
            return self
        sizes = {value.shape[0] for value in dict.values(self)}
        if self.logits is not None:
            sizes.add(self.logits.shape[0])
        if sizes - {1}:
            raise ShapeMismatchError(f"remove_batch_dim: the cache holds {max(sizes)} prompts; it works on one")
        for key, value in list(dict.items(self)):
            dict.__setitem__(self, key, value[0])
        if self.logits is not None:
            self.logits = self.logits[0]
        self.has_batch_dim = False
        return self

    def to(self, device: Union[str, torch.device]) -> "ActivationCache":
        """Move every value (and the logits) to ``device``, in place; returns the cache."""
        for key, value in list(dict.items(self)):
            dict.__setitem__(self, key, value.to(device))
        if self.logits is not None:
            self.logits = self.logits.to(device)
        return self

    def _need_all_layers(self, what: str) -> None:
        if self.layers != list(range(self.num_layers)):
            raise InputError(f"{what} needs every layer in the cache; this one holds layers {self.layers}")

    def _need_layers(self, layers: Any, what: str) -> None:
        missing = [i for i in layers if i not in self.layers]
        if missing:
            raise InputError(f"{what} needs every layer in the cache; this one holds layers {self.layers}")


def _mixer_name(model: Any, layer: int) -> Optional[str]:
    """The accessor of layer ``layer``'s token-mixer contribution (None: no mixer)."""
    if model.attentions_output.serves(layer):
        return "attentions_output"
    return "mixers_output" if model.mixers_output.serves(layer) else None


def resid_mid_refusal(model: Any) -> Optional[str]:
    """Why ``resid_mid`` (the stream between a block's token mixer and its MLP) does not exist here."""
    if model.spec.limits.contribution:
        return model.spec.limits.contribution
    kind = model.spec.residual.kind
    if kind != "sequential":
        return f"the blocks are {kind.replace('_', '-')} (the MLP does not read the stream after the token mixer)"
    return None


def check_names(model: Any, names: Sequence[str]) -> list[str]:
    """``names`` checked against the cacheable standard names (an unknown one raises, naming the closest)."""
    valid = LAYER_VALUES + MODEL_VALUES
    for name in names:
        if name not in valid:
            base = name.split(".")[0]
            hint = f" (give {base!r} and choose layers with layers=)" if base in valid else did_you_mean(name, valid)
            raise UnknownNameError(f"{name!r} is not a cacheable value{hint}; names: {', '.join(valid)}")
    return list(names)


def served(model: Any, names: Sequence[str], layers: Sequence[int], strict: bool) -> list[tuple[str, int]]:
    """``(name, layer)`` pairs to read, layer by layer in the documented order. ``strict``: a name
    the model does not serve on a chosen layer raises its reason before anything runs; otherwise
    (default names) such pairs are left out, and ``mixers_*`` are kept only where the mixer is not
    attention (elsewhere they repeat ``attentions_*``)."""
    pairs = []
    for layer in layers:
        for name in names:
            accessor = getattr(model, name)
            if not accessor.serves(layer):
                if strict:
                    accessor[layer]  # raises CapabilityUnavailableError with the reason
                continue
            if not strict and name.startswith("mixers_") and model.attentions_output.serves(layer):
                continue
            pairs.append((name, layer))
    return pairs


def plan(model: Any, names: Sequence[str]) -> list[str]:
    """Per-layer names in the documented read order (the runtime fetches early what a model
    computes out of that order)."""
    return [n for n in LAYER_ORDER if n in names]


# -- choosing what to read ------------------------------------------------------------------------------


class _Selection:
    """What one ``run_with_cache`` reads: per-layer pairs, model-level names, derived values."""

    def __init__(self) -> None:
        self.pairs: set[tuple[str, int]] = set()
        self.model: set[str] = set()
        self.mids: set[int] = set()

    def add(self, model: Any, name: str, layer: Optional[int], strict: bool, label: str) -> None:
        if layer is None:
            if name in MODEL_VALUES:
                self.model.add(name)
            elif name == "ln_final_scale" or name == "ln_final_normalized":
                self.add(model, "layers_output", model.num_layers - 1, strict, label)
            return
        if name == "resid_mid":
            reason = resid_mid_refusal(model)
            if reason:
                if strict:
                    raise CapabilityUnavailableError(f"{label}: resid_mid is not available for this model: {reason}")
                return
            self.mids.add(layer)
            return
        if name == "head_results":
            name = "attention_heads_output"
        accessor = getattr(model, name)
        if not value_served(model, name, layer):
            if strict:
                accessor[layer]  # raises CapabilityUnavailableError with the reason
                raise CapabilityUnavailableError(
                    f"{label}: {name}[{layer}] is not available: layer {layer}'s token mixer is "
                    f"{model.mixer_kind(layer)!r}, not softmax attention"
                )
            return
        self.pairs.add((name, layer))


def value_served(model: Any, name: str, layer: int) -> bool:
    """Whether the model serves standard value ``name`` on ``layer`` (attention internals: on
    softmax-attention layers only)."""
    accessor = getattr(model, name)
    if not accessor.serves(layer):
        return False
    if name in ATTENTION_INTERNALS:
        return model.branch("attention", layer).kind == "softmax" and accessor.port(layer).available()
    return True


def _select(model: Any, names: Optional[Sequence[str]], names_filter: Any, layers: list[int]) -> tuple[_Selection, bool]:
    """The selection for ``names`` or ``names_filter`` and whether it asks for the logits."""
    chosen = _Selection()
    if names is not None:
        listed = [names] if isinstance(names, str) else list(names)
        valid = LAYER_VALUES + MODEL_VALUES + DERIVED_VALUES
        for name in listed:
            if not isinstance(name, str) or name not in valid:
                if isinstance(name, str) and hooknames.is_hook_name(name):
                    raise UnknownNameError(f"names: {name!r} is a TransformerLens hook name; pass it as names_filter=[{name!r}]")
                check_names(model, [name] if isinstance(name, str) else [repr(name)])
        per_layer = [n for n in listed if n not in MODEL_VALUES]
        for name, layer in served(model, plan(model, [n for n in per_layer if n in LAYER_VALUES]), layers, strict=True):
            chosen.add(model, name, layer, True, "names")
        if "resid_mid" in per_layer:
            for layer in layers:
                chosen.add(model, "resid_mid", layer, True, "names")
        chosen.model.update(n for n in listed if n in MODEL_VALUES)
        return chosen, "logits" in chosen.model
    if names_filter is None:
        for name, layer in served(model, DEFAULT_NAMES, layers, strict=False):
            chosen.add(model, name, layer, False, "names")
        return chosen, False
    if callable(names_filter):
        for layer in layers:
            for name in LAYER_VALUES + DERIVED_VALUES:
                keys = [f"{name}.{layer}"] + hooknames.aliases_of(name, layer)
                if any(_call_filter(names_filter, key) for key in keys):
                    chosen.add(model, name, layer, False, "names_filter")
        for name in MODEL_VALUES:
            if any(_call_filter(names_filter, key) for key in [name] + hooknames.aliases_of(name, None)):
                chosen.model.add(name)
        return chosen, "logits" in chosen.model
    listed = [names_filter] if isinstance(names_filter, str) else names_filter
    if not isinstance(listed, (list, tuple)) or not listed:
        raise InputTypeError(
            f"names_filter: expected a name, a list of names, or a function of a name returning True or False, got {names_filter!r}"
        )
    standard = list(LAYER_VALUES + MODEL_VALUES + DERIVED_VALUES)
    for entry in listed:
        if not isinstance(entry, str):
            raise InputTypeError(f"names_filter: {entry!r} is not a name")
        base, _, suffix = entry.partition(".")
        if entry in MODEL_VALUES:
            chosen.model.add(entry)
        elif entry in LAYER_VALUES or entry in DERIVED_VALUES:
            for layer in layers:
                chosen.add(model, entry, layer, True, f"names_filter {entry!r}")
        elif (base in LAYER_VALUES or base in DERIVED_VALUES) and suffix.lstrip("-").isdigit():
            layer = _in_layers(model, int(suffix), layers, entry)
            chosen.add(model, base, layer, True, f"names_filter {entry!r}")
        elif entry in hooknames.SHORT_NAMES:
            hook = hooknames.SHORT_NAMES[entry]
            if hook in hooknames.MODEL_HOOKS:
                alias = hooknames.resolve(hook, model.num_layers, standard)
                chosen.add(model, alias.name, None, True, f"names_filter {entry!r}")
            else:
                for layer in layers:
                    alias = hooknames.resolve(f"blocks.{layer}.{hook}", model.num_layers, standard)
                    chosen.add(model, alias.name, alias.layer, True, f"names_filter {entry!r}")
        else:
            alias = hooknames.resolve(entry, model.num_layers, standard)
            at = None if alias.layer is None else _in_layers(model, alias.layer, layers, entry)
            chosen.add(model, alias.name, at, True, f"names_filter {entry!r}")
    return chosen, "logits" in chosen.model


def _call_filter(names_filter: Callable, key: str) -> bool:
    answer = names_filter(key)
    if not isinstance(answer, (bool, int)) and not (isinstance(answer, torch.Tensor) and answer.numel() == 1):
        raise InputTypeError(f"names_filter({key!r}) returned {answer!r}; it should return True or False")
    return bool(answer)


def _in_layers(model: Any, layer: int, layers: list[int], entry: str) -> int:
    if not -model.num_layers <= layer < model.num_layers:
        raise LayerIndexError(
            f"names_filter {entry!r}: layer {layer} is out of range for a model with {model.num_layers} layers"
        )
    layer %= model.num_layers
    if layer not in layers:
        raise InputError(f"names_filter {entry!r} names layer {layer}, which layers={layers} leaves out")
    return layer


def _as_inputs(prompts: Any) -> Any:
    """Prompts as a list of strings, or token ids as a ``(batch, seq)`` long tensor."""
    if isinstance(prompts, torch.Tensor):
        if prompts.dtype.is_floating_point or prompts.dtype == torch.bool or prompts.ndim not in (1, 2) or not prompts.numel():
            raise InputTypeError(
                f"prompts: a tensor of token ids (batch, seq) or (seq,) is expected, got {prompts.dtype} {tuple(prompts.shape)}"
            )
        return prompts.long().reshape(-1, prompts.shape[-1])
    return as_prompts(prompts)


@torch.no_grad()
def run_with_cache(
    model: Any,
    prompts: Union[str, Sequence[str], torch.Tensor],
    names: Optional[Sequence[str]] = None,
    layers: Layers = None,
    to_cpu: bool = False,
    remote: bool = False,
    *,
    names_filter: Union[str, Sequence[str], Callable[[str], bool], None] = None,
    return_type: Optional[str] = _UNSET,
    remove_batch_dim: bool = False,
    device: Union[str, torch.device, None] = None,
) -> ActivationCache:
    """One forward over ``prompts`` caching standard values on ``layers`` (default all).

    Args:
        prompts: a prompt, a list of prompts (left-padded together), or token ids ``(batch, seq)``
            (as :meth:`to_tokens` gives them; passed to the model as they are).
        names: standard names to cache (default :data:`DEFAULT_NAMES`, on the layers that have
            each), plus ``"resid_mid"``, ``"token_embeddings"`` and ``"logits"``.
        names_filter: TransformerLens's way of choosing instead of ``names``: a name, a list of
            names, or a function called with every standard key (``"layers_output.3"``) and every
            TransformerLens hook name (``"blocks.3.hook_resid_post"``) that keeps a value when it
            returns True for any of its names. Names may be standard names (every chosen layer),
            standard keys, TransformerLens hook names or short names (``"resid_pre"``).
        return_type: ``"logits"`` runs the whole forward and keeps the logits (``cache.logits``,
            what ``logits, cache = ...`` unpacks); ``None`` stops after the last value needed.
            Default: ``"logits"`` unless ``names`` is given without ``"logits"`` in it.
        remove_batch_dim: drop the batch dimension of every value (one prompt only).
        device: move every value there (``to_cpu=True`` is ``device="cpu"``).

    Returns:
        :class:`ActivationCache`, which also unpacks as ``logits, cache``.
    Raises ``KeyError`` with the closest valid names for an unknown name, and the reason for a
    value the model does not serve, before the forward runs.
    """
    inputs = _as_inputs(prompts)
    if names is not None and names_filter is not None:
        raise InputError("run_with_cache: give names= or names_filter=, not both")
    if return_type is not _UNSET and return_type not in ("logits", None):
        raise InputError(
            f"run_with_cache(return_type={return_type!r}): expected 'logits' or None (nnspec computes no loss: "
            "take the logits and compute it)"
        )
    if not isinstance(remove_batch_dim, bool):
        raise InputTypeError(f"run_with_cache(remove_batch_dim=...): expected True or False, got {remove_batch_dim!r}")
    chosen = sorted(set(as_layers(model, layers)))
    selection, logits_named = _select(model, names, names_filter, chosen)
    if return_type is _UNSET:
        want_logits = logits_named or names is None
        no_logits = None if want_logits else "names= leaves 'logits' out: add it, or pass return_type='logits'"
    else:
        want_logits = logits_named or return_type == "logits"
        no_logits = None if want_logits else ""
    if remove_batch_dim:
        batch = inputs.shape[0] if isinstance(inputs, torch.Tensor) else len(inputs)
        if batch != 1:
            raise InputError(f"run_with_cache(remove_batch_dim=True) needs one prompt, got {batch}")
    helpers: set[tuple[str, int]] = set()
    for layer in selection.mids:  # resid_mid = layers_input + the mixer's contribution
        for name in ("layers_input", _mixer_name(model, layer)):
            if name is not None and (name, layer) not in selection.pairs:
                helpers.add((name, layer))
    pairs = selection.pairs | helpers
    ordered = [(name, layer) for layer in chosen for name in LAYER_ORDER if (name, layer) in pairs]
    keys: list[str] = []
    saved: list[Any] = []
    target = "cpu" if to_cpu and device is None else device

    def keep(key: str, value: torch.Tensor) -> None:
        keys.append(key)
        saved.append(nnsight.save(value.cpu() if target == "cpu" else value))

    with model.trace(inputs, remote=remote) as tracer:
        if "token_embeddings" in selection.model:
            keep("token_embeddings", model.token_embeddings)
        for name, layer in ordered:
            keep(f"{name}.{layer}", getattr(model, name)[layer])
        if want_logits:
            keep("logits", model.logits)
        else:
            tracer.stop()  # nothing later is read: skip the remaining layers and the unembedding
    if not want_logits:
        free_stopped_forward()
    data = dict(zip(keys, saved))
    logits = data.pop("logits") if want_logits else None
    if "logits" in selection.model:
        data["logits"] = logits
    for layer in sorted(selection.mids):
        mixer = _mixer_name(model, layer)
        data[f"resid_mid.{layer}"] = data[f"layers_input.{layer}"] + (data[f"{mixer}.{layer}"] if mixer else 0)
    for name, layer in helpers:
        data.pop(f"{name}.{layer}")
    cache = ActivationCache(data, chosen, model.num_layers, model, logits, no_logits)
    if target is not None and target != "cpu":
        cache.to(target)
    if remove_batch_dim:
        cache.remove_batch_dim()
    return cache


__all__ = ["ActivationCache", "DEFAULT_NAMES", "LAYER_VALUES", "MODEL_VALUES", "run_with_cache"]
