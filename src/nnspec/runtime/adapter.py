"""Adapters: the compiled form of a spec, and how one is chosen for a loaded model.

``nnspec compile`` writes one :class:`Adapter` subclass per bundled spec into
``nnspec.generated``; :meth:`Adapter.from_file` builds the same thing at run time for a spec file
a user brings. At load the runtime asks the adapter for the *effective* spec of one model:
the base spec with every override whose condition holds (config values, installed versions).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, ClassVar, Mapping, Optional

from ..compiler.describe import branches_for_entry
from ..compiler.loader import deep_merge, load_spec_file
from ..compiler.records import Module, Read, Refused, Scores, Unembed
from ..compiler.rename import rename_dict
from ..compiler.schema import Condition, Spec
from ..errors import ModelStructureError


@cache
def installed_version(package: str) -> Optional[str]:
    """The installed version of ``package`` (``None`` when it is not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def _owner(config: Any, key: str) -> tuple[Any, str]:
    """The config object holding the last part of a dotted ``key``, and that part."""
    *parents, last = key.split(".")
    for part in parents:
        config = getattr(config, part)
    return config, last


def is_per_layer(config: Any, key: str) -> bool:
    """Whether ``key`` is a per-layer attribute of a heterogeneous config (transformers' per-layer
    configs: the value may differ between layers and is read from each layer's config)."""
    try:
        owner, last = _owner(config, key)
    except AttributeError:
        return False
    return last in (getattr(owner, "per_layer_attributes", None) or ())


def read_config(config: Any, key: str) -> Any:
    """``config.<key>`` for a dotted key (nested configs); raises ``AttributeError`` when absent,
    and :class:`ModelStructureError` for a key whose value differs by layer (see
    :func:`read_config_per_layer`)."""
    if is_per_layer(config, key):
        raise ModelStructureError(
            f"config key {key!r} is set per layer in this {type(config).__name__} (its value may differ between "
            "layers): it has no single value"
        )
    owner, last = _owner(config, key)
    return getattr(owner, last)


def read_config_per_layer(config: Any, key: str, num_layers: int) -> list[Any]:
    """``config.<key>`` for each of ``num_layers`` layers: each layer's own value where the config
    sets the key per layer, else the one value repeated; raises ``AttributeError`` when absent."""
    if not is_per_layer(config, key):
        return [read_config(config, key)] * num_layers
    owner, last = _owner(config, key)
    return [getattr(owner.per_layer_config[i], last) for i in range(num_layers)]


def text_config(config: Any) -> Any:
    """The config the standard names read: a composite (vision-language) config's text config,
    else the config itself."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else None
    return text if text is not None else config


def has_config(config: Any, key: str) -> bool:
    if is_per_layer(config, key):
        return True
    try:
        read_config(config, key)
    except AttributeError:
        return False
    return True


def config_is(config: Any, key: str, wanted: Any) -> bool:
    """Whether the config has ``key`` (dotted: nested) and its value equals ``wanted``."""
    return has_config(config, key) and read_config(config, key) == wanted


def version_in(versions: Optional[dict[str, Optional[str]]], package: str, specifier: str) -> bool:
    """Whether ``package``'s version (from ``versions``, else the installed one) satisfies the PEP 440
    ``specifier``; False when the package is not installed."""
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    found = (versions or {}).get(package, installed_version(package))
    return found is not None and Version(found) in SpecifierSet(specifier)


def attn_implementation_is(config: Any, implementation: str) -> bool:
    """Whether the model runs attention implementation ``implementation`` ('eager', 'sdpa'...)."""
    return getattr(config, "_attn_implementation", None) == implementation


def condition_holds(condition: Condition, config: Any, versions: Optional[dict[str, Optional[str]]] = None) -> bool:
    """Whether an override's ``when`` holds for this config and these package versions."""
    if condition.attn_implementation is not None and not attn_implementation_is(config, condition.attn_implementation):
        return False
    if not all(config_is(config, key, wanted) for key, wanted in condition.config.items()):
        return False
    return all(
        version_in(versions, package, getattr(condition, package))
        for package in ("transformers", "nnsight")
        if getattr(condition, package) is not None
    )


def _layer_entry(spec: Spec, config: Any, i: int) -> Any:
    per_layer = spec.attention.per_layer
    return None if per_layer is None else read_config(config, per_layer.config_key)[i]


def attention_for_layer(spec: Spec, config: Any, i: int) -> Any:
    """The token-mixer facts of layer ``i``: the spec's, with a hybrid model's per-layer module and
    kind substituted from the config list the spec names (kind "none": the layer has no mixer)."""
    if spec.attention.per_layer is None:
        return spec.attention
    return branches_for_entry(spec, _layer_entry(spec, config, i))[0]


def mlp_for_layer(spec: Spec, config: Any, i: int) -> Any:
    """The MLP facts of layer ``i``: the spec's, with a hybrid model's per-layer MLP path (``None``
    module: the layer has no MLP)."""
    if spec.attention.per_layer is None:
        return spec.mlp
    return branches_for_entry(spec, _layer_entry(spec, config, i))[1]


def backbone_aliases(spec: Spec) -> dict[str, str]:
    """NNsight ``rename`` aliases giving the module tree nnterp's users write:
    ``model.model.layers[i]``, ``model.model.ln_final``, ``model.model.embed_tokens``.

    The *backbone* is the module holding the blocks (the first component of ``modules.layers``:
    GPT-2's ``transformer``, OPT's ``model``, a vision-language wrapper's ``model``). It answers as
    ``model`` from the root, and its blocks, final norm and token embedding answer as ``layers``,
    ``ln_final`` and ``embed_tokens`` on it however deep they sit (OPT's ``model.decoder.layers``,
    a wrapper's ``model.language_model.layers``). Only paths the spec names are aliased; a spec
    whose blocks sit on the root module has no backbone and gets none.
    """
    parts = spec.modules.layers.split(".")
    if len(parts) < 2:
        return {}
    backbone = parts[0]
    aliases: dict[str, str] = {}
    if backbone != "model":
        aliases[backbone] = "model"
    for standard, path in (
        ("layers", spec.modules.layers),
        ("ln_final", spec.modules.ln_final),
        ("embed_tokens", spec.modules.embed_tokens),
    ):
        if path and path.startswith(f"{backbone}.") and path != f"{backbone}.{standard}":
            aliases[path] = f"{backbone}.{standard}"  # a dotted alias binds on the backbone
    return aliases


def merge_aliases(*maps: dict[str, Any]) -> dict[str, Any]:
    """Several ``rename`` maps as one: a path named in more than one gets every alias (a list)."""
    merged: dict[str, Any] = {}
    for aliases in maps:
        for path, alias in aliases.items():
            names = [alias] if isinstance(alias, str) else list(alias)
            if path in merged:
                known = [merged[path]] if isinstance(merged[path], str) else list(merged[path])
                names = known + [n for n in names if n not in known]
            merged[path] = names[0] if len(names) == 1 else names
    return merged


#: The record types a compiled adapter states its standard names with.
RECORD_TYPES = (Read, Module, Refused, Scores, Unembed)
#: Standard names whose record is a plain string (a kind).
KIND_NAMES = ("residual", "mixer_kind")


@dataclass(frozen=True)
class BoundRecords:
    """What every standard name reads on one model: the records of :mod:`nnspec.compiler.records`
    (``residual`` and ``mixer_kind`` are kind strings), as the model's adapter states them.

    Attributes:
        base: standard name -> record, for every layer a per-layer entry does not change.
        per_layer_key: a hybrid model's config key naming each layer's entry (None: every layer alike).
        per_layer: entry -> the records that differ on layers of that entry.
    """

    base: Mapping[str, Any]
    per_layer_key: Optional[str] = None
    per_layer: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def layer(self, config: Any, i: int) -> Mapping[str, Any]:
        """Layer ``i``'s records: the base, with its per-layer entry's differences."""
        if self.per_layer_key is None:
            return self.base
        entry = read_config(config, self.per_layer_key)[i]
        return {**self.base, **self.per_layer.get(entry, {})}


def describe_records(spec: Spec) -> BoundRecords:
    """``spec``'s records, computed in memory exactly as ``nnspec compile`` writes them into an
    adapter (for a spec with overrides applied, or an adapter built around a spec object)."""
    from ..compiler.describe import entry_records, per_layer_entries, records

    per_layer = spec.attention.per_layer
    return BoundRecords(
        {d.name: d.record for d in records(spec)},
        None if per_layer is None else per_layer.config_key,
        {entry: {d.name: d.record for d in entry_records(spec, entry)} for entry in per_layer_entries(spec)},
    )


class _ValidatedOnUse:
    """The ``spec`` of a compiled adapter: its ``spec_json`` parsed and validated the first time it
    is read (importing an adapter validates nothing), then kept on the class."""

    def __get__(self, instance: Any, owner: type) -> Spec:
        cached = owner.__dict__.get("_validated_spec")
        if cached is None:
            import json

            cached = Spec.model_validate(json.loads(owner.spec_json))  # type: ignore[attr-defined]
            owner._validated_spec = cached  # type: ignore[attr-defined]
        return cached


class Adapter:
    """One architecture's compiled spec.

    A compiled adapter states, as class attributes, what each standard name reads (the records of
    :mod:`nnspec.compiler.records`: ``attentions_output = Read(...)`` ...), its overrides as the
    branches of :meth:`overrides_for`, and the flattened spec as JSON text (``spec_json``).

    Attributes:
        name: the spec name.
        source: the spec file it was compiled from (relative to the bundled specs for bundled ones).
        lineage: spec names from the root ancestor down to this one (``extends`` chain).
        spec: the flattened base spec (validated from ``spec_json`` on first use).
        rename: NNsight aliases for the base spec (see :func:`rename_dict`).
        per_layer_key: a hybrid model's config key naming each layer's entry (None: every layer alike).
        per_layer: entry -> the records that differ on layers of that entry.
        requires_transformers: the transformers releases served at all (a PEP 440 specifier; None: every
            release that has the model type), with ``requires_reason`` saying why others are not.
    """

    name: ClassVar[str]
    source: ClassVar[str]
    lineage: ClassVar[tuple[str, ...]]
    spec: ClassVar[Spec] = _ValidatedOnUse()  # type: ignore[assignment]
    rename: ClassVar[dict[str, str]]
    per_layer_key: ClassVar[Optional[str]] = None
    per_layer: ClassVar[dict[str, dict[str, Any]]] = {}
    requires_transformers: ClassVar[Optional[str]] = None
    requires_reason: ClassVar[str] = ""

    @classmethod
    def from_file(cls, path: Path | str) -> "Adapter":
        """Build an adapter from a spec file (``extends`` may name bundled specs): the spec is
        compiled in memory exactly as ``nnspec compile`` compiles the bundled ones."""
        from ..compiler.codegen import class_name, render_adapter

        loaded = load_spec_file(path)
        text = render_adapter(loaded, str(loaded.file))
        namespace: dict[str, Any] = {"__name__": f"nnspec.generated.<{loaded.spec.name}>"}
        exec(compile(text, f"<adapter compiled from {loaded.file}>", "exec"), namespace)  # noqa: S102
        compiled = namespace[class_name(loaded.spec.name)]
        compiled._validated_spec = loaded.spec  # already validated by the loader
        return compiled()

    @classmethod
    def overrides_for(cls, config: Any, versions: Optional[dict[str, Optional[str]]] = None) -> list[dict[str, Any]]:
        """The spec patches whose condition holds for this text config and these package versions,
        in order. Compiled adapters state each override as a branch of their own; this reads the
        spec's ``overrides`` (adapters built around a spec object)."""
        return [o.set for o in cls.spec.overrides if condition_holds(o.when, config, versions)]

    def record(self, name: str, config: Any = None, layer: Optional[int] = None) -> Any:
        """What standard value ``name`` reads (a record of :mod:`nnspec.compiler.records`, or a
        string for ``residual`` / ``mixer_kind``), for the base spec: on a hybrid model, with
        ``config`` and ``layer``, the record of that layer."""
        if layer is not None and self.per_layer_key is not None:
            entry = read_config(config, self.per_layer_key)[layer]
            found = self.per_layer.get(entry, {})
            if name in found:
                return found[name]
        return getattr(type(self), name)

    def records_for(self, spec: Spec) -> BoundRecords:
        """What each standard name reads under ``spec``: for the adapter's own base spec, the
        records its class states (the generated code itself); for a spec with overrides applied,
        that spec compiled in memory the same way."""
        stated = {name: value for name, value in vars(type(self)).items()
                  if isinstance(value, RECORD_TYPES) or (name in KIND_NAMES and isinstance(value, str))}
        if spec is self.spec and "layers_output" in stated:
            return BoundRecords(stated, self.per_layer_key, self.per_layer)
        return describe_records(spec)

    def effective(self, config: Any, versions: Optional[dict[str, Optional[str]]] = None) -> Spec:
        """The spec for one model: the base with every matching override applied, in order."""
        patches = self.overrides_for(config, versions)
        if not patches:
            return self.spec
        merged = self.spec.model_dump()
        for patch in patches:
            merged = deep_merge(merged, patch)
        return Spec.model_validate(merged)

    def rename_for(self, spec: Spec) -> dict[str, str]:
        return self.rename if spec is self.spec else rename_dict(spec)

    def config_value(self, config: Any, attribute: str) -> Any:
        """A standard attribute (``num_layers``...) read through the spec's config key mapping;
        ``None`` when the spec reads no key, or when the config lacks a key the spec gives a
        fallback for (the caller applies the standard derivation)."""
        keys = self.spec.config
        key = keys.key(attribute)
        if key is None:
            return None
        if is_per_layer(config, key):
            raise ModelStructureError(
                f"spec {self.source!r}: config.{attribute} names config key {key!r}, which this "
                f"{type(config).__name__} sets per layer: read it with config_values_per_layer"
            )
        try:
            return read_config(config, key)
        except AttributeError:
            if keys.has_fallback(attribute):
                return None
            raise ModelStructureError(
                f"spec {self.source!r}: config.{attribute} names config key {key!r}, which "
                f"{type(config).__name__} does not have"
            ) from None

    def config_values_per_layer(self, config: Any, attribute: str, num_layers: int) -> list[Any]:
        """:meth:`config_value` for each layer: where the config sets the key per layer (a
        heterogeneous config, e.g. a larger head size on global-attention layers), each layer's
        own value; else the one value repeated. ``None`` entries as in :meth:`config_value`."""
        key = self.spec.config.key(attribute)
        if key is None or not is_per_layer(config, key):
            return [self.config_value(config, attribute)] * num_layers
        return read_config_per_layer(config, key, num_layers)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} from {self.source}>"
