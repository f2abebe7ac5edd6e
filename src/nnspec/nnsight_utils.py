"""nnterp's functional API (``get_layer_output(nn_model, i)`` and the rest) on any NNsight model.

Every function takes ``nn_model`` first, as nnterp's do, and works on two kinds of model:

- a :class:`StandardizedTransformer`: the function delegates to its standard accessor, so the
  value keeps nnspec's meaning (``get_attention_output`` is ``attentions_output[i]``, the attention
  branch's contribution to the residual stream; ``get_layer_output`` is ``layers_output[i]``);
- a plain NNsight model (``nnsight.LanguageModel``, ``NNsight``) wrapping a HuggingFace model of a
  bundled architecture: module paths come from the bundled spec found from the model's config (see
  :mod:`nnspec.runtime.rawmodel`), and values are nnterp's: module outputs with tuples unpacked
  (``get_attention_output`` is the attention module's first output, ``get_layer_output`` the
  block's hidden state).

Read values inside ``with nn_model.trace(...)`` in forward order, as NNsight requires.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Optional, Sequence, Union, cast

import torch

from .activations import collect_activations
from .errors import (
    CapabilityUnavailableError,
    InputError,
    InputTypeError,
    ShapeMismatchError,
)
from .runtime.accessors import layer_index
from .runtime.batching import columns, encode
from .runtime.loading import load_model
from .runtime.model import StandardizedModel, _residual_shape
from .runtime.ports import Element, check_value, pick, replace
from .runtime.rawmodel import ModelFacts, facts_for, facts_for_module, hf_module
from .runtime.unembed import unembed
from .utils import TraceTensor

#: A function ``(nn_model, layer) -> value`` read inside a trace (``get_layer_output``...).
GetModuleOutput = Callable[[Any, int], TraceTensor]

LayerList = Union[int, Sequence[int], None]


def _is_standard(nn_model: Any) -> bool:
    return isinstance(nn_model, StandardizedModel)


def _facts(nn_model: Any) -> ModelFacts:
    from nnsight.intervention.envoy import Envoy

    if not isinstance(nn_model, Envoy) or not isinstance(getattr(nn_model, "_module", None), torch.nn.Module):
        raise InputTypeError(
            f"nn_model: expected an NNsight model (nnsight.LanguageModel, NNsight, or a StandardizedTransformer), got "
            f"{type(nn_model).__name__}; wrap a PreTrainedModel with nnspec.nnsight_utils.load_model or "
            "StandardizedTransformer(model)"
        )
    return facts_for(nn_model)


def _index(nn_model: Any, label: str, layer: Any) -> int:
    return layer_index(label, layer, get_num_layers(nn_model))


# -- modules -------------------------------------------------------------------------------------


def get_embed_tokens(model: Any) -> Any:
    """The token embedding module's envoy."""
    if _is_standard(model):
        return model.get(model.spec.modules.embed_tokens)
    return model.get(_facts(model).spec.modules.embed_tokens)


def get_layers(model: Any) -> Any:
    """The blocks: a StandardizedTransformer's ``layers`` accessor, or the envoy of the block
    list (``len()``, indexing and iteration work on both)."""
    if _is_standard(model):
        return model.layers
    return model.get(_facts(model).spec.modules.layers)


def get_num_layers(nn_model: Any) -> int:
    """The number of blocks."""
    if _is_standard(nn_model):
        return nn_model.num_layers
    return _facts(nn_model).num_layers


def get_layer(nn_model: Any, layer: int) -> Any:
    """Block ``layer``'s envoy (negative indices count from the end)."""
    if _is_standard(nn_model):
        return nn_model.layers[layer]
    return get_layers(nn_model)[_index(nn_model, "get_layer(layer=...)", layer)]


def get_layer_input(nn_model: Any, layer: int) -> TraceTensor:
    """The residual stream entering block ``layer``, ``(batch, seq, hidden)``
    (``layers_input[layer]`` on a StandardizedTransformer; the block's first input otherwise)."""
    if _is_standard(nn_model):
        return nn_model.layers_input[layer]
    return get_layer(nn_model, layer).input


def get_layer_output(nn_model: Any, layer: int) -> TraceTensor:
    """The residual stream leaving block ``layer``, ``(batch, seq, hidden)``
    (``layers_output[layer]``; on a plain model the block output's hidden state, a tuple unpacked)."""
    if _is_standard(nn_model):
        return nn_model.layers_output[layer]
    element = _facts(nn_model).spec.layer.hidden_element
    return pick(get_layer(nn_model, layer).output, element)


