"""Interventions with the usual research recipes built in: logit lens, patchscopes, steering.

The names and arguments are nnterp's (``nnterp.interventions``); the model comes first, as
``nn_model``. Every helper takes ``remote=`` and passes it to NNsight, so the same call runs on
NDIF. Probabilities come back on the CPU as float32.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

import torch

from .errors import CapabilityUnavailableError, InputError, InputTypeError, ShapeMismatchError
from .runtime.adapter import text_config
from .runtime.arguments import Layers, as_layers, as_prompts
from .runtime.batching import columns, encode, positions_from_mask
from .runtime.unembed import unembed


def _flag(value: Any, label: str) -> bool:
    if not isinstance(value, bool):
        raise InputTypeError(f"{label} must be True or False, got {type(value).__name__} {value!r}")
    return value


def _count(value: Any, label: str, least: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise InputError(f"{label} must be an integer of at least {least}, got {value!r}")
    return value


@torch.no_grad()
def last_token_states(model: Any, prompts: list[str], layers: list[int], remote: bool = False) -> torch.Tensor:
    """``layers_output[layer]`` at each prompt's last token, ``(len(layers), batch, hidden)``.

    Layers may come in any order (and repeat); they are read in forward order.
    """
    order = sorted(set(layers))
    states: list[Any] = []
    with model.trace(prompts, remote=remote) as tracer:
        for layer in order:
            states.append(model.layers_output[layer][:, -1].save())
        tracer.stop()  # the remaining layers and the unembedding are not needed
    return torch.stack([states[order.index(layer)] for layer in layers], 0)


def negated_logits(nn_model: Any, hidden_state: torch.Tensor) -> torch.Tensor:
    """Logits of the sign-flipped normalized state, ``(..., hidden)`` -> ``(..., vocab)``.

    The final norm (and any module the spec puts before ``lm_head``) is applied first, its output
    negated, then ``lm_head`` and the model's final logit transforms, as :meth:`project_on_vocab`
    does for the state itself. Works inside and outside a trace.
    """
    reason = nn_model.spec.limits.project_on_vocab
    if reason:
        raise CapabilityUnavailableError(f"inverse logits are not available for this model: {reason}")
    if not nn_model.dispatched:
        nn_model.dispatch()
    weight = next(nn_model._module.parameters())
    x = hidden_state.to(dtype=weight.dtype, device=weight.device)
    finals = [nn_model.get(path) for path in nn_model._final_modules]
    return unembed(x, finals, lambda normed: nn_model.lm_head(-normed), nn_model.spec, text_config(nn_model._module.config))


@torch.no_grad()
def logit_lens(
    nn_model: Any,
    prompts: Union[str, Sequence[str]],
    remote: bool = False,
    return_inv_logits: bool = False,
    layers: Layers = None,
) -> Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """Next-token probabilities read from every layer's residual stream at the last token.

    Each layer's ``layers_output`` goes through :meth:`project_on_vocab` (final norm, unembedding
    and the model's final logit transforms), then softmax. One forward for all prompts.
    ``layers`` (default all) picks and orders the layers.

    Returns:
        ``(num_prompts, num_layers, vocab)`` float32 probabilities on the CPU. With
        ``return_inv_logits=True``, a pair ``(probs, inv_probs)``: ``inv_probs`` has the same shape
        and is the softmax of the logits of the *negated* final-norm output
        (:func:`negated_logits`), the tokens the state points away from.
    """
    prompts = as_prompts(prompts)
    _flag(remote, "remote")
    inverse = _flag(return_inv_logits, "return_inv_logits")
    chosen = as_layers(nn_model, layers)
    if remote:
        order = sorted(set(chosen))
        probs: list[Any] = []
        inv: list[Any] = []
        with nn_model.trace(prompts, remote=True):
            for layer in order:
                hidden = nn_model.layers_output[layer][:, -1]
                probs.append(nn_model.project_on_vocab(hidden).softmax(-1).float().cpu().save())
                if inverse:
                    inv.append(negated_logits(nn_model, hidden).softmax(-1).float().cpu().save())  # type: ignore[attr-defined]  # NNsight mounts .save() on every value

        def gather(saved: list[Any]) -> torch.Tensor:
            return torch.stack([saved[order.index(layer)] for layer in chosen], 1)

        return (gather(probs), gather(inv)) if inverse else gather(probs)
    hidden = last_token_states(nn_model, prompts, chosen).transpose(0, 1)  # (batch, layers, hidden)
    out = nn_model.project_on_vocab(hidden).softmax(-1).float().cpu()
    if not inverse:
        return out
    return out, negated_logits(nn_model, hidden).softmax(-1).float().cpu()


def _patch_index(value: Any, label: str) -> int:
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputTypeError(f"{label} is a {type(value).__name__}: give an integer token index")
    return value


@dataclass
class TargetPrompt:
    """A prompt to patch into, and the token index (of its own tokens) that receives the latent."""

    prompt: str
    index_to_patch: int


@dataclass
class TargetPromptBatch:
    """Several target prompts with one patch index each (``index_to_patch`` is a ``(n,)`` tensor)."""

    prompts: list[str]
    index_to_patch: torch.Tensor

    @classmethod
    def from_target_prompts(cls, prompts_: Sequence[TargetPrompt]) -> "TargetPromptBatch":
        """A batch from a list of :class:`TargetPrompt`."""
        if isinstance(prompts_, (TargetPrompt, str)) or not isinstance(prompts_, (list, tuple)):
            raise InputTypeError(f"target prompts: give a list of TargetPrompt, got a {type(prompts_).__name__}")
        targets = list(prompts_)
        if not targets:
            raise InputError("target_patch_prompts is empty")
        for i, target in enumerate(targets):
            if not isinstance(target, TargetPrompt):
                raise InputTypeError(f"target prompts[{i}] is a {type(target).__name__}, not a TargetPrompt(prompt, index_to_patch)")
        index = [_patch_index(t.index_to_patch, f"target prompts[{i}].index_to_patch") for i, t in enumerate(targets)]
        return cls(as_prompts([t.prompt for t in targets], "target prompts"), torch.tensor(index))

    @classmethod
    def from_target_prompt(cls, prompt: TargetPrompt, batch_size: int) -> "TargetPromptBatch":
        """``prompt`` repeated ``batch_size`` times."""
        if not isinstance(prompt, TargetPrompt):
            raise InputTypeError(f"prompt is a {type(prompt).__name__}, not a TargetPrompt(prompt, index_to_patch)")
        return cls.from_target_prompts([prompt] * _count(batch_size, "batch_size"))

    @classmethod
    def from_prompts(cls, prompts: Union[str, Sequence[str]], index_to_patch: Union[int, Sequence[int], torch.Tensor]) -> "TargetPromptBatch":
        """A batch from prompt strings and one index for all of them or one per prompt."""
        prompts = as_prompts(prompts, "target prompts")
        if isinstance(index_to_patch, torch.Tensor):
            if index_to_patch.is_floating_point() or index_to_patch.ndim > 1:
                raise InputTypeError(f"index_to_patch: give integer indices, one or one per prompt; got a {index_to_patch.dtype} tensor of shape {tuple(index_to_patch.shape)}")
            index = index_to_patch.long()
        elif isinstance(index_to_patch, (list, tuple)):
            index = torch.tensor([_patch_index(v, f"index_to_patch[{i}]") for i, v in enumerate(index_to_patch)], dtype=torch.long)
        else:
            index = torch.tensor(_patch_index(index_to_patch, "index_to_patch"))
        if index.ndim == 0:
            index = index.expand(len(prompts)).clone()
        if len(index) != len(prompts):
            raise InputError(f"{len(index)} patch indices for {len(prompts)} target prompts")
        return cls(prompts, index)

    @classmethod
    def auto(cls, target_prompt: Union[TargetPrompt, Sequence[TargetPrompt], "TargetPromptBatch"], batch_size: int) -> "TargetPromptBatch":
        """A batch from one target (repeated ``batch_size`` times), a list, or a batch (as is)."""
        if isinstance(target_prompt, TargetPromptBatch):
            return target_prompt
        if isinstance(target_prompt, TargetPrompt):
            return cls.from_target_prompt(target_prompt, batch_size)
        if isinstance(target_prompt, str):
            raise InputTypeError("a target prompt needs an index to patch: use TargetPrompt(prompt, index_to_patch)")
        return cls.from_target_prompts(target_prompt)

    def __len__(self) -> int:
        return len(self.prompts)

    def __iter__(self) -> Any:
        return (TargetPrompt(p, int(i)) for p, i in zip(self.prompts, self.index_to_patch))

    def __getitem__(self, i: int) -> TargetPrompt:
        return TargetPrompt(self.prompts[i], int(self.index_to_patch[i]))


def _repeat_text(words: Optional[Sequence[str]], rel: str, sep: str, placeholder: str) -> str:
    if words is None:
        words = ["king", "1135", "hello"]
    elif isinstance(words, str) or not isinstance(words, (list, tuple)):
        raise InputTypeError(f"words is a {type(words).__name__}: give a list of strings (or None for the default)")
    for label, value in (("rel", rel), ("sep", sep), ("placeholder", placeholder)):
        if not isinstance(value, str):
            raise InputTypeError(f"{label} is a {type(value).__name__}, not a string")
    for i, word in enumerate(words):
        if not isinstance(word, str):
            raise InputTypeError(f"words[{i}] is a {type(word).__name__}, not a string")
    return sep.join(w + rel + w for w in words) + sep + placeholder


def repeat_prompt(
    words: Optional[Sequence[str]] = None, rel: str = " ", sep: str = "\n", placeholder: str = "?", index_to_patch: int = -1
) -> TargetPrompt:
    """The identity patchscope target: ``"king king\\n1135 1135\\nhello hello\\n?"`` patched at ``?``.

    Each word is written twice joined by ``rel``, the pairs joined by ``sep``, then ``placeholder``.
    """
    return TargetPrompt(_repeat_text(words, rel, sep, placeholder), _patch_index(index_to_patch, "index_to_patch"))


_INSTRUCTION = "Each sentence I send is incomplete. Reply with the single word that comes next, nothing else."


def it_repeat_prompt(
    tokenizer: Any,
    words: Optional[Sequence[str]] = None,
    rel: str = " ",
    sep: str = "\n",
    placeholder: str = "?",
    complete_prompt: bool = True,
    add_user_instr: bool = True,
    use_system_prompt: bool = True,
) -> TargetPrompt:
    """:func:`repeat_prompt` for chat models, written with the tokenizer's chat template.

    The repeat text is sent as a user turn, after an instruction to answer with the next word
    (``add_user_instr``: as an earlier user turn acknowledged by the assistant; otherwise in the
    system prompt, or in the user turn itself when ``use_system_prompt=False``). The assistant turn
    is left open: it holds the repeat text again when ``complete_prompt`` (the model continues
    it), else nothing. ``tokenizer`` may be a model. Patched at the last token.

    Returns:
        ``TargetPrompt(rendered chat text, -1)``.

    Raises:
        InputError: the tokenizer has no chat template, or its template refuses the chat (a
            template without a system role: pass ``use_system_prompt=False``).
    """
    from .prompt_utils import tokenizer_of

    tok = tokenizer_of(tokenizer, "tokenizer")
    for label, value in (("complete_prompt", complete_prompt), ("add_user_instr", add_user_instr), ("use_system_prompt", use_system_prompt)):
        _flag(value, label)
    text = _repeat_text(words, rel, sep, placeholder)
    if getattr(tok, "chat_template", None) is None:
        raise InputError(
            "it_repeat_prompt: this tokenizer has no chat template (tokenizer.chat_template is None); use "
            "repeat_prompt() for a base model, or set tokenizer.chat_template"
        )
    answer = {"role": "assistant", "content": text if complete_prompt else ""}
    if add_user_instr:
        chat = [{"role": "system", "content": "You are a helpful assistant."}] if use_system_prompt else []
        chat += [
            {"role": "user", "content": _INSTRUCTION},
            {"role": "assistant", "content": "Understood."},
            {"role": "user", "content": text},
        ]
    elif use_system_prompt:
        chat = [{"role": "system", "content": _INSTRUCTION}, {"role": "user", "content": text}]
    else:
        chat = [{"role": "user", "content": f"{_INSTRUCTION}\n{text}"}]
    try:
        rendered = tok.apply_chat_template(chat + [answer], tokenize=False, continue_final_message=True)
    except Exception as exc:  # the template's own refusal (jinja's TemplateError and the like)
        hint = " (a template without a system role: pass use_system_prompt=False)" if use_system_prompt else ""
        raise InputError(f"it_repeat_prompt: the tokenizer's chat template refused the chat: {exc}{hint}") from exc
    return TargetPrompt(rendered, -1)


def _patch_layers(layer_to_patch: Layers, layers: Layers) -> Layers:
    if layer_to_patch is not None and layers is not None and layer_to_patch != layers:
        raise InputError("give the layers once: layers= and layer_to_patch= disagree")
    return layers if layers is not None else layer_to_patch


def _latents(model: Any, latents: Any, chosen: list[int]) -> torch.Tensor:
    """``latents`` given in either layout (one per requested layer, or one per model layer) as
    the states to patch, ``(len(chosen), num_sources, *residual_shape)``."""
    if isinstance(latents, (list, tuple)) and latents and all(isinstance(t, torch.Tensor) for t in latents):
        shapes = {tuple(t.shape) for t in latents}
        if len(shapes) > 1:
            raise ShapeMismatchError(f"latents: the per-layer tensors differ in shape: {sorted(shapes)}")
        latents = torch.stack(list(latents), 0)
    width = tuple(model.residual_shape)  # (hidden,), or several residual streams
    hidden = ", ".join(map(str, width))
    ok = isinstance(latents, torch.Tensor) and latents.ndim == 2 + len(width) and tuple(latents.shape[2:]) == width
    if ok and latents.shape[0] == len(chosen):
        return latents  # latents[k] is patched at layers[k]
    if ok and latents.shape[0] == model.num_layers:
        return latents[chosen]  # one per model layer: latents[layer] is patched at that layer
    shape = tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
    raise ShapeMismatchError(
        f"latents: expected (num_layers={len(chosen)}, num_sources, hidden={hidden}), got {shape}: one latent per "
        f"requested layer (latents[k] is patched at layers[k]), or one per model layer ({model.num_layers}, "
        f"num_sources, {hidden})"
    )


@torch.no_grad()
def patchscope_lens(
    nn_model: Any,
    source_prompts: Union[str, Sequence[str], None] = None,
    target_patch_prompts: Union[TargetPrompt, Sequence[TargetPrompt], TargetPromptBatch, None] = None,
    layers: Layers = None,
    latents: Optional[torch.Tensor] = None,
    remote: bool = False,
    layer_to_patch: Layers = None,
    batch_size: Optional[int] = None,
) -> torch.Tensor:
    """Patchscope: decode each source's last-token state at a layer by patching it into a target prompt.

    For the ``k``-th layer ``l`` of ``layers`` (default all; ``layer_to_patch`` is an alias), the
    source's ``layers_output[l]`` at its last token replaces the target's ``layers_output[l]`` at
    ``index_to_patch``, and the target's next-token distribution is read. Give ``source_prompts``
    or ``latents`` (not both): ``latents[k]`` ``(num_sources, hidden)`` is the state patched at
    ``layers[k]``, as in nnterp, so ``latents`` is ``(len(layers), num_sources, hidden)``; a tensor
    with one row per model layer ``(num_layers, num_sources, hidden)`` (what
    :func:`~nnspec.nnsight_utils.get_token_activations` returns) is read by layer number instead
    when ``len(layers)`` differs from the model's layer count. Source ``i`` pairs with target ``i``
    (one :class:`TargetPrompt` is repeated; default :func:`repeat_prompt`). All layers run as one
    batch: each target is repeated once per layer and copy ``k`` is patched at ``layers[k]``
    (``batch_size`` caps rows per forward); the target tokens before the patched position run
    once and are shared through the KV cache.

    Returns:
        ``(num_sources, len(layers), vocab)`` float32 probabilities on the CPU.
    """
    model = nn_model
    _flag(remote, "remote")
    chosen = as_layers(model, _patch_layers(layer_to_patch, layers))
    if (source_prompts is None) == (latents is None):
        raise InputError("give exactly one of source_prompts= and latents=")
    if latents is not None:
        states = _latents(model, latents, chosen)  # (layers, sources, hidden)
        sources = states.shape[1]
    else:
        assert source_prompts is not None  # exactly one of the two was given (checked above)
        prompts = as_prompts(source_prompts, "source_prompts")
        sources = len(prompts)
    targets = TargetPromptBatch.auto(target_patch_prompts if target_patch_prompts is not None else repeat_prompt(), sources)
    if len(targets) != sources:
        raise InputError(f"{len(targets)} target prompts for {sources} sources: give one target or one per source")
    columns(encode(model, targets.prompts)["attention_mask"], targets.index_to_patch, "index_to_patch")  # range check
    per_run = len(chosen) if batch_size is None else max(_count(batch_size, "batch_size") // sources, 1)
    if latents is None:
        states = last_token_states(model, prompts, chosen, remote)
    out: list[torch.Tensor] = []
    for begin in range(0, len(chosen), per_run):
        block = slice(begin, min(begin + per_run, len(chosen)))
        out.append(_patch_run(model, targets, chosen[block], states[block], remote))
    return torch.cat(out, 1)


def _patch_run(model: Any, targets: TargetPromptBatch, layers: list[int], states: torch.Tensor, remote: bool) -> torch.Tensor:
    """One batched forward: target ``s`` is repeated once per layer, copy ``k`` patched at ``layers[k]``.

    Rows are source-major (row ``s * len(layers) + k``). The target tokens before the earliest
    patched position are the same in every copy (attention is causal), so they run once, un-batched,
    into a KV cache; the copies then run only from that position on, reusing it. Remote runs use
    one plain forward over all copies instead.
    """
    encoded = encode(model, targets.prompts)
    mask = encoded["attention_mask"]
    cols = columns(mask, targets.index_to_patch, "index_to_patch")
    copies = len(layers)
    start = int(cols.min())
    # Models that place learned positions in front of the input (CPM-Ant) rebuild them on every
    # forward, so a cache of the target's first columns does not line up: run the whole prompt.
    shareable = not remote and start > 0 and not getattr(model, "prefix_positions", 0)
    prefix = _prefix_cache(model, encoded, start, copies) if shareable else None
    if prefix is None:
        start = 0
    ids = encoded["input_ids"][:, start:].repeat_interleave(copies, 0)
    kwargs: dict[str, Any] = {"attention_mask": mask.repeat_interleave(copies, 0), "logits_to_keep": 1}
    if prefix is not None:
        kwargs[_cache_argument(model)] = prefix
        if _takes(model, "position_ids"):
            kwargs["position_ids"] = positions_from_mask(mask)[:, start:].repeat_interleave(copies, 0)
    patch_cols = (cols - start).repeat_interleave(copies, 0)
    sources = len(targets)
    order = sorted(range(copies), key=lambda k: layers[k])
    saved: list[Any] = []
    with model.trace(ids, remote=remote, **kwargs):
        for k in order:
            hidden = model.layers_output[layers[k]]
            rows = torch.arange(sources) * copies + k
            hidden[rows, patch_cols[rows]] = states[k].to(device=hidden.device, dtype=hidden.dtype)
        saved.append(model.next_token_probs.float().cpu().save())
    return saved[0].view(sources, copies, -1)


def _takes(model: Any, argument: str) -> bool:
    import inspect

    return argument in inspect.signature(type(model._module).forward).parameters


def _cache_argument(model: Any) -> str:
    """The forward argument taking a KV cache (``cache`` from transformers 5.24, else ``past_key_values``)."""
    return "cache" if _takes(model, "cache") else "past_key_values"


def _prefix_cache(model: Any, encoded: dict[str, torch.Tensor], end: int, copies: int) -> Any:
    """KV cache of the targets' first ``end`` columns, repeated ``copies`` times per row; ``None``
    when the model's cache is not a plain key/value cache."""
    if not model.dispatched:
        model.dispatch()
    device = model.device
    kwargs: dict[str, Any] = {
        "input_ids": encoded["input_ids"][:, :end].to(device),
        "attention_mask": encoded["attention_mask"][:, :end].to(device),
        "use_cache": True,
        "logits_to_keep": 1,
    }
    if _takes(model, "position_ids"):
        kwargs["position_ids"] = positions_from_mask(encoded["attention_mask"])[:, :end].to(device)
    output = model._module(**kwargs)
    cache = getattr(output, "cache", None) or getattr(output, "past_key_values", None)
    if cache is None:  # a model that keeps no cache (GPT-1): run the whole prompt
        return None
    # Only a plain key/value cache can be shared this way: recurrent or linear-attention state
    # (hybrid models) and model-specific caches run the whole prompt instead.
    layers = getattr(cache, "layers", None)
    if type(cache).__name__ != "DynamicCache" or not layers or any(
        type(layer).__name__ not in ("DynamicLayer", "DynamicSlidingWindowLayer") for layer in layers
    ):
        return None
    cache.batch_repeat_interleave(copies)
    return cache


