"""Load-time checks: every spec path resolves in the module tree and every config key exists.

These are structural only (dictionary lookups on the meta model and the config) and never run a
forward pass; the semantic promises are checked by the conformance matrix.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import torch

from ..compiler.schema import Attention, BlockAttribute, Branch, Spec
from ..errors import InputError, ModelStructureError, closest
from .adapter import (
    BoundRecords,
    attention_for_layer,
    describe_records,
    has_config,
    is_per_layer,
    mlp_for_layer,
    read_config,
)


@dataclass(frozen=True)
class BranchFacts:
    """What the runtime needs about one branch beyond its spec, found at load."""

    scale: Optional[float] = None
    residual_position: Optional[int] = None  # positional index of `includes_residual` in forward()


@dataclass(frozen=True)
class LayerRecord:
    """One layer: what each standard name reads there (``reads``: the adapter's records, which the
    ports bind), and its branch facts from the spec, a hybrid model's per-layer module and kind
    already substituted (a branch the layer lacks has ``module = None``; a layer without a token
    mixer has kind ``"none"``), which say why a name is refused."""

    index: int
    attention: Attention  # the token mixer (attention or another kind)
    mlp: Branch
    reads: Mapping[str, Any] = field(default_factory=dict)

    def branch(self, name: str) -> Branch:
        """The branch called ``name``: ``"attention"`` (the token mixer) or ``"mlp"``."""
        if name not in ("attention", "mlp"):
            raise InputError(f"branch: expected 'attention' or 'mlp', got {name!r}")
        return self.attention if name == "attention" else self.mlp


def layer_records(spec: Spec, config: Any, num_layers: int, records: Optional[BoundRecords] = None) -> tuple[LayerRecord, ...]:
    """Every layer's :class:`LayerRecord`, computed once per model; ``records``: what the model's
    adapter states for ``spec`` (default: ``spec`` described in memory)."""
    records = records if records is not None else describe_records(spec)
    return tuple(
        LayerRecord(i, attention_for_layer(spec, config, i), mlp_for_layer(spec, config, i), records.layer(config, i))
        for i in range(num_layers)
    )


@dataclass(frozen=True)
class Structure:
    """Facts found while checking a model against its spec."""

    num_layers: int
    attention: BranchFacts = field(default_factory=BranchFacts)
    mlp: BranchFacts = field(default_factory=BranchFacts)
    #: Every layer's branch facts (see :func:`layer_records`).
    layers: tuple[LayerRecord, ...] = ()


def _nearest(root: torch.nn.Module, path: str) -> str:
    names = [name for name, _ in root.named_modules() if name]
    found = closest(path, names)
    if not found:
        parent = path.rsplit(".", 1)[0] if "." in path else ""
        found = [n for n in names if n.count(".") == path.count(".") and n.startswith(parent)][:5]
    return f" (closest: {', '.join(repr(f) for f in found)})" if found else ""


def _submodule(root: torch.nn.Module, path: str, key: str, source: str, where: str) -> torch.nn.Module:
    try:
        module = root.get_submodule(path)
    except AttributeError:
        raise ModelStructureError(
            f"{source}: {key} = {path!r} does not exist in {where}{_nearest(root, path)}"
        ) from None
    if module is None:  # pragma: no cover - get_submodule never returns None today
        raise ModelStructureError(f"{source}: {key} = {path!r} is None in {where}")
    return module


def module_absent(root: torch.nn.Module, path: str) -> bool:
    """Whether ``path`` is an attribute the model set to None (a module some configs do not build)."""
    parent, _, name = path.rpartition(".")
    try:
        owner = root.get_submodule(parent) if parent else root
    except AttributeError:
        return False
    return hasattr(owner, name) and getattr(owner, name) is None


def _config_key(config: Any, key: str, spec_key: str, source: str) -> Any:
    if is_per_layer(config, key):
        raise ModelStructureError(
            f"{source}: {spec_key} names config key {key!r}, which this {type(config).__name__} sets per layer "
            "(it may differ between layers): it needs one value"
        )
    if not has_config(config, key):
        names = [n for n in dir(config) if not n.startswith("_")]
        raise ModelStructureError(
            f"{source}: {spec_key} names config key {key!r}, which {type(config).__name__} does not have"
            f"{'' if not closest(key, names) else ' (closest: ' + ', '.join(repr(n) for n in closest(key, names)) + ')'}"
        )
    return read_config(config, key)


def config_keys_read(spec: Spec) -> list[tuple[str, str]]:
    """Every config key ``spec`` reads without a fallback, as ``(spec key path, config key)``:
    each must exist in every config of the model types the spec serves."""
    keys = [
        (f"config.{attribute}", key)
        for attribute in ("num_layers", "num_heads", "num_kv_heads", "hidden_size", "vocab_size", "head_dim")
        if (key := spec.config.key(attribute)) is not None and not spec.config.has_fallback(attribute)
    ]
    for name, branch in (("attention", spec.attention), ("mlp", spec.mlp)):
        if isinstance(branch.scale, str):
            keys.append((f"{name}.scale", branch.scale))
    if isinstance(spec.attention.score_scale, str):
        keys.append(("attention.score_scale", spec.attention.score_scale))
    if spec.attention.score_softcap:
        keys.append(("attention.score_softcap", spec.attention.score_softcap))
    keys += [(f"logits.transforms[{i}].key", t.key) for i, t in enumerate(spec.logits.transforms)]
    if spec.attention.per_layer is not None:
        keys.append(("attention.per_layer.config_key", spec.attention.per_layer.config_key))
    return keys


def block_attribute_value(blocks: Any, attribute: str, spec_key: str, source: str) -> float:
    """The number every block of ``blocks`` holds as ``attribute`` (a spec's ``{ block_attribute }``);
    raises :class:`ModelStructureError` naming ``spec_key`` when a block lacks it, it is not a
    number, or blocks hold different values (a single factor cannot describe them)."""
    values = []
    for i, block in enumerate(blocks):
        value = getattr(block, attribute, None)
        if value is None:
            names = [n for n in vars(block) if not n.startswith("_")]
            found = closest(attribute, names)
            raise ModelStructureError(
                f"{source}: {spec_key} names block attribute {attribute!r}, which block {i} ({type(block).__name__}) "
                "does not have" + (" (closest: " + ", ".join(repr(n) for n in found) + ")" if found else "")
            )
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ModelStructureError(
                f"{source}: {spec_key} names block attribute {attribute!r}, which is not a number on block {i} ({value!r})"
            )
        values.append(float(value))
    if len(set(values)) > 1:
        raise ModelStructureError(
            f"{source}: {spec_key} names block attribute {attribute!r}, whose value differs between blocks "
            f"({sorted(set(values))}); one factor cannot describe every block"
        )
    if not values:
        raise ModelStructureError(f"{source}: {spec_key} names block attribute {attribute!r}, but the model has no blocks")
    return values[0]


def _branch(
    blocks: torch.nn.ModuleList | torch.nn.Sequential, branch: Branch, name: str, config: Any, source: str, per_block: Optional[list] = None
) -> BranchFacts:
    for i, block in enumerate(blocks):
        facts = per_block[i] if per_block is not None else branch
        for key in ("module", "input", "contribution"):
            path = getattr(facts, key)
            if path is not None:
                _submodule(block, path, f"{name}.{key}", source, f"block {i} ({type(block).__name__})")
    scale = branch.scale
    if isinstance(scale, str):
        scale = _config_key(config, scale, f"{name}.scale", source)
    elif isinstance(scale, BlockAttribute):
        scale = block_attribute_value(blocks, scale.block_attribute, f"{name}.scale", source)
    position = None
    if branch.includes_residual is not None:
        if branch.contribution_path is None:
            raise ModelStructureError(
                f"{source}: {name}.includes_residual = {branch.includes_residual!r} is set, but the branch has no module"
            )
        target = blocks[0].get_submodule(branch.contribution_path)
        # The class's forward: NNsight re-binds the instance's, and `self` comes first.
        parameters = list(inspect.signature(type(target).forward).parameters)[1:]
        if branch.includes_residual not in parameters:
            raise ModelStructureError(
                f"{source}: {name}.includes_residual = {branch.includes_residual!r} is not an argument of "
                f"{type(target).__name__}.forward{'' if not closest(branch.includes_residual, parameters) else ' (closest: ' + ', '.join(repr(p) for p in closest(branch.includes_residual, parameters)) + ')'}"
            )
        position = parameters.index(branch.includes_residual)
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float))):
        raise ModelStructureError(
            f"{source}: {name}.scale = {branch.scale!r} names a config value that is not a number ({scale!r})"
        )
    return BranchFacts(scale=None if scale is None else float(scale), residual_position=position)


def check_overrides(config: Any, spec: Spec, source: str) -> None:
    """Every config key an override's ``when`` names exists in ``config`` (else the override
    could never apply, silently)."""
    for i, override in enumerate(spec.overrides):
        for key in override.when.config:
            if not has_config(config, key):
                names = [n for n in dir(config) if not n.startswith("__")]
                found = closest(key, names)
                raise ModelStructureError(
                    f"{source}: overrides[{i}].when.config names {key!r}, which {type(config).__name__} does not have, "
                    "so the override could never apply"
                    + (" (closest: " + ", ".join(repr(n) for n in found) + ")" if found else "")
                )


def check_module_paths(spec: Spec, source: str) -> None:
    """The attention and MLP are two different modules, and no standard alias shadows another
    renamed module (a swapped attention / MLP pair)."""
    attention, mlp = spec.attention.module, spec.mlp.module
    if attention is not None and attention == mlp:
        raise ModelStructureError(f"{source}: attention.module and mlp.module are both {attention!r}; they must differ")
    aliases = {attention: "self_attn", mlp: "mlp"}
    for path, alias in aliases.items():
        if path is not None and alias != path and alias in aliases and aliases[alias] != alias:
            raise ModelStructureError(
                f"{source}: {'attention' if alias == 'self_attn' else 'mlp'}.module = {path!r} would take the standard "
                f"name {alias!r}, which is the block's own {alias!r} module ({'mlp' if alias == 'mlp' else 'attention'} "
                "in this spec); are attention.module and mlp.module swapped?"
            )


def check_structure(
    root: torch.nn.Module, config: Any, spec: Spec, source: str, records: Optional[BoundRecords] = None
) -> Structure:
    """Check ``spec`` against ``root`` (a meta or real HF model) and ``config`` (``records``: what the
    adapter states for ``spec``, kept on each layer record).

    Raises:
        ModelStructureError: naming the spec file, the key, the missing path or config key and the
        closest real ones.
    """
    where = type(root).__name__
    for key in ("embed_tokens", "layers", "ln_final", "lm_head"):
        path = getattr(spec.modules, key)
        if path is None:  # ln_final = "": the model has no final norm module
            continue
        if not (path in spec.modules.optional and module_absent(root, path)):
            _submodule(root, path, f"modules.{key}", source, where)
    for i, path in enumerate(spec.modules.before_lm_head):
        if not (path in spec.modules.optional and module_absent(root, path)):
            _submodule(root, path, f"modules.before_lm_head[{i}]", source, where)
    blocks = root.get_submodule(spec.modules.layers)
    if not isinstance(blocks, (torch.nn.ModuleList, torch.nn.Sequential)) or len(blocks) == 0:
        raise ModelStructureError(
            f"{source}: modules.layers = {spec.modules.layers!r} is a {type(blocks).__name__}, "
            "not a non-empty list of blocks"
        )
    for entry in spec.layer.skip_returns or ():
        if entry in ("hidden", ""):
            continue
        parameters = list(inspect.signature(type(blocks[0]).forward).parameters)[1:]
        if entry not in parameters:
            raise ModelStructureError(
                f"{source}: layer.skip_returns names {entry!r}, which is not an argument of "
                f"{type(blocks[0]).__name__}.forward (arguments: {', '.join(parameters)})"
            )
    for spec_key, key in config_keys_read(spec):
        if spec_key in ("config.num_heads", "config.num_kv_heads", "config.head_dim") and is_per_layer(config, key):
            continue  # a per-layer value: the model reads it layer by layer
        _config_key(config, key, spec_key, source)
    num_layers = read_config(config, spec.config.num_layers)
    if num_layers != len(blocks):
        raise ModelStructureError(
            f"{source}: config.{spec.config.num_layers} = {num_layers} but {spec.modules.layers!r} "
            f"holds {len(blocks)} blocks"
        )
    if spec.attention.per_layer is not None:
        key = spec.attention.per_layer.config_key
        entries = _config_key(config, key, "attention.per_layer.config_key", source)
        if not isinstance(entries, (list, tuple)) or len(entries) != len(blocks):
            raise ModelStructureError(
                f"{source}: attention.per_layer.config_key = {key!r} must list one entry per block ({len(blocks)}), got {entries!r}"
            )
    layers = layer_records(spec, config, len(blocks), records)
    per_block = [record.attention for record in layers]
    structure = Structure(
        num_layers=len(blocks),
        attention=_branch(blocks, spec.attention, "attention", config, source, per_block),
        mlp=_branch(blocks, spec.mlp, "mlp", config, source, [record.mlp for record in layers]),
        layers=layers,
    )
    softmax = [i for i, a in enumerate(per_block) if a.kind == "softmax" and a.module]
    attention = per_block[softmax[0]] if softmax else spec.attention
    if softmax:
        inner = {"attention.output_projection": attention.output_projection}
        for field in ("probabilities", "queries", "keys", "values", "per_head_output"):
            ref = getattr(attention, field)
            inner[f"attention.{field}.module"] = ref.module if ref is not None else None
        assert attention.module is not None  # softmax layers were chosen for having a module
        host = blocks[softmax[0]].get_submodule(attention.module)
        for key, path in inner.items():
            if path is not None:
                _submodule(host, path, key, source, f"{type(host).__name__} (block {softmax[0]}'s {attention.module})")
        if attention.sinks is not None:
            for i in softmax:  # an attribute on every softmax layer; None where a layer has no sinks
                path = per_block[i].module
                assert path is not None  # softmax layers were chosen for having a module
                module = blocks[i].get_submodule(path)
                if not hasattr(module, attention.sinks):
                    raise ModelStructureError(
                        f"{source}: attention.sinks = {attention.sinks!r} is not an attribute of {type(module).__name__} "
                        f"(block {i}'s {per_block[i].module})"
                    )
    return structure
