"""Conformance checks: every contract row of the standard interface against plain transformers.

A :class:`Subject` is one tiny checkpoint loaded twice: as the plain transformers class the runtime
builds (eager attention, float32 on the CPU unless :func:`load_subject` is told otherwise) giving
the ground truth through ``output_hidden_states`` and torch forward hooks, and as a
:class:`StandardizedTransformer` loaded the same way. Each check compares the two on every layer
within the :func:`tolerance` of their dtype and raises :class:`ConformanceError` naming the check, the layer
and the size of the disagreement. Edit checks also require the edit to change the logits, so a
check that compares two unchanged runs cannot pass by accident.

The checks share their forwards where that changes nothing they compare:

* one plain-transformers forward at load (:attr:`Subject.reference`, :attr:`Subject.record`)
  gives ``hidden_states``, the eager ``attentions``, the cache, and what every hooked HF module
  (blocks, branch inputs, attention modules, output projections) received or returned;
* inside :func:`run_checks`, the standard values the read-only checks compare are read once, in
  one trace in the documented order (:meth:`Subject.standard`); a check whose values that trace
  could not read (another value broke it) reads its own, so each check still fails only for
  itself. ``read_order`` runs its own trace;
* an edit check makes all its edits in one forward on a batch that repeats the input once per
  edit (block ``j`` of rows carries edit ``j`` only; :meth:`Subject.tiled`), and plain
  transformers runs the same batch with the same edits as hooks. A row of a causal LM depends only
  on its own row and the edits are zero on every other block, so block ``j`` is the separate run
  of edit ``j``; the comparison holds whatever the batch does, since both sides run the same one.

The same checks back the pytest matrix, ``nnspec matrix`` and ``nnspec check MODEL``.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import time
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Literal, Optional, Sequence, TypedDict, Union

import torch

from ..compiler.schema import ATTENTION_KINDS, BlockAttribute, Branch
from ..errors import CapabilityUnavailableError, ConformanceError, InputError
from ..runtime.adapter import read_config, text_config
from ..runtime.batching import positions_from_mask
from ..runtime.names import ATTENTION_INTERNALS, LAYER_ORDER
from ..runtime.ports import Element, cache_of, drop_prefix, pick, replace
from ..runtime.structure import block_attribute_value


class Tolerance(TypedDict):
    """How far a standard value may be from plain transformers' (``torch.allclose``'s arguments)."""

    atol: float
    rtol: float


#: The tolerances of every comparison, by the dtype both models are loaded in: the one place they
#: are set. Both sides compute the same values in the same dtype, but where the checks recompute a
#: value by another route (probabilities from queries and keys, per-head parts summed, a padded
#: batch) half-precision rounding shows; bfloat16 keeps 8 bits of mantissa, float16 11.
TOLERANCES: dict[torch.dtype, Tolerance] = {
    torch.float32: {"atol": 1e-5, "rtol": 1e-4},
    torch.float16: {"atol": 2e-3, "rtol": 1e-2},
    torch.bfloat16: {"atol": 2e-2, "rtol": 5e-2},
}
#: The float32 tolerances (the default load).
TOLERANCE = TOLERANCES[torch.float32]
#: The largest difference between a prompt in a padded batch and the prompt alone that may come
#: from float rounding over the longer, masked, sequence (beyond it, padding changed the result), by dtype.
PADDING_ROUNDINGS: dict[torch.dtype, float] = {torch.float32: 1e-3, torch.float16: 2e-2, torch.bfloat16: 1e-1}
PADDING_ROUNDING = PADDING_ROUNDINGS[torch.float32]
#: The dtype the checks now running compare in (set by :func:`run_checks` from the subject).
_DTYPE: contextvars.ContextVar[torch.dtype] = contextvars.ContextVar("conformance_dtype", default=torch.float32)


def tolerance(dtype: Optional[torch.dtype] = None) -> Tolerance:
    """The tolerances for models loaded in ``dtype`` (default: the subject :func:`run_checks` is checking)."""
    chosen = _DTYPE.get() if dtype is None else dtype
    if chosen not in TOLERANCES:
        raise InputError(f"dtype {chosen}: the conformance checks compare models in {', '.join(map(str, TOLERANCES))}")
    return TOLERANCES[chosen]


@contextlib.contextmanager
def comparing_in(dtype: torch.dtype) -> Iterator[None]:
    """Inside the block, checks compare within ``dtype``'s tolerances (:func:`run_checks` enters
    this for its subject's dtype; outside it they compare as float32)."""
    tolerance(dtype)  # a dtype without tolerances is refused
    token = _DTYPE.set(dtype)
    try:
        yield
    finally:
        _DTYPE.reset(token)
#: An edit must move the logits by more than this for its check to mean anything.
MIN_EFFECT = 1e-4

PROMPTS = ["The Eiffel Tower is in the city of", "Hello world, how are you?"]

#: Values read in a trace besides the per-layer ones of :data:`LAYER_ORDER`.
EXTRA_VALUES = ("token_embeddings", "project_on_vocab", "logits", "next_token_probs")


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach().float() - b.detach().float()).abs().max())


#: What structurally failed in a check, carried by :class:`ConformanceError` and
#: :class:`CheckResult` so that tools act on the cause, never on the wording of the message.
FailureCause = Literal[
    "mismatch",  # a standard value differs from plain transformers
    "shape_mismatch",  # a standard value has another shape than plain transformers'
    "no_effect",  # an edit did not move the logits, so the check could tell nothing
    "served_despite_limit",  # the spec declares a value unavailable but the runtime served it
    "refusal_mismatch",  # a branch accessor refused on a layer with that branch, or served one without it
    "no_branch",  # a layer has neither a token mixer nor an MLP
    "contribution_mismatch",  # layers_input + branch outputs != layers_output
    "zero_branch",  # a branch contribution is all zero
    "reference_missing",  # plain transformers never produced the value to compare with
    "probabilities_mismatch",  # attention_probabilities differ from the eager attention weights
    "softmax_count",  # an attention module computed other than one softmax
    "qkv_shape",  # queries/keys are not (batch, heads, seq, head_dim)
    "qkv_masks",  # the attention received several score-shaped masks
    "sinks_per_token",  # sink logits come from a module per token (scores are not scaled dot-product)
    "probabilities_not_softmax_qk",  # softmax(q k^T * scale + mask) does not give the eager weights
    "heads_output_not_probs_values",  # attention_heads_output != probabilities @ values
    "heads_output_not_projection_input",  # output_projection(attention_heads_output) != attention output
    "error",  # the check raised something other than a conformance failure
    "load_failed",  # the checkpoint could not be built or loaded
]
#: Every :data:`FailureCause`, in declaration order.
FAILURE_CAUSES: tuple[str, ...] = typing.get_args(FailureCause)


def assert_close(
    check: str,
    what: str,
    actual: torch.Tensor,
    expected: torch.Tensor,
    cause: FailureCause = "mismatch",
    layer: Optional[int] = None,
) -> float:
    """Raise :class:`ConformanceError` (with ``cause``, ``layer`` and the measured difference)
    unless ``actual`` matches ``expected`` within :func:`tolerance`; return the difference."""
    if tuple(actual.shape) != tuple(expected.shape):
        raise ConformanceError(
            f"{check}: {what} has shape {tuple(actual.shape)}, expected {tuple(expected.shape)}",
            cause="shape_mismatch", layer=layer,
        )
    limits = tolerance()
    if not torch.allclose(actual.detach().float(), expected.detach().float(), **limits):
        raise ConformanceError(
            f"{check}: {what} differs from plain transformers by {max_diff(actual, expected):.3g} "
            f"(tolerance atol={limits['atol']}, rtol={limits['rtol']})",
            cause=cause, layer=layer, max_error=max_diff(actual, expected),
        )
    return max_diff(actual, expected)


def assert_effect(check: str, what: str, edited: torch.Tensor, base: torch.Tensor, layer: Optional[int] = None) -> None:
    if max_diff(edited, base) <= MIN_EFFECT:
        raise ConformanceError(
            f"{check}: {what} changed the logits by only {max_diff(edited, base):.2g}; the check cannot tell anything",
            cause="no_effect", layer=layer, max_error=max_diff(edited, base),
        )


@dataclass
class Record:
    """What plain transformers' modules received and returned in the reference forward (each
    module's last call where blocks repeat), on the input's positions."""

    #: Per block: the residual stream it receives and the hidden state it returns.
    block_inputs: dict[int, torch.Tensor] = field(default_factory=dict)
    block_outputs: dict[int, torch.Tensor] = field(default_factory=dict)
    #: Per ``(accessor plural, layer)``: the first input of the module the branch reads
    #: (``branch.input_path``), as the module received it (flattened tokens stay flattened).
    branch_inputs: dict[tuple[str, int], torch.Tensor] = field(default_factory=dict)
    #: Per softmax-attention layer: the ``attention_mask`` the attention module received and its output.
    attention_masks: dict[int, Any] = field(default_factory=dict)
    attention_outputs: dict[int, torch.Tensor] = field(default_factory=dict)
    #: Per layer: what the attention's output projection returned.
    projections: dict[int, torch.Tensor] = field(default_factory=dict)
    #: HF eager ``attentions`` by layer (None where the model has no softmax layer to report).
    attentions: Optional[dict[int, torch.Tensor]] = None
    #: The cache the forward returned (None unless the model serves recurrent states).
    cache: Any = None