def set_layer_output(nn_model: Any, layer: int, tensor: TraceTensor) -> None:
    """Replace the residual stream leaving block ``layer`` with ``tensor`` ``(batch, seq, hidden)``;
    a block that returns a tuple keeps the rest of it."""
    if _is_standard(nn_model):
        nn_model.layers_output[layer] = tensor
        return
    element = _facts(nn_model).spec.layer.hidden_element
    envoy = get_layer(nn_model, layer)
    raw = envoy.output
    current = pick(raw, element)
    value = check_value(f"set_layer_output(layer={layer})", tensor, current.shape, current)
    envoy.output = replace(raw, element, value)


def _branch_envoy(nn_model: Any, layer: int, which: str) -> tuple[Any, Element]:
    facts = _facts(nn_model)
    i = _index(nn_model, f"get_{which}(layer=...)", layer)
    branch = facts.attention[i] if which == "attention" else facts.mlp[i]
    path = facts.attention_path(i) if which == "attention" else facts.mlp_path(i)
    # The element the spec names belongs to the module's own output only when that module is
    # what the branch adds; otherwise nnterp's first element.
    element = branch.element if branch.contribution_path == branch.module else 0
    return get_layers(nn_model)[i].get(path), element


def get_attention(nn_model: Any, layer: int) -> Any:
    """Block ``layer``'s attention module envoy; refused on a layer without one."""
    if _is_standard(nn_model):
        return nn_model.attentions[layer]
    return _branch_envoy(nn_model, layer, "attention")[0]


def get_attention_output(nn_model: Any, layer: int) -> TraceTensor:
    """``(batch, seq, hidden)``: on a StandardizedTransformer ``attentions_output[layer]`` (the
    attention branch's contribution to the residual stream, after any post-norm); on a plain
    model the attention module's output (its first element when it returns a tuple)."""
    if _is_standard(nn_model):
        return nn_model.attentions_output[layer]
    envoy, element = _branch_envoy(nn_model, layer, "attention")
    return pick(envoy.output, element)


def get_mlp(nn_model: Any, layer: int) -> Any:
    """Block ``layer``'s MLP module envoy; refused on a layer without one (OPT's inline MLP)."""
    if _is_standard(nn_model):
        return nn_model.mlps[layer]
    return _branch_envoy(nn_model, layer, "mlp")[0]


def get_mlp_output(nn_model: Any, layer: int) -> TraceTensor:
    """``(batch, seq, hidden)``: ``mlps_output[layer]`` on a StandardizedTransformer (the MLP
    branch's contribution); on a plain model the MLP module's output (first element of a tuple)."""
    if _is_standard(nn_model):
        return nn_model.mlps_output[layer]
    envoy, element = _branch_envoy(nn_model, layer, "mlp")
    return pick(envoy.output, element)


def get_logits(nn_model: Any) -> TraceTensor:
    """The model's logits, ``(batch, seq, vocab)``."""
    if _is_standard(nn_model):
        return nn_model.logits
    return nn_model.output.logits


def get_unembed_norm(nn_model: Any) -> Any:
    """The final norm's envoy; refused (CapabilityUnavailableError) on a model without one."""
    if _is_standard(nn_model):
        return nn_model.ln_final
    return nn_model.get(_facts(nn_model).ln_final_path)


def get_unembed(nn_model: Any) -> Any:
    """The unembedding (``lm_head``) envoy."""
    if _is_standard(nn_model):
        return nn_model.lm_head
    return nn_model.get(_facts(nn_model).spec.modules.lm_head)


def project_on_vocab(nn_model: Any, h: TraceTensor) -> TraceTensor:
    """Logits for residual-stream states ``h`` ``(..., hidden)`` -> ``(..., vocab)``.

    Applies what the model applies after its last block: the final norm, any modules the spec
    lists before ``lm_head``, ``lm_head``, then the final logit transforms (softcapping, scales),
    so that ``project_on_vocab(nn_model, get_layer_output(nn_model, -1))`` equals the logits.
    Works inside and outside a trace.
    """
    if _is_standard(nn_model):
        return nn_model.project_on_vocab(h)
    facts = _facts(nn_model)
    reason = facts.spec.limits.project_on_vocab
    if reason:
        raise CapabilityUnavailableError(f"project_on_vocab is not available for this model: {reason}")
    hidden = facts.adapter.config_value(facts.config, "hidden_size")
    expected = _residual_shape(facts.spec, facts.config, facts.adapter.source, hidden)
    if not isinstance(h, torch.Tensor) or tuple(h.shape[h.ndim - len(expected):]) != expected:
        shape = tuple(h.shape) if isinstance(h, torch.Tensor) else type(h).__name__
        raise ShapeMismatchError(f"project_on_vocab(h): expected (..., {', '.join(map(str, expected))}), got {shape}")
    if not getattr(nn_model, "dispatched", True):
        nn_model.dispatch()
    weight = next(hf_module(nn_model).parameters())
    x = h.to(dtype=weight.dtype, device=weight.device)
    finals = [nn_model.get(path) for path in facts.final_modules]
    return unembed(x, finals, nn_model.get(facts.spec.modules.lm_head), facts.spec, facts.config)