@torch.no_grad()
def patchscope_generate(
    nn_model: Any,
    prompts: Union[str, Sequence[str]],
    target_patch_prompt: TargetPrompt,
    max_length: int = 50,
    layers: Layers = None,
    remote: bool = False,
    max_batch_size: int = 32,
) -> dict[int, torch.Tensor]:
    """Generate from the target prompt with each source's last-token state patched in at each layer.

    The patch applies to the prompt's forward; generation then continues freely. Works for any list
    of layers (each layer reads and writes its own state). Layers are batched into generations of
    at most ``max_batch_size`` rows.

    Returns:
        ``{layer: token ids (num_prompts, prompt_len + new_tokens)}`` on the CPU, prompt included;
        ``max_length`` is the number of new tokens.
    """
    model = nn_model
    prompts = as_prompts(prompts)
    chosen = as_layers(model, layers)
    _flag(remote, "remote")
    if not isinstance(target_patch_prompt, TargetPrompt):
        raise InputTypeError("target_patch_prompt must be a TargetPrompt(prompt, index_to_patch)")
    _count(max_length, "max_length")
    n = len(prompts)
    per_run = max(_count(max_batch_size, "max_batch_size") // n, 1)
    index = _patch_index(target_patch_prompt.index_to_patch, "target_patch_prompt.index_to_patch")
    columns(encode(model, [target_patch_prompt.prompt])["attention_mask"], index, "index_to_patch")  # range check
    states = last_token_states(model, prompts, chosen, remote)
    result: dict[int, torch.Tensor] = {}
    for begin in range(0, len(chosen), per_run):
        block = list(range(begin, min(begin + per_run, len(chosen))))
        rows = [target_patch_prompt.prompt] * (n * len(block))
        mask = encode(model, rows)["attention_mask"]
        col = columns(mask, index, "index_to_patch")
        order = sorted(block, key=lambda b: chosen[b])
        saved: list[Any] = []
        with model.generate(rows, max_new_tokens=max_length, remote=remote) as tracer:
            for b in order:
                hidden = model.layers_output[chosen[b]]
                k = block.index(b)
                span = torch.arange(k * n, (k + 1) * n)
                hidden[span, col[span]] = states[b].to(device=hidden.device, dtype=hidden.dtype)
            saved.append(tracer.result.cpu().save())
        ids = saved[0]
        for k, b in enumerate(block):
            result[chosen[b]] = ids[k * n : (k + 1) * n]
    return result


@torch.no_grad()
def patch_object_attn_lens(
    nn_model: Any,
    source_prompts: Union[str, Sequence[str]],
    target_prompts: Union[str, Sequence[str]],
    attn_idx_patch: int,
    num_patches: int = 5,
    remote: bool = False,
    batch_size: Optional[int] = None,
) -> torch.Tensor:
    """Make the targets' attention see each source's last token in place of one target token.

    For each start layer ``s``, the target is run with ``attentions_input[l]`` (what the attention
    branch reads, after its input norm) at token ``attn_idx_patch`` replaced by the source's
    ``attentions_input[l]`` at its last token, for ``l`` in ``s .. s + num_patches - 1`` (cut at
    the last layer); the residual stream is left alone. The target's next-token distribution is
    read. ``attn_idx_patch`` counts the target's own tokens (negatives from its end). One source
    serves every target, or source ``i`` pairs with target ``i``. All start layers run as one
    batch (``batch_size`` caps rows per forward).

    Returns:
        ``(num_targets, num_layers, vocab)`` float32 probabilities on the CPU (index ``s``: the
        run whose patches start at layer ``s``).

    Raises:
        CapabilityUnavailableError: a layer whose attention input this model does not give (a
            layer without softmax attention).
    """
    model = nn_model
    sources = as_prompts(source_prompts, "source_prompts")
    targets = as_prompts(target_prompts, "target_prompts")
    _flag(remote, "remote")
    span = _count(num_patches, "num_patches")
    index = _patch_index(attn_idx_patch, "attn_idx_patch")
    if len(sources) not in (1, len(targets)):
        raise InputError(
            f"{len(sources)} source prompts for {len(targets)} target prompts: give one source or one per target"
        )
    layers = list(range(model.num_layers))
    for layer in layers:
        try:
            model.attentions_input.port(layer)
        except CapabilityUnavailableError as exc:
            raise CapabilityUnavailableError(
                f"patch_object_attn_lens patches the attention input of every layer: {exc}"
            ) from exc
    cols = columns(encode(model, targets)["attention_mask"], index, "attn_idx_patch")
    per_run = len(layers) if batch_size is None else max(_count(batch_size, "batch_size") // len(targets), 1)
    saved: list[Any] = []
    with model.trace(sources, remote=remote) as tracer:
        for layer in layers:
            saved.append(model.attentions_input[layer][:, -1].save())
        tracer.stop()
    states = [state.expand(len(targets), *state.shape[1:]) for state in saved]  # per layer (targets, hidden)
    out: list[torch.Tensor] = []
    for begin in range(0, len(layers), per_run):
        starts = layers[begin : begin + per_run]
        out.append(_attn_input_run(model, targets, cols, starts, span, states, remote))
    return torch.cat(out, 1)


def _attn_input_run(
    model: Any, targets: list[str], cols: torch.Tensor, starts: list[int], span: int, states: list[torch.Tensor], remote: bool
) -> torch.Tensor:
    """One forward over ``len(starts)`` copies of the targets (copy ``k``: rows ``k * T .. k * T + T - 1``),
    copy ``k`` patched at the layers ``starts[k] .. starts[k] + span - 1``; ``(T, len(starts), vocab)``."""
    count = len(targets)
    rows_cols = cols.repeat(len(starts))
    last = min(model.num_layers, starts[-1] + span)
    saved: list[Any] = []
    with model.trace(targets * len(starts), remote=remote):
        for layer in range(starts[0], last):
            active = [k for k, start in enumerate(starts) if start <= layer < start + span]
            value = model.attentions_input[layer].clone()
            for k in active:
                rows = torch.arange(k * count, (k + 1) * count)
                value[rows, rows_cols[rows]] = states[layer].to(device=value.device, dtype=value.dtype)
            model.attentions_input[layer] = value
        saved.append(model.next_token_probs.float().cpu().save())
    return saved[0].view(len(starts), count, -1).transpose(0, 1)


def steer(
    model: Any,
    layers: Union[int, Sequence[int]],
    steering_vector: torch.Tensor,
    factor: float = 1,
    positions: Union[int, Sequence[int], torch.Tensor, None] = None,
    token_positions: Union[int, Sequence[int], torch.Tensor, None] = None,
    batch_index: Union[int, Sequence[int], torch.Tensor, None] = None,
    position: Union[int, None] = None,
) -> None:
    """Inside a trace: add ``factor * steering_vector`` to ``layers_output`` of ``layers``, in the
    prompts ``batch_index`` (default all) at ``token_positions`` (default all; ``position`` is an
    alias, ``positions`` the deprecated name). Same as :meth:`StandardizedTransformer.steer`."""
    if positions is not None:
        if token_positions is not None or position is not None:
            raise InputError("steer: Cannot specify both positions= (deprecated) and token_positions=; give token_positions=")
        warnings.warn("steer(positions=...) is deprecated: use token_positions=", DeprecationWarning, stacklevel=2)
        token_positions = positions
    if position is not None:
        if token_positions is not None:
            raise InputError("steer: Cannot specify both position= and token_positions=; give token_positions=")
        token_positions = position
    model.steer(layers=layers, steering_vector=steering_vector, factor=factor, token_positions=token_positions,
                batch_index=batch_index)


__all__ = [
    "TargetPrompt",
    "TargetPromptBatch",
    "it_repeat_prompt",
    "logit_lens",
    "patch_object_attn_lens",
    "patchscope_generate",
    "patchscope_lens",
    "repeat_prompt",
    "steer",
]
