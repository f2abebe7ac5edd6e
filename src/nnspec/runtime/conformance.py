"""Conformance checks: every contract row of the standard interface against plain transformers.

A :class:`Subject` is one tiny checkpoint loaded twice: as the plain transformers class the runtime
builds (eager attention, float32) giving the ground truth through ``output_hidden_states`` and torch
forward hooks, and as a :class:`StandardizedTransformer`. Each check compares the two on every
layer within :data:`TOLERANCE` and raises :class:`ConformanceError` naming the check, the layer
and the size of the disagreement. Edit checks also require the edit to change the logits, so a
check that compares two unchanged runs cannot pass by accident.

The same checks back the pytest matrix, ``nnspec matrix`` and ``nnspec check MODEL``.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional

import torch

from ..compiler.schema import ATTENTION_KINDS, BlockAttribute, Branch
from ..errors import CapabilityUnavailableError, ConformanceError
from .adapter import read_config, text_config
from .batching import positions_from_mask
from .ports import drop_prefix, pick, replace
from .readorder import ATTENTION_INTERNALS, LAYER_ORDER
from .structure import block_attribute_value

#: float32 tolerances for every comparison, in one place.
TOLERANCE = {"atol": 1e-5, "rtol": 1e-4}
#: The largest difference between a prompt in a padded batch and the prompt alone that may come
#: from float rounding over the longer, masked, sequence (beyond it, padding changed the result).
PADDING_ROUNDING = 1e-3
#: An edit must move the logits by more than this for its check to mean anything.
MIN_EFFECT = 1e-4

PROMPTS = ["The Eiffel Tower is in the city of", "Hello world, how are you?"]


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach().float() - b.detach().float()).abs().max())


def assert_close(check: str, what: str, actual: torch.Tensor, expected: torch.Tensor) -> float:
    """Raise :class:`ConformanceError` unless ``actual`` matches ``expected`` within :data:`TOLERANCE`."""
    if tuple(actual.shape) != tuple(expected.shape):
        raise ConformanceError(f"{check}: {what} has shape {tuple(actual.shape)}, expected {tuple(expected.shape)}")
    if not torch.allclose(actual.detach().float(), expected.detach().float(), **TOLERANCE):
        raise ConformanceError(
            f"{check}: {what} differs from plain transformers by {max_diff(actual, expected):.3g} "
            f"(tolerance atol={TOLERANCE['atol']}, rtol={TOLERANCE['rtol']})"
        )
    return max_diff(actual, expected)


def assert_effect(check: str, what: str, edited: torch.Tensor, base: torch.Tensor) -> None:
    if max_diff(edited, base) <= MIN_EFFECT:
        raise ConformanceError(f"{check}: {what} changed the logits by only {max_diff(edited, base):.2g}; the check cannot tell anything")


@dataclass
class Subject:
    """One checkpoint, loaded as plain transformers (``hf``) and through nnspec (``model``)."""

    name: str
    hf: Any
    model: Any
    input_ids: torch.Tensor
    reference: Any = field(init=False)

    def __post_init__(self) -> None:
        with torch.no_grad():
            self.reference = self.hf(self.input_ids, output_hidden_states=True)
        self._last_inputs: Optional[list[torch.Tensor]] = None

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
        if self._last_inputs is None:
            seen: dict[int, torch.Tensor] = {}

            def keep(i: int) -> Callable:
                def hook(module: Any, args: Any, kwargs: Any) -> None:
                    seen[i] = self.own(args[0] if args else next(iter(kwargs.values()))).detach().clone()

                return hook

            handles = [self.hf_block(j).register_forward_pre_hook(keep(j), with_kwargs=True) for j in range(self.num_layers)]
            try:
                with torch.no_grad():
                    self.hf(self.input_ids)
            finally:
                for handle in handles:
                    handle.remove()
            self._last_inputs = [seen[j] for j in range(self.num_layers)]
        return self._last_inputs[i]

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
        with torch.no_grad():  # no embeddings entry: the embedding module's own output
            embeddings = self.hf.get_input_embeddings()(self.input_ids)
        return [embeddings] + hs

    @property
    def num_layers(self) -> int:
        return self.model.num_layers

    @property
    def spec(self) -> Any:
        return self.model.spec

    def hf_block(self, i: int) -> torch.nn.Module:
        return self.hf.get_submodule(self.spec.modules.layers)[i]

    def hf_logits(self, hooks: list[tuple[torch.nn.Module, Callable]] = ()) -> torch.Tensor:
        """Plain-transformers logits with forward hooks ``(module, hook)`` installed for one run
        (on a looped block's last pass only, where blocks repeat)."""
        handles = [module.register_forward_hook(self.on_last_pass(module, hook)) for module, hook in hooks]
        try:
            with torch.no_grad():
                return self.hf(self.input_ids).logits
        finally:
            for handle in handles:
                handle.remove()

    def delta(self, i: int, scale: float = 1.0) -> torch.Tensor:
        """A fixed random edit for layer ``i``, shaped like the residual stream."""
        generator = torch.Generator().manual_seed(1000 + i)
        shape = self.reference.hidden_states[0].shape
        return scale * torch.randn(shape, generator=generator)

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


def load_subject(name: str, path: Any, spec: Any = None, **model_kwargs: Any) -> Subject:
    """Load ``path`` both ways; ``spec`` is passed to :class:`StandardizedTransformer` (None: registry)."""
    from .model import StandardizedTransformer

    model = StandardizedTransformer(str(path), spec=spec, attn_implementation="eager", dtype=torch.float32, **model_kwargs)
    # The plain model is the class the runtime builds (a vision-language wrapper's whole model).
    hf = type(model._module).from_pretrained(
        str(path), attn_implementation="eager", dtype=torch.float32,
        **{k: v for k, v in model_kwargs.items() if k == "trust_remote_code"},
    )
    hf.eval()
    vocab = int(read_config(text_config(hf.config), model.spec.config.vocab_size))
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(4, min(vocab, 300), (2, 9), generator=generator)
    return Subject(name=name, hf=hf, model=model, input_ids=input_ids)


# -- the checks -------------------------------------------------------------------------------------


def check_layers_io(s: Subject) -> float:
    """``layers_input[i] == hidden_states[i]`` and ``layers_output[i] == hidden_states[i+1]`` (i < L-1),
    in the standard numbering (:attr:`Subject.stream`)."""
    m, n = s.model, s.num_layers
    inputs, outputs = [], []
    with m.trace(s.input_ids):
        for i in range(n):
            inputs.append(m.layers_input[i].save())
            outputs.append(m.layers_output[i].save())
    worst = 0.0
    for i in range(n):
        worst = max(worst, assert_close("layers_io", f"layers_input[{i}]", inputs[i], s.stream_input(i)))
        expected = s.stream_output(i)
        if expected is not None:
            worst = max(worst, assert_close("layers_io", f"layers_output[{i}]", outputs[i], expected))
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
            raise ConformanceError(f"contribution: layer {i} has neither a token mixer nor an MLP")
        for plural, serves in expected.items():
            for suffix in ("input", "output"):
                accessor = getattr(m, f"{plural}_{suffix}")
                if serves and not accessor.serves(i) and accessor.unavailable is None:
                    raise ConformanceError(f"contribution: {plural}_{suffix}[{i}] is refused on a layer whose mixer is {kind!r}")
                if not serves:
                    try:  # the refusal comes from the index, before any forward runs
                        accessor[i]
                    except CapabilityUnavailableError:
                        continue
                    raise ConformanceError(f"contribution: {plural}_{suffix}[{i}] was served on a layer without that branch ({kind!r})")


def check_contribution(s: Subject) -> float:
    """``layers_input[i] + mixers_output[i] + mlps_output[i] == layers_output[i]`` on every layer,
    with ``attentions_output`` in place of ``mixers_output`` on attention layers and a branch the
    layer lacks left out (a Mamba block is ``layers_input + mixers_output``); accessors of a
    branch a layer lacks must refuse.

    Where the spec declares the identity unavailable, the runtime must refuse (not guess).
    """
    m, n = s.model, s.num_layers
    reason = s.spec.limits.contribution
    if reason:
        try:
            with m.trace(s.input_ids):
                getattr(m, f"{_mixer_accessor(s, 0) or 'mlps'}_output")[0]
        except CapabilityUnavailableError:
            return 0.0
        raise ConformanceError("contribution: the spec declares the identity unavailable, but the runtime served it")
    _check_refusals(s)
    rows = []
    with m.trace(s.input_ids):
        for i in range(n):
            x = m.layers_input[i].save()
            parts = {name: getattr(m, name)[i].save() for name in _branches(s, i)}
            y = m.layers_output[i].save()
            rows.append((x, parts, y))
    worst = 0.0
    for i, (x, parts, y) in enumerate(rows):
        total = x + sum(parts.values())
        worst = max(worst, assert_close("contribution", f"layer {i}: layers_input + {' + '.join(parts)} vs layers_output", total, y))
        for name, part in parts.items():
            if max_diff(part, torch.zeros_like(part)) == 0:
                raise ConformanceError(f"contribution: layer {i} has an all-zero {name}")
    return worst


def check_residual_kind(s: Subject) -> float:
    """The declared residual kind: in a sequential block the MLP reads the attention's
    contribution, in a parallel one it does not (checked by editing ``attentions_output[i]``)."""
    m, kind = s.model, s.spec.residual.kind
    if kind == "post_norm" or s.spec.limits.contribution:
        return 0.0
    worst = 0.0
    for i in range(s.num_layers):
        mixer = _mixer_accessor(s, i)
        if mixer is None or not m.mlps_input.serves(i):
            continue  # one branch only: nothing to order
        contribution = getattr(m, f"{mixer}_output")
        clean, edited = [], []
        with m.trace(s.input_ids):
            clean.append(m.mlps_input[i].save())
        with m.trace(s.input_ids):
            contribution[i] = contribution[i] + s.delta(i)
            edited.append(m.mlps_input[i].save())
        moved = max_diff(edited[0], clean[0])
        if kind == "parallel" and moved > TOLERANCE["atol"]:
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
    none) fails here whatever the other rows say."""
    m, n = s.model, s.num_layers
    if s.spec.limits.contribution:
        return 0.0
    plan = [(name, i) for i in range(n) for name in ("mixers", "mlps") if getattr(m, f"{name}_output").serves(i)]
    clean: dict[tuple[str, int], Any] = {}
    with m.trace(s.input_ids):
        for i in range(n):
            for name in ("mixers", "mlps"):
                if (name, i) in plan:
                    clean[(name, i)] = getattr(m, f"{name}_output")[i].save()
    worst = 0.0
    for name, i in plan:
        with m.trace(s.input_ids):
            inputs = getattr(m, f"{name}_input")
            value = inputs[i].clone()
            value[:, 0] = value[:, 0] + s.delta(i)[:, 0] * 10
            inputs[i] = value
            edited = getattr(m, f"{name}_output")[i].save()
        moved = max_diff(edited[:, 1:], clean[(name, i)][:, 1:])
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
        if name == "mlps" and moved > TOLERANCE["atol"]:
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
            raise ConformanceError("project_on_vocab: the spec declares it unavailable, but the runtime served it")
        return 0.0
    with m.trace(s.input_ids):
        projected = m.project_on_vocab(m.layers_output[-1]).save()
    outside = m.project_on_vocab(_last_layer_output(s))
    worst = assert_close("project_on_vocab", "project_on_vocab(layers_output[-1])", projected, s.reference.logits)
    return max(worst, assert_close("project_on_vocab", "project_on_vocab outside a trace", outside, s.reference.logits))


def _last_layer_output(s: Subject) -> torch.Tensor:
    captured: list[torch.Tensor] = []

    def grab(module: Any, args: Any, output: Any) -> None:
        captured.append(pick(output, s.spec.layer.hidden_element))

    s.hf_logits([(s.hf_block(s.num_layers - 1), grab)])
    return s.own(captured[-1])


def check_logits(s: Subject) -> float:
    """``logits`` and ``next_token_probs`` equal plain transformers, for token ids and for text prompts."""
    m = s.model
    with m.trace(s.input_ids):
        logits = m.logits.save()
        probs = m.next_token_probs.save()
    worst = assert_close("logits", "logits", logits, s.reference.logits)
    worst = max(worst, assert_close("logits", "next_token_probs", probs, s.reference.logits[:, -1].softmax(-1)))
    prompts = PROMPTS if not s.spec.limits.padding else PROMPTS[:1]  # no padded batch where padding is a limit
    encoded = m.tokenizer(prompts, return_tensors="pt", padding=True)
    with m.trace(prompts):
        text_logits = m.logits.save()
    positions = positions_from_mask(encoded["attention_mask"])
    with torch.no_grad():
        expected = s.hf(**encoded, position_ids=positions).logits
    mask = encoded["attention_mask"].bool()
    return max(worst, assert_close("logits", "logits of text prompts (real tokens)", text_logits[mask], expected[mask]))


def _hook_add(element: int, delta: torch.Tensor, flat: bool = False) -> Callable:
    def hook(module: Any, args: Any, output: Any) -> Any:
        target = pick(output, element)
        edited = target + (delta.reshape(target.shape) if flat else delta)
        return replace(output, element, edited)

    return hook


def _edit_check(
    s: Subject, check: str, accessor: Any, hook_for: Callable[[int, torch.Tensor], tuple], layers: Optional[list[int]] = None
) -> float:
    """``accessor`` (a name, or a function of the layer giving one) edited on ``layers`` (default: all)."""
    m, worst = s.model, 0.0
    base = s.reference.logits
    for i in range(s.num_layers) if layers is None else layers:
        name = accessor(i) if callable(accessor) else accessor
        delta = s.delta(i)
        with m.trace(s.input_ids):
            values = getattr(m, name)
            values[i] = values[i] + delta
            edited = m.logits.save()
        expected = s.hf_logits([hook_for(i, s.widen(delta))])
        assert_effect(check, f"{name}[{i}] += delta", expected, base)
        worst = max(worst, assert_close(check, f"logits after {name}[{i}] += delta", edited, expected))
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
    """``steer`` equals adding ``factor * vector`` to the chosen blocks' outputs with hooks."""
    m, n = s.model, s.num_layers
    vector = torch.randn(m.residual_shape, generator=torch.Generator().manual_seed(7))
    element = s.spec.layer.hidden_element
    worst = 0.0
    for layers, positions in (([0, n - 1], None), ([n // 2], [1, -1])):
        with m.trace(s.input_ids):
            m.steer(layers=layers, steering_vector=vector, factor=1.5, positions=positions)
            steered = m.logits.save()
        delta = torch.zeros_like(s.reference.hidden_states[0])
        if positions is None:
            delta += 1.5 * vector
        else:
            delta[:, positions] += 1.5 * vector
        expected = s.hf_logits([(s.hf_block(i), _hook_add(element, s.widen(delta))) for i in layers])
        assert_effect("steer", f"steer(layers={layers})", expected, s.reference.logits)
        worst = max(worst, assert_close("steer", f"logits after steer(layers={layers}, positions={positions})", steered, expected))
    return worst


def check_skip_layers(s: Subject) -> float:
    """``skip_layers(i, j)`` equals blocks i..j returning their input unchanged."""
    m, n = s.model, s.num_layers
    start, end = (1, n - 1) if n > 2 else (0, 0)
    with m.trace(s.input_ids):
        m.skip_layers(start, end)
        skipped = m.logits.save()
    element = s.spec.layer.hidden_element
    hidden: dict[int, torch.Tensor] = {}

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
    plan = [(name, i) for i in range(n) for name in (_mixer_accessor(s, i), "mlps" if m.mlps_input.serves(i) else None) if name]
    got: dict[tuple[str, int], Any] = {}
    with m.trace(s.input_ids):
        embeddings = m.token_embeddings.save()
        for name, i in plan:
            got[(name, i)] = getattr(m, f"{name}_input")[i].save()
    seen: dict[tuple[str, int], Any] = {}

    def recorder(key: tuple[str, int]) -> Callable:
        def hook(module: Any, args: Any, kwargs: Any) -> None:
            value = args[0] if args else next(iter(kwargs.values()))
            batch, seq = s.reference.hidden_states[0].shape[:2]
            seen[key] = s.own(value.reshape((batch, seq + s.prefix) + value.shape[-1:]))  # a looped block: last call

        return hook

    handles = []
    for name, i in plan:
        module = s.hf_block(i).get_submodule(m.branch("mlp" if name == "mlps" else "attention", i).input_path)
        handles.append(module.register_forward_pre_hook(recorder((name, i)), with_kwargs=True))
    try:
        s.hf_logits()
    finally:
        for handle in handles:
            handle.remove()
    with torch.no_grad():  # ground truth from transformers' own accessor, not the spec's path
        expected = s.hf.get_input_embeddings()(s.input_ids)
    worst = assert_close("branch_inputs", "token_embeddings vs get_input_embeddings()(input_ids)", embeddings, expected)
    for name, i in plan:
        worst = max(worst, assert_close("branch_inputs", f"{name}_input[{i}]", got[(name, i)], seen[(name, i)]))
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


def _expect_refusal(check: str, s: Subject, accessor: str, layer: int = 0) -> float:
    """Where the spec declares a capability unavailable, the runtime must refuse with the reason."""
    try:
        with s.model.trace(s.input_ids):
            getattr(s.model, accessor)[layer]
    except CapabilityUnavailableError:
        return 0.0
    raise ConformanceError(f"{check}: the spec declares {accessor} unavailable, but the runtime served it")


def _sinks(s: Subject, i: int) -> Optional[torch.Tensor]:
    """Layer ``i``'s learned sink logits, one per head, where the spec declares ``attention.sinks``
    and the layer has them (``None`` otherwise)."""
    name = s.model.branch("attention", i).sinks
    if name is None:
        return None
    return getattr(s.hf_block(i).get_submodule(s.model.branch("attention", i).module), name)


@contextlib.contextmanager
def _softmax_edit(
    module: torch.nn.Module,
    edit: Callable[[torch.Tensor], torch.Tensor],
    sink: bool = False,
    shape: Optional[torch.Size] = None,
    passes: int = 1,
) -> Iterator[list[int]]:
    """Apply ``edit`` to every softmax computed inside ``module``'s forward (plain torch, no NNsight).

    With ``sink``, the softmax runs over the real keys plus a last sink column: ``edit`` replaces
    the probabilities over the real keys and the sink column is kept as computed (the model drops
    it after the softmax), which is what setting ``attention_probabilities`` means there. With
    ``shape`` (the standard ``(batch, heads, q, k)``), a softmax computed with the heads folded
    into the batch, ``(batch*heads, q, k)``, is edited in the standard layout. Where the module runs
    ``passes`` times per forward (a looped block), only its last call is edited."""
    functional = torch.nn.functional
    original = functional.softmax
    inside, calls, entered = [False], [0], [0]

    def apply(probs: torch.Tensor) -> torch.Tensor:
        if shape is None or probs.shape == shape:
            return edit(probs)
        return edit(probs.reshape(shape)).reshape(probs.shape)

    def softmax(*args: Any, **kwargs: Any) -> torch.Tensor:
        out = original(*args, **kwargs)
        if inside[0]:
            calls[0] += 1
            if sink:
                return torch.cat([apply(out[..., :-1]), out[..., -1:]], dim=-1)
            return apply(out)
        return out

    def enter(*a: Any) -> None:
        entered[0] += 1
        inside[0] = entered[0] == passes

    def leave(*a: Any) -> None:
        inside[0] = False

    handles = [module.register_forward_pre_hook(enter), module.register_forward_hook(leave)]
    functional.softmax = softmax
    try:
        yield calls
    finally:
        functional.softmax = original
        for handle in handles:
            handle.remove()


def check_attention_probabilities(s: Subject) -> float:
    """``attention_probabilities[i]`` equals HF eager ``attentions[i]``; setting it equals the same
    edit made to the softmax output inside the attention computation (with attention sinks: to
    the softmax output's columns of the real keys, the sink column kept)."""
    m = s.model
    layers = _served_layers("attention_probabilities", s, "attention_probabilities")
    if not layers:
        return 0.0
    with torch.no_grad():
        reference = _attentions_by_layer(s, s.hf(s.input_ids, output_attentions=True).attentions)
    probs = {}
    with m.trace(s.input_ids):
        for i in layers:
            probs[i] = m.attention_probabilities[i].save()
    worst = 0.0
    for i in layers:
        worst = max(worst, assert_close("attention_probabilities", f"attention_probabilities[{i}]", probs[i], reference[i]))
    for i in layers:
        weights = torch.rand(probs[i].shape, generator=torch.Generator().manual_seed(50 + i)) + 0.1

        def edit(p: torch.Tensor, w: torch.Tensor = weights) -> torch.Tensor:
            q = p * w.to(p.dtype)
            return q / q.sum(-1, keepdim=True)

        with m.trace(s.input_ids):
            m.attention_probabilities[i] = edit(m.attention_probabilities[i])
            edited = m.logits.save()
        attention = s.hf_block(i).get_submodule(m.branch("attention", i).module)
        with _softmax_edit(attention, edit, sink=_sinks(s, i) is not None, shape=probs[i].shape,
                           passes=s.passes_of(attention) if s.repeats else 1) as calls:
            expected = s.hf_logits()
        if calls[0] != 1:
            raise ConformanceError(f"attention_probabilities: layer {i}'s attention computed {calls[0]} softmaxes, expected 1")
        assert_effect("attention_probabilities", f"setting attention_probabilities[{i}]", expected, s.reference.logits)
        worst = max(worst, assert_close("attention_probabilities", f"logits after setting attention_probabilities[{i}]", edited, expected))
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
    got: dict[str, dict] = {}
    for name in ("queries", "keys", "values"):  # one trace each: their order in the forward varies
        got[name] = {}
        with m.trace(s.input_ids):
            for i in layers:
                got[name][i] = getattr(m, name)[i].save()
    masks: dict[int, Any] = {}
    outputs: dict[int, torch.Tensor] = {}
    handles = []
    for i in layers:
        module = s.hf_block(i).get_submodule(m.branch("attention", i).module)
        # A looped block's attention runs once per pass: the last call's values are kept.
        handles.append(module.register_forward_pre_hook(lambda mod, a, kw, i=i: masks.__setitem__(i, kw.get("attention_mask")), with_kwargs=True))
        handles.append(module.register_forward_hook(lambda mod, a, out, i=i: outputs.__setitem__(i, pick(out, att.element))))
    try:
        with torch.no_grad():
            probs_reference = _attentions_by_layer(s, s.hf(s.input_ids, output_attentions=True).attentions)
    finally:
        for handle in handles:
            handle.remove()
    worst = 0.0
    config = text_config(s.hf.config)
    for i in layers:
        q, k, v = got["queries"][i], got["keys"][i], got["values"][i]
        batch, seq = s.input_ids.shape
        n_heads = m.num_heads_per_layer[i]
        if q.shape[:3] != (batch, n_heads, seq) or k.shape[-2] != seq or k.shape[-1] != q.shape[-1] or n_heads % k.shape[1]:
            raise ConformanceError(f"qkv: layer {i} has queries {tuple(q.shape)}, keys {tuple(k.shape)}: not (batch, heads, seq, head_dim)")
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
                        f"qkv: layer {i}'s attention receives masks {sorted(mask)}, not one (batch, heads, q, k) mask"
                    )
                mask = shaped[0]
            if mask is None:
                mask = torch.full((seq, seq), float("-inf")).triu(1)
            elif mask.dtype == torch.bool:
                mask = torch.zeros(mask.shape).masked_fill(~mask, float("-inf"))
            scores = scores + mask
            sink = _sinks(s, i)
            if isinstance(sink, torch.nn.Module):
                raise ConformanceError(
                    f"qkv: layer {i}'s sinks are computed per token by a module; declare attention.score = 'other'"
                )
            if sink is not None:  # one more logit per head, dropped after the softmax
                column = sink.detach().float().reshape(1, -1, 1, 1).expand(*scores.shape[:-1], 1)
                probs = torch.cat([scores, column], dim=-1).softmax(-1)[..., :-1]
            else:
                probs = scores.softmax(-1)
            worst = max(worst, assert_close("qkv", f"softmax(q k^T) of layer {i} vs attentions[{i}]", probs, probs_reference[i]))
        if m.attention_heads_output.unavailable is None and att.output_projection:
            with m.trace(s.input_ids):
                heads = m.attention_heads_output[i].save()
            if not att.gated_output:
                expected = (probs_reference[i] @ _repeat_kv(v, n_heads)).transpose(1, 2)
                worst = max(worst, assert_close("qkv", f"attention_heads_output[{i}] vs probabilities @ values", heads, expected))
            projection = s.hf_block(i).get_submodule(f"{m.branch('attention', i).module}.{att.output_projection}")
            with torch.no_grad():
                projected = projection(heads.flatten(-2))
            worst = max(worst, assert_close("qkv", f"{att.output_projection}(attention_heads_output[{i}]) vs attention output", projected, outputs[i]))
    return worst


def check_padding(s: Subject) -> float:
    """A left-padded batch gives each prompt the logits and residual stream it gets alone, on its
    real tokens, and ``next_token_probs`` reads its last real token."""
    m, n = s.model, s.num_layers
    prompts = ["The capital of France is", "Hi", "Once upon a time there was a small model that lived on a laptop"]
    if s.spec.limits.padding:  # declared: a padded batch must be refused before it runs
        try:
            with m.trace(prompts):
                m.logits.save()
        except CapabilityUnavailableError:
            return 0.0
        raise ConformanceError("padding: the spec declares padded batches unavailable, but the runtime ran one")
    batch_states: list[Any] = []
    with m.trace(prompts):
        for i in range(n):
            batch_states.append(m.layers_output[i].save())
        batch_logits = m.logits.save()
        batch_probs = m.next_token_probs.save()
    encoded = m.tokenizer(prompts, return_tensors="pt", padding=True)
    mask = encoded["attention_mask"].bool()
    padded: list[Any] = []  # plain transformers on the same padded batch, computed when needed

    def close(what: str, actual: torch.Tensor, alone: torch.Tensor, expected: Callable[[], torch.Tensor]) -> float:
        try:
            return assert_close("padding", what, actual, alone)
        except ConformanceError as error:
            # A model may itself compute a prompt slightly differently inside a longer padded
            # batch (float sums over more, masked, positions; sharp attention amplifies them):
            # nnspec then must give exactly what plain transformers gives on that batch. Only
            # rounding-sized differences qualify: a model whose padding changes a prompt's result
            # (a recurrence that reads the pad tokens) fails, and must declare a padding limit.
            if max_diff(actual, alone) > PADDING_ROUNDING:
                raise
            if not padded:
                padded.append(_hf_padded_batch(s, encoded))
            try:
                return assert_close("padding", what + " (vs plain transformers on the padded batch)", actual, expected())
            except ConformanceError:
                raise error from None

    worst = 0.0
    for row, prompt in enumerate(prompts):
        alone: list[Any] = []
        with m.trace(prompt):
            for i in range(n):
                alone.append(m.layers_output[i].save())
            logits = m.logits.save()
        real = mask[row]
        worst = max(worst, close(f"logits of prompt {row} in a padded batch", batch_logits[row][real], logits[0],
                                 lambda r=row, k=real: padded[0][1][r][k]))
        worst = max(worst, close(f"next_token_probs of prompt {row}", batch_probs[row], logits[0, -1].softmax(-1),
                                 lambda r=row: padded[0][1][r, -1].softmax(-1)))
        for i in range(n):
            worst = max(worst, close(f"layers_output[{i}] of prompt {row}", batch_states[i][row][real], alone[i][0],
                                     lambda r=row, k=real, i=i: padded[0][0][i][r][k]))
    return worst


def _hf_padded_batch(s: Subject, encoded: Any) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Plain transformers on a left-padded batch (positions from the mask): each block's output
    and the logits."""
    element = s.spec.layer.hidden_element if s.spec.layer.returns == "tuple" else 0
    outputs: dict[int, torch.Tensor] = {}

    def keep(i: int) -> Callable:
        def hook(module: Any, args: Any, output: Any) -> None:
            outputs[i] = s.own(pick(output, element).detach()).clone()  # a looped block: its last call
        return hook

    handles = [s.hf_block(i).register_forward_hook(keep(i)) for i in range(s.num_layers)]
    try:
        with torch.no_grad():
            logits = s.hf(**encoded, position_ids=positions_from_mask(encoded["attention_mask"])).logits
    finally:
        for handle in handles:
            handle.remove()
    return [outputs[i] for i in range(s.num_layers)], logits


def _serves(s: Subject, name: str, i: int) -> bool:
    """Whether the model serves ``name`` on layer ``i`` (declared limits and non-softmax layers aside)."""
    accessor = getattr(s.model, name)
    if not accessor.serves(i):
        return False
    if name in ATTENTION_INTERNALS:
        return s.model.branch("attention", i).kind == "softmax" and accessor.port(i).available()
    return True


def check_read_order(s: Subject) -> float:
    """Every value of every layer read in one trace, in the documented order (:data:`LAYER_ORDER`),
    equals the same value read alone in its own trace (which the other rows prove against plain
    transformers), and the residual stream equals ``hidden_states``."""
    m, n = s.model, s.num_layers
    plan = [(name, i) for i in range(n) for name in LAYER_ORDER if _serves(s, name, i)]
    together: dict[tuple[str, int], Any] = {}
    with m.trace(s.input_ids):
        for name, i in plan:
            together[(name, i)] = getattr(m, name)[i].save()
    worst = 0.0
    for i in range(n):
        worst = max(worst, assert_close("read_order", f"layers_input[{i}] read in order", together[("layers_input", i)],
                                        s.stream_input(i)))
    for name in LAYER_ORDER:
        layers = [i for other, i in plan if other == name]
        if not layers:
            continue
        alone: dict[int, Any] = {}
        with m.trace(s.input_ids):
            for i in layers:
                alone[i] = getattr(m, name)[i].save()
        for i in layers:
            worst = max(worst, assert_close("read_order", f"{name}[{i}] read in order vs alone", together[(name, i)], alone[i]))
    return worst


def check_mixer_states(s: Subject) -> float:
    """``mixer_states[i]`` equals the recurrent state plain transformers' own forward leaves in its
    cache for layer i (state-space, linear-attention and recurrent mixers); other layers, and models
    whose cache keeps no such state, refuse."""
    from .ports import cache_of, recurrent_state

    m = s.model
    accessor = m.mixer_states
    if accessor.unavailable is not None:
        return _expect_refusal("mixer_states", s, "mixer_states")
    layers = [i for i in range(s.num_layers) if accessor.serves(i)]
    for i in sorted(set(range(s.num_layers)) - set(layers)):
        _expect_refusal("mixer_states", s, "mixer_states", i)
    with torch.no_grad():
        cache = cache_of(s.hf(s.input_ids, use_cache=True))
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
        if expected[i] is None:
            raise ConformanceError(f"mixer_states: plain transformers keeps no recurrent state for layer {i}")
        if float(expected[i].abs().max()) == 0:
            raise ConformanceError(f"mixer_states: layer {i}'s state is all zero; the check cannot tell anything")
        worst = max(worst, assert_close("mixer_states", f"mixer_states[{i}] vs the cache's recurrent state", got[i], expected[i]))
    return worst


def check_attribution(s: Subject) -> float:
    """The TransformerLens-style cache helpers against plain transformers, from one cached forward:
    ``stack_activation`` / ``accumulated_resid`` equal ``hidden_states``; where the spec gives the
    per-head output, the per-head results (``stack_head_results``) summed over heads plus the
    projection's bias equal what the HF output projection returns (a forward hook on it); and
    where the map from the final norm's output to the logits is linear, the direct logit
    attribution's parts plus its constant equal plain transformers' logit of the top token (where
    it is not, the runtime must refuse the attribution)."""
    from .attribution import attribution_refusal, head_results, logit_attribution
    from .cache import run_with_cache

    m, n = s.model, s.num_layers
    wanted = {"layers_input", "layers_output", "attentions_output", "mixers_output", "mlps_output", "attention_heads_output"}
    cache = run_with_cache(m, s.input_ids, names_filter=lambda key: key.split(".")[0] in wanted, return_type="logits")
    stacked = cache.stack_activation("layers_output")
    accumulated = cache.accumulated_resid()
    worst = 0.0
    for i in range(n):
        worst = max(worst, assert_close("attribution", f"accumulated_resid()[{i}]", accumulated[i], s.stream_input(i)))
        expected = s.stream_output(i)
        if expected is not None:
            worst = max(worst, assert_close("attribution", f"stack_activation('layers_output')[{i}]", stacked[i], expected))
    heads = [i for i in range(n) if f"attention_heads_output.{i}" in cache] if s.spec.attention.output_projection else []
    if heads:
        outputs: dict[int, torch.Tensor] = {}

        def grab(i: int) -> Callable:
            def hook(module: Any, args: Any, output: Any) -> None:
                outputs[i] = s.own(pick(output, 0)).detach().clone()

            return hook

        projection = s.spec.attention.output_projection
        s.hf_logits([(s.hf_block(i).get_submodule(f"{m.branch('attention', i).module}.{projection}"), grab(i)) for i in heads])
        results = cache.stack_head_results(return_labels=True)
        for i in heads:
            _, bias = head_results(m, i, cache[f"attention_heads_output.{i}"])
            per_head = torch.stack([r for r, label in zip(*results) if label.startswith(f"L{i}H")], 2)
            worst = max(worst, assert_close(
                "attribution", f"stack_head_results of layer {i} summed over heads + bias vs {projection} output",
                per_head.sum(2) + bias, outputs[i].reshape(per_head.shape[:2] + outputs[i].shape[-1:]),
            ))
    tokens = s.reference.logits[:, -1].argmax(-1)
    if attribution_refusal(m):
        try:
            logit_attribution(m, cache, tokens)
        except CapabilityUnavailableError:
            return worst
        raise ConformanceError(f"attribution: the attribution does not apply ({attribution_refusal(m)}), but the runtime served it")
    expected = s.reference.logits[torch.arange(len(tokens)), -1, tokens]
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
CHECKS: dict[str, Callable[[Subject], float]] = {
    "layers_io": check_layers_io,
    "contribution": check_contribution,
    "residual": check_residual_kind,
    "token_mixing": check_token_mixing,
    "project_on_vocab": check_project_on_vocab,
    "logits": check_logits,
    "branch_inputs": check_branch_inputs,
    "edit_layers_output": check_edit_layers_output,
    "edit_attentions_output": check_edit_attentions_output,
    "edit_mlps_output": check_edit_mlps_output,
    "steer": check_steer,
    "skip_layers": check_skip_layers,
    "attention_probabilities": check_attention_probabilities,
    "qkv": check_qkv,
    "padding": check_padding,
    "mixer_states": check_mixer_states,
    "read_order": check_read_order,
    "attribution": check_attribution,
}


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check on one subject."""

    check: str
    passed: bool
    max_diff: float
    seconds: float
    error: str = ""


def run_checks(subject: Subject, names: Optional[list[str]] = None) -> list[CheckResult]:
    """Run the named checks (default: all, in :data:`CHECKS` order) and report each one."""
    results = []
    for name in names or list(CHECKS):
        start = time.perf_counter()
        try:
            worst = CHECKS[name](subject)
            results.append(CheckResult(name, True, worst, time.perf_counter() - start))
        except Exception as exc:  # noqa: BLE001 - every failure is reported, not raised
            results.append(CheckResult(name, False, float("nan"), time.perf_counter() - start, f"{type(exc).__name__}: {exc}"))
    return results