def get_next_token_probs(nn_model: Any) -> TraceTensor:
    """Softmax of the last position's logits, ``(batch, vocab)``."""
    if _is_standard(nn_model):
        return nn_model.next_token_probs
    return get_logits(nn_model)[:, -1, :].softmax(-1)


# -- activation collection -----------------------------------------------------------------------


def _layer_list(nn_model: Any, layers: LayerList) -> list[int]:
    n = get_num_layers(nn_model)
    if layers is None:
        return list(range(n))
    chosen = list(layers) if isinstance(layers, (list, tuple, range)) else [layers]
    if not chosen:
        raise InputError("layers is empty")
    return [layer_index("layers", layer, n) for layer in chosen]


def _prompt_list(prompts: Any) -> list[str]:
    chosen = [prompts] if isinstance(prompts, str) else list(prompts)
    if not chosen:
        raise InputError("prompts is empty: give at least one prompt")
    for i, prompt in enumerate(chosen):
        if not isinstance(prompt, str):
            raise InputTypeError(f"prompts[{i}] is a {type(prompt).__name__}, not a string")
    return chosen


def _index_arg(idx: Any) -> int:
    if idx is None:
        return -1
    if isinstance(idx, bool) or not isinstance(idx, int):
        raise InputTypeError(f"idx must be a token index (an int), got {type(idx).__name__}")
    return idx


def _padding_side(nn_model: Any) -> str:
    return getattr(nn_model.tokenizer, "padding_side", "left") if not _is_standard(nn_model) else "left"


@torch.no_grad()
def get_token_activations(
    nn_model: Any,
    prompts: Union[str, Sequence[str], None] = None,
    layers: LayerList = None,
    get_activations: Optional[GetModuleOutput] = None,
    remote: bool = False,
    idx: Optional[int] = None,
    tracer: Any = None,
) -> torch.Tensor:
    """``get_activations(nn_model, layer)`` (default :func:`get_layer_output`) at token ``idx``
    (default ``-1``, the last) of every prompt, for each of ``layers`` (default all).

    With ``tracer`` (an open trace of ``nn_model``), values are read in that trace and returned
    without leaving it (call ``.save()`` on the result); else one trace runs over ``prompts`` and
    stops after the last layer needed.

    Positions count within each prompt's own tokens in a left-padded batch (a StandardizedTransformer
    always pads left). A plain model whose tokenizer pads on the right takes ``idx >= 0`` only.

    Returns:
        ``(len(layers), batch, hidden)``, on the CPU when this function ran the trace.
    """
    if tracer is None and prompts is None:
        raise InputError("get_token_activations: give prompts, or call it inside a trace and pass tracer=")
    index = _index_arg(idx)
    chosen = _layer_list(nn_model, layers)
    getter = get_activations or get_layer_output
    if tracer is not None:
        acts = [getter(nn_model, layer)[:, index] for layer in chosen]
        return torch.stack([a.to(acts[0].device) for a in acts])
    batch = _prompt_list(prompts)
    if _is_standard(nn_model) and get_activations is None:
        from .activations import collect_activations

        return collect_activations(nn_model, batch, chosen, index, batch_size=len(batch), remote=remote, progress=False)
    side = _padding_side(nn_model)
    if side == "left":
        cols = columns(encode(nn_model, batch)["attention_mask"], index, "idx")
    elif index < 0:
        raise InputError(
            f"idx={index}: a negative index needs left padding, but this tokenizer pads on the {side}; set "
            "nn_model.tokenizer.padding_side = 'left'"
        )
    else:
        cols = torch.full((len(batch),), index, dtype=torch.long)
    rows = torch.arange(len(batch))
    saved = []
    with nn_model.trace(batch, remote=remote) as run:
        for layer in chosen:
            saved.append(getter(nn_model, layer)[rows, cols].cpu().save())  # type: ignore[attr-defined]  # NNsight mounts .save() on every value
        run.stop()
    return torch.stack(list(saved))


