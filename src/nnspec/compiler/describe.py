"""What each standard name resolves to on one architecture, computed from its spec.

:func:`records` turns a validated :class:`~nnspec.compiler.schema.Spec` into named
:mod:`~nnspec.compiler.records`, each with the spec keys it comes from; the code generator writes
them into the adapter with the file and line of each key. :func:`branches_for_entry` is the one
definition of how a hybrid model's per-layer entry changes a layer's branches (the runtime uses it
too).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Union

from .records import Module, Read, Record, Refused, Scores, Unembed
from .schema import ATTENTION_KINDS, Attention, BlockAttribute, Branch, SourceRef, Spec


@dataclass(frozen=True)
class Described:
    """One standard name's record and the spec keys (paths) it is derived from."""

    name: str
    record: Union[Record, str, None]
    keys: tuple[Any, ...]  # key paths; a list holds alternatives (the first a spec states)


def branches_for_entry(spec: Spec, entry: Any) -> tuple[Attention, Branch]:
    """The token mixer and MLP of a layer whose per-layer config entry is ``entry`` (hybrid
    models; without ``attention.per_layer`` the spec's own branches). A mixer of kind ``"none"``
    has no module; an MLP path of ``""`` means the layer has no MLP (module ``None``)."""
    attention, mlp = spec.attention, spec.mlp
    per_layer = attention.per_layer
    if per_layer is None:
        return attention, mlp
    update: dict[str, Any] = {}
    if entry in per_layer.modules:
        update["module"] = per_layer.modules[entry]
    if entry in per_layer.kinds:
        update["kind"] = per_layer.kinds[entry]
    if entry in per_layer.contributions:
        update["contribution"] = per_layer.contributions[entry] or None
    if update.get("kind", attention.kind) == "none":
        update["module"] = None
    layer_attention = attention.model_copy(update=update) if update else attention
    if entry in per_layer.mlp_contributions:
        layer_mlp = mlp.model_copy(update={"contribution": per_layer.mlp_contributions[entry] or None,
                                           "module": per_layer.mlp_modules.get(entry, mlp.module)})
    elif entry in per_layer.mlp_modules:
        path = per_layer.mlp_modules[entry] or None
        layer_mlp = mlp.model_copy(update={"module": path, "input": None if path is None else mlp.input,
                                           "contribution": None if path is None else mlp.contribution})
    else:
        layer_mlp = mlp
    return layer_attention, layer_mlp


def per_layer_entries(spec: Spec) -> list[str]:
    """The per-layer config entries the spec states something for, in a stable order."""
    per_layer = spec.attention.per_layer
    if per_layer is None:
        return []
    seen: dict[str, None] = {}
    for table in (per_layer.kinds, per_layer.modules, per_layer.contributions, per_layer.mlp_modules,
                  per_layer.mlp_contributions):
        for entry in table:
            seen.setdefault(entry, None)
    return list(seen)


def _element(element: Union[int, list[int]]) -> Union[int, tuple[int, ...]]:
    """A spec's tuple element as a record states it (a path into nested tuples as a tuple)."""
    return element if isinstance(element, int) else tuple(element)


def _scale(scale: Any) -> Union[str, float, None]:
    if isinstance(scale, BlockAttribute):
        return f"block.{scale.block_attribute}"
    return scale


def _source(host: str, ref: SourceRef) -> Read:
    # In the order the runtime applies them (split the heads, then the transposes).
    layout = tuple(name for name in ("split_heads", "transpose_last", "transpose") if getattr(ref, name))
    return Read(
        module=f"{host}.{ref.module}" if ref.module else host,
        port="source",
        ops=tuple(f"{op.name}#{op.occurrence}" for op in ref.ops),
        io=ref.io,
        index=ref.index,
        layout=layout,
    )