@dataclass
class _Shared:
    """The standard values read once for the checks of one :func:`run_checks` call."""

    wanted: set[str]
    names: set[str] = field(default_factory=set)
    values: Optional[dict[Any, torch.Tensor]] = None
    error: Optional[BaseException] = None


@dataclass
class Subject:
    """One checkpoint, loaded as plain transformers (``hf``) and through nnspec (``model``)."""

    name: str
    hf: Any
    model: Any
    input_ids: torch.Tensor
    reference: Any = field(init=False)
    record: Record = field(init=False)

    def __post_init__(self) -> None:
        self._embeddings: Optional[torch.Tensor] = None
        self._shared: Optional[_Shared] = None
        self.reference, self.record = self._reference_forward()

    # -- the plain-transformers reference ----------------------------------------------------------

    def _reference_forward(self) -> tuple[Any, Record]:
        """One plain-transformers forward with ``hidden_states`` (and ``attentions`` and the cache
        where a check needs them), forward hooks recording what the checked modules saw."""
        m, spec, record = self.model, self.spec, Record()
        element = spec.layer.hidden_element if spec.layer.returns == "tuple" else 0
        hooks: list[Any] = []

        def first(args: tuple, kwargs: dict) -> Any:
            return args[0] if args else next(iter(kwargs.values()))

        def keep(store: dict, key: Any, value: Any) -> None:
            store[key] = value.detach().clone() if isinstance(value, torch.Tensor) else value

        # fn(args, kwargs) / fn(output); `...`: the callers' lambdas bind the layer as a default argument.
        def pre(module: torch.nn.Module, fn: Callable[..., None]) -> None:
            hooks.append(module.register_forward_pre_hook(lambda mod, a, kw: fn(a, kw), with_kwargs=True))

        def post(module: torch.nn.Module, fn: Callable[..., None]) -> None:
            hooks.append(module.register_forward_hook(lambda mod, a, out: fn(out)))

        def resolve(i: int, path: Optional[str]) -> Optional[torch.nn.Module]:
            """Block ``i``'s module at ``path``; None where there is none (the check that needs it
            resolves it again and reports why)."""
            if path is None:
                return None
            try:
                return self.hf_block(i).get_submodule(path)
            except AttributeError:
                return None

        softmax = _softmax_layers(self)
        projection = spec.attention.output_projection
        for i in range(self.num_layers):
            block = self.hf_block(i)
            pre(block, lambda a, kw, i=i: keep(record.block_inputs, i, self.own(first(a, kw))))
            post(block, lambda out, i=i: keep(record.block_outputs, i, self.own(pick(out, element))))
            for plural in _branch_input_plurals(self, i):
                module = resolve(i, m.branch("mlp" if plural == "mlps" else "attention", i).input_path)
                if module is not None:
                    pre(module, lambda a, kw, key=(plural, i): keep(record.branch_inputs, key, first(a, kw)))
            attention = resolve(i, m.branch("attention", i).module)
            if attention is None:
                continue
            if i in softmax:
                pre(attention, lambda a, kw, i=i: record.attention_masks.__setitem__(i, kw.get("attention_mask")))
                post(attention, lambda out, i=i: keep(record.attention_outputs, i, pick(out, spec.attention.element)))
            if projection:
                module = resolve(i, f"{m.branch('attention', i).module}.{projection}")
                if module is not None:
                    post(module, lambda out, i=i: keep(record.projections, i, self.own(pick(out, 0))))
        attentions = bool(softmax) and any(getattr(m, a).unavailable is None for a in ("attention_probabilities", "queries"))
        states = m.mixer_states.unavailable is None and any(m.mixer_states.serves(i) for i in range(self.num_layers))
        extra = {"output_attentions": True} if attentions else {}
        if states:
            extra["use_cache"] = True
        try:
            with torch.no_grad():
                output = self.hf(self.input_ids, output_hidden_states=True, **self.unpadded(self.input_ids), **extra)
        finally:
            for handle in hooks:
                handle.remove()
        if attentions:
            record.attentions = _attentions_by_layer(self, output.attentions)
        if states:
            record.cache = cache_of(output)
        return output, record

    @property
    def repeats(self) -> bool:
        """Whether some blocks run several times per forward (``layer.repeats``): the standard
        values of those blocks are their last pass, and the hooks below act on that pass."""
        return any(p > 1 for p in self.model.layer_passes)

    @property
    def calls(self) -> list[int]:
        """The blocks in the order the model calls them in one forward (a looped section repeated)."""
        passes = self.model.layer_passes
        looped = [i for i, p in enumerate(passes) if p > 1]
        if not looped:
            return list(range(self.num_layers))
        start, end = looped[0], looped[-1] + 1
        return list(range(start)) + list(range(start, end)) * passes[start] + list(range(end, self.num_layers))

    def last_call(self, i: int) -> int:
        """Where block ``i``'s last call falls in :attr:`calls`."""
        return len(self.calls) - 1 - self.calls[::-1].index(i)

    def passes_of(self, module: torch.nn.Module) -> int:
        """How many times ``module`` runs per forward: its block's passes (1 outside the blocks)."""
        for i in range(self.num_layers):
            if self.model.layer_passes[i] > 1 and any(m is module for m in self.hf_block(i).modules()):
                return self.model.layer_passes[i]
        return 1

    def on_last_pass(self, module: torch.nn.Module, hook: Callable) -> Callable:
        """``hook`` acting on ``module``'s last call of a forward only (its block's last pass)."""
        passes = self.passes_of(module) if self.repeats else 1
        if passes == 1:
            return hook
        calls = [0]

        def last(*args: Any) -> Any:
            calls[0] += 1
            return hook(*args) if calls[0] == passes else None

        return last

    def stream_input(self, i: int) -> torch.Tensor:
        """Plain transformers' residual stream entering block ``i``; where blocks repeat, what its
        last call receives (a pass may restart from a state no block returned)."""
        if not self.repeats:
            return self.stream[i]
        return self.record.block_inputs[i]

    def stream_output(self, i: int) -> Optional[torch.Tensor]:
        """Plain transformers' residual stream leaving block ``i`` (its last pass where blocks
        repeat), from ``hidden_states``; ``None`` where ``hidden_states`` holds the final norm's
        output instead (the last call)."""
        hs = self.stream
        position = (self.last_call(i) if self.repeats else i) + 1
        return hs[position] if position < len(hs) - 1 else None

    @property
    def stream(self) -> list[torch.Tensor]:
        """The residual stream from plain transformers: entry ``i`` enters block ``i`` (entry 0 the
        embeddings), entry ``i + 1`` leaves it, for ``i < num_layers - 1``; read from
        ``hidden_states`` in the numbering the spec declares (``layer.hidden_states``)."""
        hs = list(self.reference.hidden_states)
        if self.spec.layer.hidden_states == "inputs":
            return hs
        if self._embeddings is None:  # no embeddings entry: the embedding module's own output
            with torch.no_grad():
                self._embeddings = self.hf.get_input_embeddings()(self.input_ids)
        return [self._embeddings] + hs

    @property
    def num_layers(self) -> int:
        return self.model.num_layers

    @property
    def spec(self) -> Any:
        return self.model.spec

    @property
    def dtype(self) -> torch.dtype:
        """The dtype both models were loaded in."""
        return self.hf.dtype

    def unpadded(self, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """The all-ones ``attention_mask`` nnsight passes with token ids (every token real), for a
        model whose forward takes one: plain transformers then runs on the inputs nnspec's forward
        gets (some releases build no causal mask at all when called without one)."""
        parameters = inspect.signature(type(self.hf).forward).parameters
        if "attention_mask" not in parameters and not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
            return {}
        return {"attention_mask": torch.ones_like(input_ids)}

    def hf_block(self, i: int) -> torch.nn.Module:
        return self.hf.get_submodule(self.spec.modules.layers)[i]

    def hf_logits(self, hooks: Iterable[tuple[torch.nn.Module, Callable]] = (), input_ids: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Plain-transformers logits for ``input_ids`` (default: the subject's) with forward hooks
        ``(module, hook)`` installed for one run (on a looped block's last pass only, where blocks
        repeat)."""
        handles = [module.register_forward_hook(self.on_last_pass(module, hook)) for module, hook in hooks]
        try:
            with torch.no_grad():
                input_ids = self.input_ids if input_ids is None else input_ids
                return self.hf(input_ids, **self.unpadded(input_ids)).logits
        finally:
            for handle in handles:
                handle.remove()

    def delta(self, i: int, scale: float = 1.0) -> torch.Tensor:
        """A fixed random edit for layer ``i``, shaped like the residual stream."""
        generator = torch.Generator().manual_seed(1000 + i)
        like = self.reference.hidden_states[0]
        return (scale * torch.randn(like.shape, generator=generator)).to(like)  # the model's dtype and device

    @property
    def prefix(self) -> int:
        """Positions the model places in front of the input inside its blocks (``layer.prefix``):
        HF modules see them, the standard values and ``hidden_states`` do not."""
        return self.model.prefix_positions

    def own(self, value: torch.Tensor) -> torch.Tensor:
        """A value an HF module saw, on the input's positions only."""
        return drop_prefix(value, self.prefix)

    def widen(self, delta: torch.Tensor) -> torch.Tensor:
        """An edit of the input's positions, as the HF modules see them (zero on the prefix)."""
        if not self.prefix:
            return delta
        return torch.cat([delta.new_zeros((delta.shape[0], self.prefix, *delta.shape[2:])), delta], dim=1)

    # -- batches of edits --------------------------------------------------------------------------

    def tiled(self, blocks: int) -> torch.Tensor:
        """The input repeated ``blocks`` times along the batch: ``(blocks * batch, seq)``."""
        return self.input_ids.repeat(blocks, 1)

    def rows(self, block: int) -> slice:
        """The rows of block ``block`` in :meth:`tiled`."""
        batch = self.input_ids.shape[0]
        return slice(block * batch, (block + 1) * batch)

    def spread(self, value: torch.Tensor, block: int, blocks: int) -> torch.Tensor:
        """``value`` (shaped for the subject's batch) on block ``block``'s rows, zero on the others."""
        out = value.new_zeros((blocks * value.shape[0], *value.shape[1:]))
        out[self.rows(block)] = value
        return out

    # -- the standard values, read once ------------------------------------------------------------

    @contextlib.contextmanager
    def sharing(self, names: Iterable[str]) -> Iterator[None]:
        """Inside: :meth:`standard` reads the standard values in one trace, the first time a check
        asks, and serves them to every check (``names``: those the coming checks read). Outside,
        each call reads afresh, so a check run on its own sees the runtime as it is then."""
        previous = self._shared
        self._shared = _Shared(set(names))
        try:
            yield
        finally:
            self._shared = previous

    def standard(self, names: Iterable[str], separately: bool = False) -> dict[Any, torch.Tensor]:
        """The standard values ``names`` (:data:`LAYER_ORDER` names and :data:`EXTRA_VALUES`) on
        the subject's input, keyed ``(name, layer)`` for every layer that serves them and by name
        for the extras, read in one trace in the documented order.

        Inside :meth:`sharing` the trace is the shared one. Where it failed (some other value broke
        it), the values come from a trace of their own, or with ``separately`` one trace per name,
        so that the failure is reported by the check it belongs to."""
        wanted = set(names)
        shared = self._shared
        if shared is None:
            return self._read(wanted)
        if not wanted <= shared.names:
            shared.names = shared.names | shared.wanted | wanted
            try:
                shared.values, shared.error = self._read(shared.names), None
            except Exception as exc:  # noqa: BLE001 - each check then reads its own values
                shared.values, shared.error = None, exc
        if shared.values is not None:
            return shared.values
        if not separately:
            return self._read(wanted)
        values: dict[Any, torch.Tensor] = {}
        for name in wanted:
            values.update(self._read({name}))
        return values

    def plan(self, names: Iterable[str]) -> list[tuple[str, int]]:
        """``(name, layer)`` for each of ``names`` that layer serves, in the documented read order."""
        wanted = set(names)
        return [(name, i) for i in range(self.num_layers) for name in LAYER_ORDER if name in wanted and _serves(self, name, i)]

    def _read(self, names: set[str]) -> dict[Any, torch.Tensor]:
        m, last = self.model, self.num_layers - 1
        if "project_on_vocab" in names:
            names = names | {"layers_output"}
        got: dict[Any, torch.Tensor] = {}
        with m.trace(self.input_ids) as tracer:
            if "token_embeddings" in names:
                got["token_embeddings"] = m.token_embeddings.save()
            for name, i in self.plan(names):
                got[(name, i)] = getattr(m, name)[i].save()
                if (name, i) == ("layers_output", last) and "project_on_vocab" in names:
                    got["project_on_vocab"] = m.project_on_vocab(got[(name, i)]).save()
            if "logits" in names:
                got["logits"] = m.logits.save()
            if "next_token_probs" in names:
                got["next_token_probs"] = m.next_token_probs.save()
            if not names & {"logits", "next_token_probs"}:
                tracer.stop()  # no need for the final norm and the unembedding
        return got


def load_subject(
    name: str, path: Any, spec: Any = None, dtype: Union[torch.dtype, str] = torch.float32,
    device_map: Optional[str] = None, **model_kwargs: Any,
) -> Subject:
    """Load ``path`` both ways, each in ``dtype`` (a torch dtype of :data:`TOLERANCES`, or
    ``"auto"``: the checkpoint's own) with ``device_map`` (None: on the CPU in one piece); ``spec``
    is passed to :class:`StandardizedTransformer` (None: registry). The checks then compare within
    :func:`tolerance` of the dtype the models were loaded in."""
    from transformers import PreTrainedModel

    from ..runtime.loading import dtype_kwarg
    from ..standardized_transformer import StandardizedTransformer

    if dtype != "auto" and dtype not in TOLERANCES:
        raise InputError(f"dtype={dtype!r}: the conformance checks load models in 'auto', {', '.join(map(str, TOLERANCES))}")
    model_kwargs.setdefault("allow_unverified", True)  # the checks are what verifies a version pair
    placement: dict[str, Any] = {**dtype_kwarg(dtype), "device_map": device_map}
    model = StandardizedTransformer(str(path), spec=spec, attn_implementation="eager", **placement, **model_kwargs)
    # The plain model is the class the runtime builds (a vision-language wrapper's whole model),
    # loaded the same way.
    plain: type[PreTrainedModel] = type(model._module)
    if not issubclass(plain, PreTrainedModel):
        raise InputError(f"{path}: loaded as a {plain.__name__}, not a transformers model, so there is no plain model to compare with")
    hf = plain.from_pretrained(
        str(path), attn_implementation="eager", **placement,
        **{k: v for k, v in model_kwargs.items() if k == "trust_remote_code"},
    )
    hf.eval()
    tolerance(hf.dtype)  # a checkpoint stored in a dtype the checks have no tolerances for is refused here
    vocab = int(read_config(text_config(hf.config), model.spec.config.vocab_size))
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(4, min(vocab, 300), (2, 9), generator=generator).to(hf.device)
    return Subject(name=name, hf=hf, model=model, input_ids=input_ids)


def _refuses(s: Subject, accessor: str, layer: int = 0) -> bool:
    """Whether the runtime refuses ``accessor[layer]`` (:class:`CapabilityUnavailableError`).
    Asked outside a trace first: a refusal comes before any forward runs. Where that gives no
    refusal, asked inside a trace as a user would (any error other than a refusal propagates)."""
    try:
        getattr(s.model, accessor)[layer]
    except CapabilityUnavailableError:
        return True
    except Exception:  # noqa: BLE001 - not refused up front: ask inside a trace
        pass
    try:
        with s.model.trace(s.input_ids):
            getattr(s.model, accessor)[layer]
    except CapabilityUnavailableError:
        return True
    return False


# -- the checks -------------------------------------------------------------------------------------


#: The standard values each read-only check compares (read once for all, see :meth:`Subject.standard`).
READS: dict[str, set[str]] = {
    "layers_io": {"layers_input", "layers_output"},
    "contribution": {"layers_input", "layers_output", "attentions_output", "mixers_output", "mlps_output"},
    "project_on_vocab": {"project_on_vocab"},
    "logits": {"logits", "next_token_probs"},
    "branch_inputs": {"token_embeddings", "attentions_input", "mixers_input", "mlps_input"},
    "attention_probabilities": {"attention_probabilities"},
    "qkv": {"queries", "keys", "values", "attention_heads_output"},
    "read_order": set(LAYER_ORDER),
}


def check_layers_io(s: Subject) -> float:
    """``layers_input[i] == hidden_states[i]`` and ``layers_output[i] == hidden_states[i+1]`` (i < L-1),
    in the standard numbering (:attr:`Subject.stream`)."""
    values = s.standard(READS["layers_io"])
    worst = 0.0
    for i in range(s.num_layers):
        worst = max(worst, assert_close("layers_io", f"layers_input[{i}]", values[("layers_input", i)], s.stream_input(i)))
        expected = s.stream_output(i)
        if expected is not None:
            worst = max(worst, assert_close("layers_io", f"layers_output[{i}]", values[("layers_output", i)], expected))
    return worst


def _mixer_accessor(s: Subject, i: int) -> Optional[str]:
    """The accessor holding layer ``i``'s token-mixer contribution: ``attentions_*`` on attention
    layers, ``mixers_*`` on the others (the two are one value; :func:`check_contribution` proves
    that ``attentions_*`` refuse where the mixer is not attention). ``None``: the layer has no mixer."""
    if s.model.attentions_output.serves(i):
        return "attentions"
    return "mixers" if s.model.mixers_output.serves(i) else None


def _branches(s: Subject, i: int) -> list[str]:
    """The contribution accessors of layer ``i``'s branches (mixer, MLP), those it has."""
    mixer = _mixer_accessor(s, i)
    return ([f"{mixer}_output"] if mixer else []) + (["mlps_output"] if s.model.mlps_output.serves(i) else [])


def _branch_input_plurals(s: Subject, i: int) -> list[str]:
    """The branches whose input :func:`check_branch_inputs` compares on layer ``i``: the mixer's
    accessor plural (see :func:`_mixer_accessor`) and ``mlps``, those the layer serves."""
    return [name for name in (_mixer_accessor(s, i), "mlps" if s.model.mlps_input.serves(i) else None) if name]


def _check_refusals(s: Subject) -> None:
    """Per layer: ``attentions_*`` serve exactly the attention layers, ``mixers_*`` every layer with
    a token mixer, ``mlps_*`` every layer with an MLP; and no layer lacks both branches."""
    m = s.model
    for i in range(s.num_layers):
        kind = m.mixer_kind(i)
        expected = {
            "attentions": kind in ATTENTION_KINDS and m.branch("attention", i).contribution_path is not None,
            "mixers": kind != "none" and m.branch("attention", i).contribution_path is not None,
            "mlps": m.branch("mlp", i).contribution_path is not None,
        }
        if not expected["mixers"] and not expected["mlps"]:
            raise ConformanceError(f"contribution: layer {i} has neither a token mixer nor an MLP", cause="no_branch", layer=i)
        for plural, serves in expected.items():
            for suffix in ("input", "output"):
                accessor = getattr(m, f"{plural}_{suffix}")
                if serves and not accessor.serves(i) and accessor.unavailable is None:
                    raise ConformanceError(
                        f"contribution: {plural}_{suffix}[{i}] is refused on a layer whose mixer is {kind!r}",
                        cause="refusal_mismatch", layer=i,
                    )
                if not serves:
                    try:  # the refusal comes from the index, before any forward runs
                        accessor[i]
                    except CapabilityUnavailableError:
                        continue
                    raise ConformanceError(
                        f"contribution: {plural}_{suffix}[{i}] was served on a layer without that branch ({kind!r})",
                        cause="refusal_mismatch", layer=i,
                    )


def check_contribution(s: Subject) -> float:
    """``layers_input[i] + mixers_output[i] + mlps_output[i] == layers_output[i]`` on every layer,
    with ``attentions_output`` in place of ``mixers_output`` on attention layers and a branch the
    layer lacks left out (a Mamba block is ``layers_input + mixers_output``); accessors of a
    branch a layer lacks must refuse.

    Where the spec declares the identity unavailable, the runtime must refuse (not guess).
    """
    reason = s.spec.limits.contribution
    if reason:
        if _refuses(s, f"{_mixer_accessor(s, 0) or 'mlps'}_output"):
            return 0.0
        raise ConformanceError(
            "contribution: the spec declares the identity unavailable, but the runtime served it", cause="served_despite_limit"
        )
    _check_refusals(s)
    values = s.standard(READS["contribution"])
    worst = 0.0
    for i in range(s.num_layers):
        x, y = values[("layers_input", i)], values[("layers_output", i)]
        parts = {name: values[(name, i)] for name in _branches(s, i)}
        total = x + sum(parts.values())
        worst = max(worst, assert_close(
            "contribution", f"layer {i}: layers_input + {' + '.join(parts)} vs layers_output", total, y,
            cause="contribution_mismatch", layer=i,
        ))
        for name, part in parts.items():
            if max_diff(part, torch.zeros_like(part)) == 0:
                raise ConformanceError(f"contribution: layer {i} has an all-zero {name}", cause="zero_branch", layer=i)
    return worst


def check_residual_kind(s: Subject) -> float:
    """The declared residual kind: in a sequential block the MLP reads the attention's
    contribution, in a parallel one it does not (checked by editing ``attentions_output[i]``).

    One forward: block 0 of the batch runs unedited, block ``j`` edits the ``j``-th layer's mixer
    contribution and reads that layer's ``mlps_input``."""
    m, kind = s.model, s.spec.residual.kind
    if kind == "post_norm" or s.spec.limits.contribution:
        return 0.0
    layers = [i for i in range(s.num_layers) if _mixer_accessor(s, i) and m.mlps_input.serves(i)]
    if not layers:
        return 0.0  # one branch only: nothing to order
    blocks = len(layers) + 1
    read: dict[int, Any] = {}
    with m.trace(s.tiled(blocks)) as tracer:
        for j, i in enumerate(layers, 1):
            contribution = getattr(m, f"{_mixer_accessor(s, i)}_output")
            contribution[i] = contribution[i] + s.spread(s.delta(i), j, blocks)
            read[i] = m.mlps_input[i].save()
        tracer.stop()  # nothing after the last read is needed
    worst = 0.0
    for j, i in enumerate(layers, 1):
        mixer = _mixer_accessor(s, i)
        moved = max_diff(read[i][s.rows(j)], read[i][s.rows(0)])
        if kind == "parallel" and moved > tolerance()["atol"]:
            raise ConformanceError(
                f"residual: the spec says parallel, but mlps_input[{i}] moved by {moved:.3g} when {mixer}_output[{i}] changed"
            )
        if kind == "sequential" and moved <= MIN_EFFECT:
            raise ConformanceError(
                f"residual: the spec says sequential, but mlps_input[{i}] did not move when {mixer}_output[{i}] changed"
            )
        worst = max(worst, moved if kind == "parallel" else 0.0)
    return worst


def check_token_mixing(s: Subject) -> float:
    """What the spec calls the token mixer mixes tokens, and what it calls the MLP does not: a change
    of ``mixers_input[i]`` at the first position moves ``mixers_output[i]`` at later positions, the
    same change of ``mlps_input[i]`` leaves ``mlps_output[i]`` at later positions as it was. A truth
    about the modules themselves, so a spec that swaps the two branches (or names a mixer that is
    none) fails here whatever the other rows say.

    One forward: block 0 of the batch runs unedited, block ``j`` changes the ``j``-th branch input
    (in forward order) and reads that branch's output."""
    m, n = s.model, s.num_layers
    if s.spec.limits.contribution:
        return 0.0
    plan = [(name, i) for i in range(n) for name in ("mixers", "mlps") if getattr(m, f"{name}_output").serves(i)]
    if not plan:
        return 0.0
    blocks = len(plan) + 1
    outputs: dict[tuple[str, int], Any] = {}
    with m.trace(s.tiled(blocks)) as tracer:
        for j, (name, i) in enumerate(plan, 1):
            inputs = getattr(m, f"{name}_input")
            value = inputs[i].clone()
            rows = s.rows(j)
            value[rows, 0] = value[rows, 0] + s.delta(i)[:, 0] * 10
            inputs[i] = value
            outputs[(name, i)] = getattr(m, f"{name}_output")[i].save()
        tracer.stop()
    worst = 0.0
    for j, (name, i) in enumerate(plan, 1):
        edited, clean = outputs[(name, i)][s.rows(j)], outputs[(name, i)][s.rows(0)]
        moved = max_diff(edited[:, 1:], clean[:, 1:])
        if name == "mixers" and moved <= MIN_EFFECT:
            raise ConformanceError(
                f"token_mixing: mixers_output[{i}] at later positions did not move when mixers_input[{i}] changed at the "
                f"first one: the spec's token mixer ({m.branch('attention', i).module!r}, kind {m.mixer_kind(i)!r}) mixes no tokens"
            )
        if name == "mlps" and m.branch("mlp", i).mixes_tokens:
            if moved <= MIN_EFFECT:
                raise ConformanceError(
                    f"token_mixing: the spec says the MLP branch mixes tokens (mlp.mixes_tokens), but mlps_output[{i}] at "
                    f"later positions did not move when mlps_input[{i}] changed at the first one"
                )
            continue
        if name == "mlps" and moved > tolerance()["atol"]:
            raise ConformanceError(
                f"token_mixing: mlps_output[{i}] at later positions moved by {moved:.3g} when mlps_input[{i}] changed at "
                f"the first one: the spec's MLP ({m.branch('mlp', i).module!r}) mixes tokens, so it is a token mixer"
            )
        worst = max(worst, moved if name == "mlps" else 0.0)
    return worst


def check_project_on_vocab(s: Subject) -> float:
    """``project_on_vocab(layers_output[-1]) == logits`` (final norm, unembedding, final transforms);
    where the spec declares that unavailable, ``project_on_vocab`` must refuse, inside and outside
    a trace."""
    m = s.model
    if s.spec.limits.project_on_vocab:
        for inside in (True, False):
            try:
                if inside:
                    with m.trace(s.input_ids):
                        m.project_on_vocab(m.layers_output[-1]).save()
                else:
                    m.project_on_vocab(s.reference.hidden_states[0])
            except CapabilityUnavailableError:
                continue
            raise ConformanceError(
                "project_on_vocab: the spec declares it unavailable, but the runtime served it", cause="served_despite_limit"
            )
        return 0.0
    projected = s.standard(READS["project_on_vocab"])["project_on_vocab"]
    # Outside a trace, on the last block's output as plain transformers computed it.
    outside = m.project_on_vocab(s.record.block_outputs[s.num_layers - 1])
    worst = assert_close("project_on_vocab", "project_on_vocab(layers_output[-1])", projected, s.reference.logits)
    return max(worst, assert_close("project_on_vocab", "project_on_vocab outside a trace", outside, s.reference.logits))


def check_logits(s: Subject) -> float:
    """``logits`` and ``next_token_probs`` equal plain transformers, for token ids and for text prompts."""
    m = s.model
    values = s.standard(READS["logits"])
    worst = assert_close("logits", "logits", values["logits"], s.reference.logits)
    worst = max(worst, assert_close("logits", "next_token_probs", values["next_token_probs"], s.reference.logits[:, -1].softmax(-1)))
    prompts = PROMPTS if not s.spec.limits.padding else PROMPTS[:1]  # no padded batch where padding is a limit
    encoded = m.tokenizer(prompts, return_tensors="pt", padding=True).to(s.input_ids.device)
    with m.trace(prompts):
        text_logits = m.logits.save()
    with torch.no_grad():
        expected = s.hf(**encoded, **_positions(s, encoded["attention_mask"])).logits
    mask = encoded["attention_mask"].bool()
    return max(worst, assert_close("logits", "logits of text prompts (real tokens)", text_logits[mask], expected[mask]))


def _hook_add(element: Element, delta: torch.Tensor, flat: bool = False) -> Callable:
    def hook(module: Any, args: Any, output: Any) -> Any:
        target = pick(output, element)
        edited = target + (delta.reshape(target.shape) if flat else delta).to(target.dtype)
        return replace(output, element, edited)

    return hook


def _edit_check(
    s: Subject, check: str, accessor: Any, hook_for: Callable[[int, torch.Tensor], tuple], layers: Optional[list[int]] = None
) -> float:
    """``accessor`` (a name, or a function of the layer giving one) edited on ``layers`` (default:
    all), each by its own delta: all in one forward, block ``j`` of the batch carrying the edit of
    the ``j``-th layer only (zero elsewhere), against plain transformers on the same batch with
    the same edits made by hooks."""
    m, worst = s.model, 0.0
    layers = list(range(s.num_layers)) if layers is None else layers
    if not layers:
        return 0.0
    blocks = len(layers)
    deltas = {i: s.spread(s.delta(i), j, blocks) for j, i in enumerate(layers)}
    names = {i: accessor(i) if callable(accessor) else accessor for i in layers}
    with m.trace(s.tiled(blocks)):
        for i in layers:  # increasing layers: forward order
            values = getattr(m, names[i])
            values[i] = values[i] + deltas[i].to(values[i].dtype)  # a value may be kept in another dtype (Mamba's float32 residual)
        edited = m.logits.save()
    expected = s.hf_logits([hook_for(i, s.widen(deltas[i])) for i in layers], s.tiled(blocks))
    for j, i in enumerate(layers):
        rows = s.rows(j)
        assert_effect(check, f"{names[i]}[{i}] += delta", expected[rows], s.reference.logits)
        worst = max(worst, assert_close(check, f"logits after {names[i]}[{i}] += delta", edited[rows], expected[rows]))
    return worst


def check_edit_layers_output(s: Subject) -> float:
    """Writing ``layers_output[i]`` equals adding the same delta to block i's output with a hook."""
    element = s.spec.layer.hidden_element
    return _edit_check(s, "edit_layers_output", "layers_output", lambda i, d: (s.hf_block(i), _hook_add(element, d)))


def _branch_hook(s: Subject, name: str) -> Callable[[int, torch.Tensor], tuple]:
    def hook_for(i: int, delta: torch.Tensor) -> tuple:
        branch = s.model.branch(name, i)
        module = s.hf_block(i).get_submodule(branch.contribution_path)
        scale = _branch_scale(s, branch)
        raw_delta = delta / scale if scale is not None else delta
        # A module that adds the residual itself returns residual + contribution: the same delta applies.
        return module, _hook_add(branch.element, raw_delta, flat=branch.flattened)

    return hook_for


def _branch_scale(s: Subject, branch: Branch) -> Optional[float]:
    if branch.scale is None:
        return None
    if isinstance(branch.scale, BlockAttribute):
        blocks = [s.hf_block(i) for i in range(s.num_layers)]
        return block_attribute_value(blocks, branch.scale.block_attribute, "scale", s.spec.name)
    return float(branch.scale if not isinstance(branch.scale, str) else read_config(text_config(s.hf.config), branch.scale))


def check_edit_attentions_output(s: Subject) -> float:
    """Writing ``attentions_output[i]`` (``mixers_output[i]`` on layers whose token mixer is not
    attention) equals the same change of the mixer's contribution made with a hook."""
    if s.spec.limits.contribution:
        return 0.0  # the runtime refuses the accessor (check_contribution proves it)
    layers = [i for i in range(s.num_layers) if _mixer_accessor(s, i)]
    return _edit_check(
        s, "edit_attentions_output", lambda i: f"{_mixer_accessor(s, i)}_output", _branch_hook(s, "attention"), layers
    )


def check_edit_mlps_output(s: Subject) -> float:
    """Writing ``mlps_output[i]`` equals the same change of the MLP contribution with a hook (on
    every layer that has an MLP)."""
    if s.spec.limits.contribution:
        return 0.0
    layers = [i for i in range(s.num_layers) if s.model.mlps_output.serves(i)]
    return _edit_check(s, "edit_mlps_output", "mlps_output", _branch_hook(s, "mlp"), layers)


def check_steer(s: Subject) -> float:
    """``steer`` equals adding ``factor * vector`` to the chosen blocks' outputs with hooks.

    Both settings run in one forward, one invoke each; plain transformers runs the two copies of
    the input as one batch, each block of rows with its own hooks' edits."""
    m, n = s.model, s.num_layers
    vector = torch.randn(m.residual_shape, generator=torch.Generator().manual_seed(7)).to(s.reference.hidden_states[0])
    element = s.spec.layer.hidden_element
    settings = (([0, n - 1], None), ([n // 2], [1, -1]))
    steered: list[Any] = []
    with m.trace() as tracer:
        for layers, positions in settings:
            with tracer.invoke(s.input_ids):
                m.steer(layers=layers, steering_vector=vector, factor=1.5, token_positions=positions)
                steered.append(m.logits.save())
    hooks = []
    for j, (layers, positions) in enumerate(settings):
        delta = torch.zeros_like(s.reference.hidden_states[0])
        if positions is None:
            delta += 1.5 * vector
        else:
            delta[:, positions] += 1.5 * vector
        hooks += [(s.hf_block(i), _hook_add(element, s.widen(s.spread(delta, j, len(settings))))) for i in layers]
    expected = s.hf_logits(hooks, s.tiled(len(settings)))
    worst = 0.0
    for j, (layers, positions) in enumerate(settings):
        rows = s.rows(j)
        assert_effect("steer", f"steer(layers={layers})", expected[rows], s.reference.logits)
        worst = max(worst, assert_close("steer", f"logits after steer(layers={layers}, positions={positions})", steered[j], expected[rows]))
    return worst


def check_skip_layers(s: Subject) -> float:
    """``skip_layers(i, j)`` equals blocks i..j returning their input unchanged."""
    m, n = s.model, s.num_layers
    start, end = (1, n - 1) if n > 2 else (0, 0)
    with m.trace(s.input_ids):
        m.skip_layers(start, end)
        skipped = m.logits.save()
    element = s.spec.layer.hidden_element
    hidden: dict[str, torch.Tensor] = {}

    def keep_input(module: Any, args: Any, kwargs: Any) -> None:  # a looped block: its last call's
        hidden["x"] = args[0] if args else next(iter(kwargs.values()))

    def pass_through(module: Any, args: Any, output: Any) -> Any:
        return replace(output, element, hidden["x"])

    first = s.hf_block(start)
    handle = first.register_forward_pre_hook(keep_input, with_kwargs=True)
    try:
        expected = s.hf_logits([(s.hf_block(i), pass_through) for i in range(start, end + 1)])
    finally:
        handle.remove()
    assert_effect("skip_layers", f"skip_layers({start}, {end})", expected, s.reference.logits)
    return assert_close("skip_layers", f"logits after skip_layers({start}, {end})", skipped, expected)


def check_branch_inputs(s: Subject) -> float:
    """``attentions_input[i]`` / ``mlps_input[i]`` equal what the HF branch modules receive, shaped
    ``(batch, seq, hidden)``, and ``token_embeddings`` equals ``get_input_embeddings()(input_ids)``."""
    m, n = s.model, s.num_layers
    plan = [(name, i) for i in range(n) for name in _branch_input_plurals(s, i)]
    values = s.standard(READS["branch_inputs"])
    batch, seq = s.reference.hidden_states[0].shape[:2]
    with torch.no_grad():  # ground truth from transformers' own accessor, not the spec's path
        expected = s.hf.get_input_embeddings()(s.input_ids)
    worst = assert_close("branch_inputs", "token_embeddings vs get_input_embeddings()(input_ids)", values["token_embeddings"], expected)
    for name, i in plan:
        if (name, i) not in s.record.branch_inputs:  # no such module: resolving it says why
            s.hf_block(i).get_submodule(m.branch("mlp" if name == "mlps" else "attention", i).input_path)
            raise ConformanceError(
                    f"branch_inputs: plain transformers never called layer {i}'s {name} input module",
                    cause="reference_missing", layer=i,
                )
        value = s.record.branch_inputs[(name, i)]
        seen = s.own(value.reshape((batch, seq + s.prefix) + value.shape[-1:]))  # a looped block: its last call
        worst = max(worst, assert_close("branch_inputs", f"{name}_input[{i}]", values[(f"{name}_input", i)], seen))
    return worst


def _softmax_layers(s: Subject) -> list[int]:
    """Layers whose attention is softmax attention; the others must refuse probabilities and q/k/v."""
    return [i for i in range(s.num_layers) if s.model.branch("attention", i).kind == "softmax"]


def _served_layers(check: str, s: Subject, accessor: str) -> list[int]:
    """The layers whose attention internals the check compares; every other layer (a declared
    limit, or attention that is not softmax) must be refused by the runtime."""
    if getattr(s.model, accessor).unavailable is not None:
        _expect_refusal(check, s, accessor)
        return []
    layers = _softmax_layers(s)
    for i in sorted(set(range(s.num_layers)) - set(layers)):
        _expect_refusal(check, s, accessor, i)
    return layers


def _attentions_by_layer(s: Subject, attentions: tuple) -> dict[int, torch.Tensor]:
    """HF's ``attentions`` output keyed by layer (hybrid models report softmax layers only; where
    blocks repeat, one entry per call: each layer's last)."""
    layers = _softmax_layers(s)
    found = [a for a in attentions if a is not None]
    order = [i for i in s.calls if i in layers]
    if len(found) == len(order):
        return {i: found[len(order) - 1 - order[::-1].index(i)] for i in layers}
    return {i: attentions[i] for i in layers}


def _recorded_attentions(s: Subject, check: str) -> dict[int, torch.Tensor]:
    """The eager attention weights of the reference forward, by layer; :class:`ConformanceError`
    where plain transformers returned none although ``check`` has softmax layers to compare."""
    if s.record.attentions is None:
        raise ConformanceError(f"{check}: plain transformers returned no attention weights", cause="reference_missing")
    return s.record.attentions


def _expect_refusal(check: str, s: Subject, accessor: str, layer: int = 0) -> float:
    """Where the spec declares a capability unavailable, the runtime must refuse with the reason."""
    if _refuses(s, accessor, layer):
        return 0.0
    raise ConformanceError(
        f"{check}: the spec declares {accessor} unavailable, but the runtime served it", cause="served_despite_limit", layer=layer
    )


def _sinks(s: Subject, i: int) -> Optional[torch.Tensor]:
    """Layer ``i``'s learned sink logits, one per head, where the spec declares ``attention.sinks``
    and the layer has them (``None`` otherwise)."""
    name = s.model.branch("attention", i).sinks
    if name is None:
        return None
    return getattr(s.hf_block(i).get_submodule(s.model.branch("attention", i).module), name)


@contextlib.contextmanager
def _softmax_edits(
    edits: Sequence[tuple[torch.nn.Module, Callable[[torch.Tensor], torch.Tensor], bool, Optional[torch.Size], int]],
) -> Iterator[list[int]]:
    """Apply each ``(module, edit, sink, shape, passes)``'s ``edit`` to every softmax computed
    inside that module's forward (plain torch, no NNsight); yields the number of softmaxes each
    module computed (its last call only).

    With ``sink``, the softmax runs over the real keys plus a last sink column: ``edit`` replaces
    the probabilities over the real keys and the sink column is kept as computed (the model drops
    it after the softmax), which is what setting ``attention_probabilities`` means there. With
    ``shape`` (the standard ``(batch, heads, q, k)``), a softmax computed with the heads folded
    into the batch, ``(batch*heads, q, k)``, is edited in the standard layout. Where a module runs
    ``passes`` times per forward (a looped block), only its last call is edited."""
    functional = torch.nn.functional
    original = functional.softmax
    active: list[Optional[int]] = [None]
    calls = [0] * len(edits)
    entered = [0] * len(edits)

    def softmax(*args: Any, **kwargs: Any) -> torch.Tensor:
        out = original(*args, **kwargs)
        k = active[0]
        if k is None:
            return out
        _, edit, sink, shape, _ = edits[k]
        calls[k] += 1

        def apply(probs: torch.Tensor) -> torch.Tensor:
            if shape is None or probs.shape == shape:
                return edit(probs)
            return edit(probs.reshape(shape)).reshape(probs.shape)

        if sink:
            return torch.cat([apply(out[..., :-1]), out[..., -1:]], dim=-1)
        return apply(out)

    handles = []
    for k, (module, _, _, _, passes) in enumerate(edits):

        def enter(*a: Any, k: int = k, passes: int = passes) -> None:
            entered[k] += 1
            if entered[k] == passes:
                active[0] = k

        def leave(*a: Any, k: int = k) -> None:
            if active[0] == k:
                active[0] = None

        handles += [module.register_forward_pre_hook(enter), module.register_forward_hook(leave)]
    functional.softmax = softmax
    try:
        yield calls
    finally:
        functional.softmax = original
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def _softmax_edit(
    module: torch.nn.Module,
    edit: Callable[[torch.Tensor], torch.Tensor],
    sink: bool = False,
    shape: Optional[torch.Size] = None,
    passes: int = 1,
) -> Iterator[list[int]]:
    """:func:`_softmax_edits` for one module: ``calls[0]`` counts its softmaxes."""
    with _softmax_edits([(module, edit, sink, shape, passes)]) as calls:
        yield calls


def check_attention_probabilities(s: Subject) -> float:
    """``attention_probabilities[i]`` equals HF eager ``attentions[i]``; setting it equals the same
    edit made to the softmax output inside the attention computation (with attention sinks: to
    the softmax output's columns of the real keys, the sink column kept). The edits of all layers
    run in one forward, block ``j`` of the batch edited on the ``j``-th layer only."""
    m = s.model
    layers = _served_layers("attention_probabilities", s, "attention_probabilities")
    if not layers:
        return 0.0
    reference = _recorded_attentions(s, "attention_probabilities")
    values = s.standard(READS["attention_probabilities"])
    probs = {i: values[("attention_probabilities", i)] for i in layers}
    worst = 0.0
    for i in layers:
        worst = max(worst, assert_close(
            "attention_probabilities", f"attention_probabilities[{i}]", probs[i], reference[i],
            cause="probabilities_mismatch", layer=i,
        ))
    blocks = len(layers)
    edits: dict[int, Callable[[torch.Tensor], torch.Tensor]] = {}
    for j, i in enumerate(layers):
        weights = torch.rand(probs[i].shape, generator=torch.Generator().manual_seed(50 + i)) + 0.1
        block = s.rows(j)

        def edit(p: torch.Tensor, w: torch.Tensor = weights, rows: slice = block) -> torch.Tensor:
            q = p[rows] * w.to(p)
            out = p.clone()
            out[rows] = q / q.sum(-1, keepdim=True)
            return out

        edits[i] = edit
    with m.trace(s.tiled(blocks)):
        for i in layers:
            m.attention_probabilities[i] = edits[i](m.attention_probabilities[i])
        edited = m.logits.save()
    plan = []
    for i in layers:
        attention = s.hf_block(i).get_submodule(m.branch("attention", i).module)
        shape = torch.Size((blocks * probs[i].shape[0], *probs[i].shape[1:]))
        plan.append((attention, edits[i], _sinks(s, i) is not None, shape, s.passes_of(attention) if s.repeats else 1))
    with _softmax_edits(plan) as calls:
        expected = s.hf_logits(input_ids=s.tiled(blocks))
    for j, i in enumerate(layers):
        if calls[j] != 1:
            raise ConformanceError(
                f"attention_probabilities: layer {i}'s attention computed {calls[j]} softmaxes, expected 1",
                cause="softmax_count", layer=i,
            )
        rows = s.rows(j)
        assert_effect("attention_probabilities", f"setting attention_probabilities[{i}]", expected[rows], s.reference.logits, layer=i)
        worst = max(worst, assert_close(
            "attention_probabilities", f"logits after setting attention_probabilities[{i}]", edited[rows], expected[rows],
            cause="probabilities_mismatch", layer=i,
        ))
    return worst


def _repeat_kv(x: torch.Tensor, heads: int) -> torch.Tensor:
    return x.repeat_interleave(heads // x.shape[1], dim=1)


def check_qkv(s: Subject) -> float:
    """``queries``/``keys``/``values`` recompute the attention probabilities (scaled dot-product
    scores) and, with ``attention_heads_output``, the attention output through the output projection."""
    m, att = s.model, s.spec.attention
    layers = _served_layers("qkv", s, "queries")
    if not layers:
        return 0.0
    # Read together where the shared trace could; else one trace per name (their order varies).
    values = s.standard(READS["qkv"], separately=True)
    got = {name: {i: values[(name, i)] for i in layers} for name in ("queries", "keys", "values")}
    masks, outputs = s.record.attention_masks, s.record.attention_outputs
    probs_reference = _recorded_attentions(s, "qkv")
    worst = 0.0
    config = text_config(s.hf.config)
    for i in layers:
        q, k, v = got["queries"][i], got["keys"][i], got["values"][i]
        batch, seq = s.input_ids.shape
        n_heads = m.num_heads_per_layer[i]
        if q.shape[:3] != (batch, n_heads, seq) or k.shape[-2] != seq or k.shape[-1] != q.shape[-1] or n_heads % k.shape[1]:
            raise ConformanceError(
                f"qkv: layer {i} has queries {tuple(q.shape)}, keys {tuple(k.shape)}: not (batch, heads, seq, head_dim)",
                cause="qkv_shape", layer=i,
            )
        if att.score == "scaled_dot_product":
            scale = att.score_scale
            if scale is None:  # the HF module's own scale, else the textbook one
                hf_attention = s.hf_block(i).get_submodule(m.branch("attention", i).module)
                scale = getattr(hf_attention, "scaling", None) or q.shape[-1] ** -0.5
            elif isinstance(scale, str):
                scale = float(read_config(config, scale)) ** -0.5
            scores = q @ _repeat_kv(k, n_heads).transpose(-1, -2) * scale
            cap = read_config(config, att.score_softcap) if att.score_softcap else None
            if cap:
                scores = torch.tanh(scores / cap) * cap
            mask = masks[i]
            if isinstance(mask, dict):
                # Masks by use (the attention's, a convolution's...): the one shaped like the scores.
                shaped = [value for value in mask.values() if isinstance(value, torch.Tensor) and value.ndim == 4]
                if len(shaped) != 1:
                    raise ConformanceError(
                        f"qkv: layer {i}'s attention receives masks {sorted(mask)}, not one (batch, heads, q, k) mask",
                        cause="qkv_masks", layer=i,
                    )
                mask = shaped[0]
            causal = torch.full((seq, seq), float("-inf"), device=scores.device).triu(1)
            if mask is None:
                mask = causal
            elif mask.dtype == torch.bool:
                mask = torch.zeros(mask.shape, device=mask.device).masked_fill(~mask, float("-inf"))
            if mask.ndim == 4 and mask.shape[-2] == 1 and seq > 1:
                # A mask that broadcasts over the queries marks padded keys only: the module keeps
                # the causal order itself (GPT-1's and older GPT-2's own triangular buffer).
                mask = mask + causal
            # Some releases build the mask one key wider than the keys (room for a cache entry);
            # the attention itself reads only its first keys.shape[-2] columns, and so does this.
            scores = scores + mask[..., : k.shape[-2]]
            sink = _sinks(s, i)
            if isinstance(sink, torch.nn.Module):
                raise ConformanceError(
                    f"qkv: layer {i}'s sinks are computed per token by a module; declare attention.score = 'other'",
                    cause="sinks_per_token", layer=i,
                )
            if sink is not None:  # one more logit per head, dropped after the softmax
                column = sink.detach().float().reshape(1, -1, 1, 1).expand(*scores.shape[:-1], 1)
                probs = torch.cat([scores, column], dim=-1).softmax(-1)[..., :-1]
            else:
                probs = scores.softmax(-1)
            worst = max(worst, assert_close(
                "qkv", f"softmax(q k^T) of layer {i} vs attentions[{i}]", probs, probs_reference[i],
                cause="probabilities_not_softmax_qk", layer=i,
            ))
        if m.attention_heads_output.unavailable is None and att.output_projection:
            heads = values[("attention_heads_output", i)]
            if not att.gated_output:
                expected = (probs_reference[i] @ _repeat_kv(v, n_heads)).transpose(1, 2)
                worst = max(worst, assert_close(
                    "qkv", f"attention_heads_output[{i}] vs probabilities @ values", heads, expected,
                    cause="heads_output_not_probs_values", layer=i,
                ))
            projection = s.hf_block(i).get_submodule(f"{m.branch('attention', i).module}.{att.output_projection}")
            with torch.no_grad():
                projected = projection(heads.flatten(-2))
            worst = max(worst, assert_close(
                "qkv", f"{att.output_projection}(attention_heads_output[{i}]) vs attention output", projected, outputs[i],
                cause="heads_output_not_projection_input", layer=i,
            ))
    return worst


def check_padding(s: Subject) -> float:
    """A left-padded batch gives each prompt the logits and residual stream it gets alone, on its
    real tokens, and ``next_token_probs`` reads its last real token ("alone": plain transformers
    on that prompt's tokens, one forward per prompt; some models attend both ways inside the
    input, so no shorter prompt can share a forward with a longer one)."""
    m, n = s.model, s.num_layers
    prompts = ["The capital of France is", "Hi", "Once upon a time there was a small model that lived on a laptop"]
    if s.spec.limits.padding:  # declared: a padded batch must be refused before it runs
        try:
            with m.trace(prompts):
                m.logits.save()
        except CapabilityUnavailableError:
            return 0.0
        raise ConformanceError(
            "padding: the spec declares padded batches unavailable, but the runtime ran one", cause="served_despite_limit"
        )
    batch_states: list[Any] = []
    with m.trace(prompts):
        for i in range(n):
            batch_states.append(m.layers_output[i].save())
        batch_logits = m.logits.save()
        batch_probs = m.next_token_probs.save()
    encoded = m.tokenizer(prompts, return_tensors="pt", padding=True).to(s.input_ids.device)
    mask = encoded["attention_mask"].bool()
    alone_states, alone_logits = _hf_alone(s, [encoded["input_ids"][row][mask[row]] for row in range(len(prompts))])
    padded: list[Any] = []  # plain transformers on the same padded batch, computed when needed

    # expected(): plain transformers on the padded batch (`...`: the lambdas bind the row as defaults)
    def close(what: str, actual: torch.Tensor, alone: torch.Tensor, expected: Callable[..., torch.Tensor]) -> float:
        try:
            return assert_close("padding", what, actual, alone)
        except ConformanceError as error:
            # A model may itself compute a prompt slightly differently inside a longer padded
            # batch (float sums over more, masked, positions; sharp attention amplifies them):
            # nnspec then must give exactly what plain transformers gives on that batch. Only
            # rounding-sized differences qualify: a model whose padding changes a prompt's result
            # (a recurrence that reads the pad tokens) fails, and must declare a padding limit.
            if actual.shape != alone.shape or max_diff(actual, alone) > PADDING_ROUNDINGS[_DTYPE.get()]:
                raise
            if not padded:
                padded.append(_hf_padded_batch(s, encoded))
            try:
                return assert_close("padding", what + " (vs plain transformers on the padded batch)", actual, expected())
            except ConformanceError:
                raise error from None

    worst = 0.0
    for row in range(len(prompts)):
        real = mask[row]
        logits = alone_logits[row][0]
        worst = max(worst, close(f"logits of prompt {row} in a padded batch", batch_logits[row][real], logits,
                                 lambda r=row, k=real: padded[0][1][r][k]))
        worst = max(worst, close(f"next_token_probs of prompt {row}", batch_probs[row], logits[-1].softmax(-1),
                                 lambda r=row: padded[0][1][r, -1].softmax(-1)))
        for i in range(n):
            worst = max(worst, close(f"layers_output[{i}] of prompt {row}", batch_states[i][row][real], alone_states[row][i][0],
                                     lambda r=row, k=real, i=i: padded[0][0][i][r][k]))
    return worst


def _hf_blocks_and_logits(s: Subject, **inputs: Any) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Plain transformers on ``inputs``: each block's output (its last call; the input's
    positions) and the logits."""
    element = s.spec.layer.hidden_element if s.spec.layer.returns == "tuple" else 0
    outputs: dict[int, torch.Tensor] = {}

    def keep(i: int) -> Callable:
        def hook(module: Any, args: Any, output: Any) -> None:
            outputs[i] = s.own(pick(output, element).detach()).clone()  # a looped block: its last call
        return hook

    handles = [s.hf_block(i).register_forward_hook(keep(i)) for i in range(s.num_layers)]
    try:
        with torch.no_grad():
            logits = s.hf(**inputs).logits
    finally:
        for handle in handles:
            handle.remove()
    return [outputs[i] for i in range(s.num_layers)], logits


def _hf_alone(s: Subject, prompts: list[torch.Tensor]) -> tuple[list[list[torch.Tensor]], list[torch.Tensor]]:
    """Plain transformers on each prompt's tokens alone: per prompt, each block's output and the
    logits (batch of one)."""
    runs = [_hf_blocks_and_logits(s, input_ids=p[None], **s.unpadded(p[None])) for p in prompts]
    return [states for states, _ in runs], [logits for _, logits in runs]


def _hf_padded_batch(s: Subject, encoded: Any) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Plain transformers on a left-padded batch (positions from the mask): each block's output
    and the logits."""
    return _hf_blocks_and_logits(s, **encoded, **_positions(s, encoded["attention_mask"]))


def _positions(s: Subject, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """``position_ids`` counted from the mask's first real token, for a model whose forward takes
    them; none for one that takes no positions (some releases derive them from the mask themselves)."""
    parameters = inspect.signature(type(s.hf).forward).parameters
    if "position_ids" not in parameters and not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return {}
    return {"position_ids": positions_from_mask(attention_mask)}


def _serves(s: Subject, name: str, i: int) -> bool:
    """Whether the model serves ``name`` on layer ``i`` (declared limits and non-softmax layers aside)."""
    accessor = getattr(s.model, name)
    if not accessor.serves(i):
        return False
    if name in ATTENTION_INTERNALS:
        return s.model.branch("attention", i).kind == "softmax" and accessor.port(i).available()
    return True


def check_read_order(s: Subject) -> float:
    """Every value of every layer read in one trace of its own, in the documented order
    (:data:`LAYER_ORDER`), equals the same value as the other rows read and prove against plain
    transformers (where the shared read failed: read alone, one trace per name), and the residual
    stream equals ``hidden_states``."""
    m, n = s.model, s.num_layers
    plan = s.plan(LAYER_ORDER)
    together: dict[tuple[str, int], Any] = {}
    with m.trace(s.input_ids) as tracer:
        for name, i in plan:
            together[(name, i)] = getattr(m, name)[i].save()
        tracer.stop()
    worst = 0.0
    for i in range(n):
        worst = max(worst, assert_close("read_order", f"layers_input[{i}] read in order", together[("layers_input", i)],
                                        s.stream_input(i)))
        expected = s.stream_output(i)
        if expected is not None:
            worst = max(worst, assert_close("read_order", f"layers_output[{i}] read in order", together[("layers_output", i)], expected))
    checked = s.standard(READS["read_order"], separately=True)
    for name, i in plan:
        worst = max(worst, assert_close("read_order", f"{name}[{i}] read in order vs the value the other rows check",
                                        together[(name, i)], checked[(name, i)]))
    return worst


def check_mixer_states(s: Subject) -> float:
    """``mixer_states[i]`` equals the recurrent state plain transformers' own forward leaves in its
    cache for layer i (state-space, linear-attention and recurrent mixers); other layers, and models
    whose cache keeps no such state, refuse."""
    from ..runtime.ports import recurrent_state

    m = s.model
    accessor = m.mixer_states
    if accessor.unavailable is not None:
        return _expect_refusal("mixer_states", s, "mixer_states")
    layers = [i for i in range(s.num_layers) if accessor.serves(i)]
    for i in sorted(set(range(s.num_layers)) - set(layers)):
        _expect_refusal("mixer_states", s, "mixer_states", i)
    cache = s.record.cache
    if cache is None:
        with torch.no_grad():
            cache = cache_of(s.hf(s.input_ids, use_cache=True, **s.unpadded(s.input_ids)))
    expected = {i: recurrent_state(cache, i) for i in layers}
    if all(v is None for v in expected.values()):  # a model-specific cache: the runtime must say so
        try:
            with m.trace(s.input_ids):
                accessor[layers[0]].save()
        except CapabilityUnavailableError:
            return 0.0
        raise ConformanceError("mixer_states: plain transformers keeps no recurrent state in its cache, but nnspec served one")
    got: dict[int, Any] = {}
    with m.trace(s.input_ids):
        for i in layers:
            got[i] = accessor[i].save()
    worst = 0.0
    for i in layers:
        state = expected[i]
        if state is None:
            raise ConformanceError(
                f"mixer_states: plain transformers keeps no recurrent state for layer {i}", cause="reference_missing", layer=i
            )
        if float(state.abs().max()) == 0:
            raise ConformanceError(f"mixer_states: layer {i}'s state is all zero; the check cannot tell anything")
        worst = max(worst, assert_close("mixer_states", f"mixer_states[{i}] vs the cache's recurrent state", got[i], state))
    return worst


def check_attribution(s: Subject) -> float:
    """The TransformerLens-style cache helpers against plain transformers, from one cached forward:
    ``stack_activation`` / ``accumulated_resid`` equal ``hidden_states``; where the spec gives the
    per-head output, the per-head results (``stack_head_results``) summed over heads plus the
    projection's bias equal what the HF output projection returns (a forward hook on it); and
    where the map from the final norm's output to the logits is linear, the direct logit
    attribution's parts plus its constant equal plain transformers' logit of the top token (where
    it is not, the runtime must refuse the attribution)."""
    from ..attribution import attribution_refusal, head_results, logit_attribution
    from ..cache import run_with_cache

    m, n = s.model, s.num_layers
    wanted = {"layers_input", "layers_output", "attentions_output", "mixers_output", "mlps_output", "attention_heads_output"}
    cache = run_with_cache(m, s.input_ids, names_filter=lambda key: key.split(".")[0] in wanted, return_type="logits")
    stacked = cache.stack_activation("layers_output")
    accumulated = cache.accumulated_resid()
    assert isinstance(accumulated, torch.Tensor)  # no labels asked for: one stacked tensor
    worst = 0.0
    for i in range(n):
        worst = max(worst, assert_close("attribution", f"accumulated_resid()[{i}]", accumulated[i], s.stream_input(i)))
        expected = s.stream_output(i)
        if expected is not None:
            worst = max(worst, assert_close("attribution", f"stack_activation('layers_output')[{i}]", stacked[i], expected))
    heads = [i for i in range(n) if f"attention_heads_output.{i}" in cache] if s.spec.attention.output_projection else []
    if heads:
        projection = s.spec.attention.output_projection
        outputs: dict[int, torch.Tensor] = {}
        for i in heads:  # what the output projection returned in the reference forward
            if i not in s.record.projections:  # no such module: resolving it says why
                s.hf_block(i).get_submodule(f"{m.branch('attention', i).module}.{projection}")
                raise ConformanceError(
                    f"attribution: plain transformers never called layer {i}'s {projection}", cause="reference_missing", layer=i
                )
            outputs[i] = s.record.projections[i]
        results = cache.stack_head_results(return_labels=True)
        for i in heads:
            _, bias = head_results(m, i, cache[f"attention_heads_output.{i}"])
            by_head = torch.stack([r for r, label in zip(*results) if label.startswith(f"L{i}H")], 2)
            worst = max(worst, assert_close(
                "attribution", f"stack_head_results of layer {i} summed over heads + bias vs {projection} output",
                by_head.sum(2) + bias, outputs[i].reshape(by_head.shape[:2] + outputs[i].shape[-1:]),
            ))
    # The top token among the vocabulary's ids: some models' logits have more columns than the
    # vocabulary (CPM-Ant's before transformers 5.16 also score its learned prompt ids).
    tokens = s.reference.logits[:, -1, :m.vocab_size].argmax(-1)
    if attribution_refusal(m):
        try:
            logit_attribution(m, cache, tokens)
        except CapabilityUnavailableError:
            return worst
        raise ConformanceError(f"attribution: the attribution does not apply ({attribution_refusal(m)}), but the runtime served it")
    expected = s.reference.logits[torch.arange(len(tokens), device=tokens.device), -1, tokens]
    for per_head in (False, True) if heads else (False,):
        try:
            found = logit_attribution(m, cache, tokens, per_head=per_head)
        except CapabilityUnavailableError:
            if per_head:
                continue  # the attention's contribution is not its projection's output (a norm follows it)
            raise
        worst = max(worst, assert_close(
            "attribution", f"direct logit attribution{' per head' if per_head else ''}: parts + constant vs logits",
            found.contributions.sum(0) + found.constant, expected,
        ))
    return worst


#: Every check, in the order the matrix reports them.
#: The conformance rows, in the order they run: (name, check, short title for tables).
ROWS: tuple[tuple[str, Callable[[Subject], float], str], ...] = (
    ("layers_io", check_layers_io, "layers io"),
    ("contribution", check_contribution, "contrib"),
    ("residual", check_residual_kind, "residual"),
    ("token_mixing", check_token_mixing, "mixing"),
    ("project_on_vocab", check_project_on_vocab, "proj vocab"),
    ("logits", check_logits, "logits"),
    ("branch_inputs", check_branch_inputs, "branch in"),
    ("edit_layers_output", check_edit_layers_output, "edit layer"),
    ("edit_attentions_output", check_edit_attentions_output, "edit mixer"),
    ("edit_mlps_output", check_edit_mlps_output, "edit mlp"),
    ("steer", check_steer, "steer"),
    ("skip_layers", check_skip_layers, "skip"),
    ("attention_probabilities", check_attention_probabilities, "attn probs"),
    ("qkv", check_qkv, "qkv"),
    ("padding", check_padding, "padding"),
    ("mixer_states", check_mixer_states, "states"),
    ("read_order", check_read_order, "read order"),
    ("attribution", check_attribution, "attrib"),
)
CHECKS: dict[str, Callable[[Subject], float]] = {name: check for name, check, _ in ROWS}
#: Each row's short title (the matrix table's column heads).
TITLES: dict[str, str] = {name: title for name, _, title in ROWS}


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check on one subject.

    ``error`` is the message for people; tools read the structured fields: ``cause`` (a
    :data:`FailureCause`, ``None`` when the check passed), ``layer`` (where the failure was found,
    ``None`` when it is not about one layer), ``variant`` (the spec variant whose checkpoint was
    checked, ``None`` for the base checkpoint) and ``max_error`` (the measured difference of the
    failing comparison, ``None`` where nothing was measured)."""

    check: str
    passed: bool
    max_diff: float
    seconds: float
    error: str = ""
    cause: Optional[str] = None
    layer: Optional[int] = None
    variant: Optional[str] = None
    max_error: Optional[float] = None

    @property
    def label(self) -> str:
        """The check's name, with the variant in brackets where one was checked (``qkv [moe]``)."""
        return self.check if self.variant is None else f"{self.check} [{self.variant}]"


def failed_result(check: str, exc: BaseException, seconds: float = 0.0, variant: Optional[str] = None) -> CheckResult:
    """The :class:`CheckResult` of a check that raised ``exc``: the structured fields of a
    :class:`ConformanceError`, cause ``"error"`` for anything else."""
    if isinstance(exc, ConformanceError):
        cause, layer, worst = exc.cause, exc.layer, exc.max_error
    else:
        cause, layer, worst = "error", None, None
    return CheckResult(check, False, float("nan"), seconds, f"{type(exc).__name__}: {exc}", cause, layer, variant, worst)


def run_checks(subject: Subject, names: Optional[list[str]] = None) -> list[CheckResult]:
    """Run the named checks (default: all, in :data:`CHECKS` order) and report each one. The
    standard values the chosen checks read are read once for all of them (:meth:`Subject.sharing`)."""
    chosen = names or list(CHECKS)
    wanted = set().union(*(READS.get(name, set()) for name in chosen))
    results = []
    with comparing_in(subject.dtype), subject.sharing(wanted):
        for name in chosen:
            start = time.perf_counter()
            try:
                worst = CHECKS[name](subject)
                results.append(CheckResult(name, True, worst, time.perf_counter() - start))
            except Exception as exc:  # noqa: BLE001 - every failure is reported, not raised
                results.append(failed_result(name, exc, time.perf_counter() - start))
    return results