@torch.no_grad()
def collect_last_token_activations_session(
    nn_model: Any,
    prompts: Sequence[str],
    batch_size: int,
    layers: LayerList = None,
    get_activations: Optional[GetModuleOutput] = None,
    remote: bool = False,
    idx: Optional[int] = None,
) -> torch.Tensor:
    """:func:`get_token_activations` over ``prompts`` in batches of ``batch_size``, all traces in one
    NNsight session (one request on a remote backend). Returns ``(len(layers), len(prompts), hidden)``
    on the CPU."""
    batches = _batches(prompts, batch_size)
    chosen = _layer_list(nn_model, layers)
    parts: list[Any] = []
    with nn_model.session(remote=remote):
        for batch in batches:
            parts.append(get_token_activations(nn_model, batch, chosen, get_activations, False, idx))
        result = torch.cat(parts, 1).save()  # type: ignore[attr-defined]  # NNsight mounts .save() on every value
    return result


def _batches(prompts: Any, batch_size: Any) -> list[list[str]]:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be an integer of at least 1, got {batch_size!r}")
    chosen = _prompt_list(prompts)
    return [chosen[i : i + batch_size] for i in range(0, len(chosen), batch_size)]


def collect_token_activations_batched(
    nn_model: Any,
    prompts: Sequence[str],
    batch_size: int,
    layers: LayerList = None,
    get_activations: Optional[GetModuleOutput] = None,
    remote: bool = False,
    idx: Optional[int] = None,
    tqdm: Any = None,
    use_session: bool = True,
) -> torch.Tensor:
    """:func:`get_token_activations` over ``prompts`` in batches of ``batch_size``.

    Args:
        tqdm: a progress-bar wrapper (e.g. ``tqdm.tqdm``); None shows none.
        use_session: on a remote backend, run every batch in one session.

    Returns:
        ``(len(layers), len(prompts), hidden)`` on the CPU.
    """
    if use_session and remote:
        return collect_last_token_activations_session(nn_model, prompts, batch_size, layers, get_activations, remote, idx)
    if _is_standard(nn_model) and get_activations is None:
        from .activations import collect_activations

        _batches(prompts, batch_size)  # checked as below
        return collect_activations(
            nn_model, list(prompts), layers, _index_arg(idx), batch_size=batch_size, remote=remote,
            progress=tqdm is not None,
        )
    batches: Iterable[list[str]] = _batches(prompts, batch_size)
    if tqdm is not None:
        batches = tqdm(batches)
    chosen = _layer_list(nn_model, layers)
    parts = [get_token_activations(nn_model, batch, chosen, get_activations, remote, idx) for batch in batches]
    return torch.cat(parts, 1)


def compute_next_token_probs(nn_model: Any, prompt: Union[str, Sequence[str]], remote: bool = False) -> torch.Tensor:
    """Next-token probabilities after each prompt, ``(batch, vocab)`` on the CPU."""
    batch = _prompt_list(prompt)
    if len(batch) > 1 and _padding_side(nn_model) != "left":
        raise InputError(
            "compute_next_token_probs: batched prompts need left padding (the last column must be every prompt's "
            "last token); set nn_model.tokenizer.padding_side = 'left'"
        )
    with nn_model.trace(batch, remote=remote):
        probs = get_next_token_probs(nn_model).cpu().save()  # type: ignore[attr-defined]  # NNsight mounts .save() on every value
    return probs


# -- nn.Module access on a plain HuggingFace model -----------------------------------------------