def branch_records(spec: Spec, attention: Attention, mlp: Branch, prefix: str = "") -> list[Described]:
    """The records of the branch names (``mixers_*``, ``attentions_*``, ``mlps_*``) for one layer's
    branches; ``prefix`` is the spec key path of a per-layer table, for the keys."""
    block = f"{spec.modules.layers}.{{i}}"
    limits = spec.limits

    def inside(path: Optional[str]) -> str:
        return f"{block}.{path}" if path else block

    out: list[Described] = []
    for plural, key, branch in (("attentions", "attention", attention), ("mixers", "attention", attention), ("mlps", "mlp", mlp)):
        keys = lambda *names, key=key: tuple((key, n) for n in names)  # noqa: E731
        no_branch: Optional[str] = None
        if branch.contribution_path is None or (isinstance(branch, Attention) and branch.kind == "none"):
            no_branch = "this layer has no MLP" if key == "mlp" else "this layer has no token mixer"
        elif plural == "attentions" and isinstance(branch, Attention) and branch.kind not in ATTENTION_KINDS:
            no_branch = f"the token mixer is of kind {branch.kind!r}, not attention; read mixers_* instead"
        if branch.module is not None and no_branch is None:
            module: Record = Module(inside(branch.module))
        else:
            limit = limits.mlp_module if key == "mlp" else limits.attention_module
            module = Refused(no_branch or limit or "the spec names no module for this branch (its computation sits in the block)")
        out.append(Described(plural, module, keys("module")))
        if no_branch is not None:
            for suffix in ("input", "output") + (("module_output",) if plural != "mixers" else ()):
                out.append(Described(f"{plural}_{suffix}", Refused(no_branch), keys("module")))
            continue
        out.append(Described(
            f"{plural}_input",
            Read(inside(branch.input_path), "input", flattened=branch.flattened),
            keys("input" if branch.input else "module", "flattened"),
        ))
        if limits.contribution:
            output: Record = Refused(limits.contribution)
            output_keys: tuple[tuple[Any, ...], ...] = (("limits", "contribution"),)
        else:
            output = Read(
                inside(branch.contribution_path),
                "contribution",
                element=_element(branch.element),
                minus_residual=branch.includes_residual,
                scale=_scale(branch.scale),
                bias_element=branch.bias_element,
                clone=branch.clone,
                flattened=branch.flattened,
            )
            output_keys = keys("contribution" if branch.contribution else "module", "element", "includes_residual",
                               "scale", "bias_element", "clone", "flattened")
        out.append(Described(f"{plural}_output", output, output_keys))
        if plural != "mixers":
            if branch.module is None:
                module_output: Record = module
            else:
                element = _element(branch.element) if branch.contribution_path == branch.module else 0
                module_output = Read(inside(branch.module), "output", element=element, flattened=branch.flattened)
            out.append(Described(f"{plural}_module_output", module_output,
                                 keys("module", "flattened") if isinstance(module_output, Read) else keys("module")))
    if prefix:  # the per-layer table first: it is what makes these layers differ
        out = [Described(d.name, d.record, (tuple(prefix.split(".")),) + d.keys) for d in out]
    return out


#: The standard names read inside the attention computation.
SOURCE_NAMES = ("attention_probabilities", "queries", "keys", "values", "attention_heads_output")


def source_records(spec: Spec, attention: Attention) -> list[Described]:
    """Attention internals (probabilities, q/k/v, per-head output) of a softmax-attention layer."""
    block = f"{spec.modules.layers}.{{i}}"
    declared = spec.limits.declared()
    out = []
    for name, field, capability in (
        ("attention_probabilities", "probabilities", "attention_probabilities"),
        ("queries", "queries", "qkv"),
        ("keys", "keys", "qkv"),
        ("values", "values", "qkv"),
        ("attention_heads_output", "per_head_output", "per_head_output"),
    ):
        ref = getattr(attention, field)
        if capability in declared:
            record: Record = Refused(declared[capability])
            keys: tuple[Any, ...] = (("limits", capability),)
        elif ref is None or attention.module is None:
            record = Refused(f"the spec declares no attention.{field} source")
            keys = ()
        else:
            record = _source(f"{block}.{attention.module}", ref)
            keys = ([("attention", field), ("attention", "sources")],)
        out.append(Described(name, record, keys))
    return out