class ModuleAccessor:
    """The modules of a HuggingFace model under standard names, read through its spec.

    ``get_embed_tokens()``, ``get_layers()`` (the ``nn.ModuleList``), ``get_attention(i)``,
    ``get_mlp(i)``, ``get_unembed_norm()``, ``get_unembed()`` return the very ``nn.Module`` objects
    the spec names; attribute access gives ``model`` (the module holding the blocks), ``layers``,
    ``embed_tokens``, ``ln_final``, ``lm_head``, and any other attribute of :attr:`nn_model` that
    is a module. :attr:`nn_model` is an ``NNsight`` wrapper with the standard aliases.

    Args:
        model: a ``PreTrainedModel`` of a bundled architecture.
        rename_config: a :class:`~nnspec.rename_utils.RenameConfig` whose names replace the
            spec's module paths (checked against this model).
        rename: extra NNsight aliases ``{native path: alias}`` for :attr:`nn_model`.
    """

    _root: torch.nn.Module
    _facts: ModelFacts
    nn_model: Any

    def __init__(self, model: torch.nn.Module, rename_config: Any = None, rename: Optional[dict[str, str]] = None) -> None:
        from nnsight import NNsight

        from .runtime.adapter import backbone_aliases, merge_aliases
        from .runtime.renameconfig import adapter_for_rename_config

        if not isinstance(model, torch.nn.Module) or not hasattr(model, "config"):
            raise InputTypeError(f"ModuleAccessor(model): expected a PreTrainedModel, got {type(model).__name__}")
        if rename is not None and not isinstance(rename, dict):
            raise InputTypeError(f"ModuleAccessor(rename=...): expected a dict {{native path: alias}}, got {type(rename).__name__}")
        from .runtime.rawmodel import resolve_adapter_for_module

        adapter = resolve_adapter_for_module(model)
        if rename_config is not None:
            adapter = adapter_for_rename_config(adapter, rename_config, model.config, model)
        facts = facts_for_module(model, adapter)
        object.__setattr__(self, "_root", model)
        object.__setattr__(self, "_facts", facts)
        aliases: dict[Any, Any] = merge_aliases(dict(adapter.rename_for(facts.spec)), backbone_aliases(facts.spec))
        aliases.update(rename or {})
        object.__setattr__(self, "nn_model", NNsight(model, rename=aliases))

    @property
    def facts(self) -> ModelFacts:
        """The spec facts this accessor reads (adapter, effective spec, per-layer branches)."""
        return self._facts

    def _standard_paths(self) -> dict[str, Optional[str]]:
        modules = self._facts.spec.modules
        return {
            "model": self._facts.backbone,
            "layers": modules.layers,
            "embed_tokens": modules.embed_tokens,
            "ln_final": modules.ln_final,
            "lm_head": modules.lm_head,
        }

    def __getattr__(self, name: str) -> torch.nn.Module:
        if name.startswith("_") or name in ("nn_model", "facts"):
            raise AttributeError(name)
        paths = self._standard_paths()
        if name == "ln_final":
            return self.get_unembed_norm()
        path = paths.get(name)
        if path is not None:
            return self._root.get_submodule(path)
        attr = getattr(self.nn_model, name)
        from nnsight.intervention.envoy import Envoy

        if isinstance(attr, Envoy):
            return attr._module
        raise AttributeError(f"Attribute {name} is not a module")

    def get_embed_tokens(self) -> torch.nn.Module:
        """The token embedding module."""
        return self._root.get_submodule(self._facts.spec.modules.embed_tokens)

    def get_layers(self) -> torch.nn.ModuleList:
        """The list of blocks."""
        return cast(torch.nn.ModuleList, self._root.get_submodule(self._facts.spec.modules.layers))

    def _layer(self, layer: int, label: str) -> tuple[int, torch.nn.Module]:
        i = layer_index(label, layer, self._facts.num_layers)
        return i, self.get_layers()[i]

    def get_attention(self, layer: int) -> torch.nn.Module:
        """Block ``layer``'s attention module; CapabilityUnavailableError where it has none."""
        i, block = self._layer(layer, "get_attention(layer=...)")
        return block.get_submodule(self._facts.attention_path(i))

    def get_mlp(self, layer: int) -> torch.nn.Module:
        """Block ``layer``'s MLP module; CapabilityUnavailableError where it has none."""
        i, block = self._layer(layer, "get_mlp(layer=...)")
        return block.get_submodule(self._facts.mlp_path(i))

    def get_unembed_norm(self) -> torch.nn.Module:
        """The final norm; CapabilityUnavailableError where the model has none."""
        return self._root.get_submodule(self._facts.ln_final_path)

    def get_unembed(self) -> torch.nn.Module:
        """The unembedding module (``lm_head``)."""
        return self._root.get_submodule(self._facts.spec.modules.lm_head)


__all__ = [
    "GetModuleOutput",
    "ModuleAccessor",
    "collect_activations",
    "collect_last_token_activations_session",
    "collect_token_activations_batched",
    "compute_next_token_probs",
    "get_attention",
    "get_attention_output",
    "get_embed_tokens",
    "get_layer",
    "get_layer_input",
    "get_layer_output",
    "get_layers",
    "get_logits",
    "get_mlp",
    "get_mlp_output",
    "get_next_token_probs",
    "get_num_layers",
    "get_token_activations",
    "get_unembed",
    "get_unembed_norm",
    "load_model",
    "project_on_vocab",
    "set_layer_output",
]