def records(spec: Spec) -> list[Described]:
    """Every standard name's record for the spec's base facts (no override applied; a hybrid
    model's layers not named by a per-layer entry)."""
    modules = spec.modules
    block = f"{modules.layers}.{{i}}"
    out = [
        Described("token_embeddings", Read(modules.embed_tokens, "output", clone=True), (("modules", "embed_tokens"),)),
        Described("layers", Module(block), (("modules", "layers"),)),
        Described("layers_input", Read(block, "input"), (("modules", "layers"),)),
        Described(
            "layers_output",
            Read(block, "output", element=spec.layer.hidden_element if spec.layer.returns == "tuple" else None),
            (("modules", "layers"), ("layer", "returns"), ("layer", "hidden_element")),
        ),
        Described("residual", spec.residual.kind, (("residual", "kind"),)),
        Described("mixer_kind", spec.attention.kind, (("attention", "kind"),)),
    ]
    out += branch_records(spec, spec.attention, spec.mlp)
    softmax = spec.attention
    if softmax.kind != "softmax" and softmax.per_layer is not None:
        for entry in per_layer_entries(spec):
            candidate, _ = branches_for_entry(spec, entry)
            if candidate.kind == "softmax" and candidate.module:
                softmax = candidate
                break
    if softmax.kind == "softmax":
        out += source_records(spec, softmax)
        out.append(Described(
            "attention_scores",
            Scores(kind=softmax.score, scale=softmax.score_scale, softcap=softmax.score_softcap, sinks=softmax.sinks),
            tuple(("attention", k) for k in ("score", "score_scale", "score_softcap", "sinks")),
        ))
    else:
        reason = f"this model has no softmax attention (its token mixer is of kind {spec.attention.kind!r})"
        for name in ("attention_probabilities", "queries", "keys", "values", "attention_heads_output"):
            out.append(Described(name, Refused(reason), (("attention", "kind"),)))
    out.append(Described(
        "ln_final", Module(modules.ln_final) if modules.ln_final else Refused("the model has no final norm module"),
        (("modules", "ln_final"),),
    ))
    out.append(Described("lm_head", Module(modules.lm_head), (("modules", "lm_head"),)))
    out.append(Described(
        "unembed",
        Unembed(
            final=tuple(modules.final()),
            lm_head=modules.lm_head,
            transforms=tuple((t.op, t.key) for t in spec.logits.transforms),
            optional=tuple(modules.optional),
        ),
        (("modules", "ln_final"), ("modules", "before_lm_head"), ("logits", "transforms"), ("modules", "optional")),
    ))
    if spec.limits.project_on_vocab:
        out.append(Described("project_on_vocab", Refused(spec.limits.project_on_vocab), (("limits", "project_on_vocab"),)))
    if spec.limits.padding:
        out.append(Described("padding", Refused(spec.limits.padding), (("limits", "padding"),)))
    return out


def entry_records(spec: Spec, entry: str) -> list[Described]:
    """The records that differ from :func:`records` on layers whose per-layer entry is ``entry``."""
    attention, mlp = branches_for_entry(spec, entry)
    base = {d.name: d.record for d in branch_records(spec, spec.attention, spec.mlp)}
    base["mixer_kind"] = spec.attention.kind
    found = [Described("mixer_kind", attention.kind, (("attention", "per_layer"),))]
    found += branch_records(spec, attention, mlp, prefix="attention.per_layer")
    if attention.kind == "softmax" and attention.module:
        # Sources sit in this layer's own attention module (the base states the first softmax layer's).
        base.update({d.name: d.record for d in records(spec) if d.name in SOURCE_NAMES})
        found += [Described(d.name, d.record, (("attention", "per_layer"),) + d.keys) for d in source_records(spec, attention)]
    return [d for d in found if base.get(d.name) != d.record]


def changed_records(base: Spec, patched: Spec) -> list[Described]:
    """The records of ``patched`` that differ from those of ``base``."""
    before = {d.name: d.record for d in records(base)}
    return [d for d in records(patched) if before.get(d.name) != d.record]
