"""nnterp's renaming vocabulary, answered from nnspec's specs.

nnterp finds modules by lists of usual names and renames them; nnspec reads module paths from the
architecture's spec. This module gives nnterp users their names with spec-backed meanings:

- :class:`RenameConfig` (nnterp's fields) turns into a spec: :func:`adapter_for_rename_config`
  builds an adapter whose spec has the named module paths and config keys, checked against the
  model before any forward;
- the name tables (``LAYER_NAMES``...) and :func:`get_rename_dict` are computed from the bundled
  specs;
- the config helpers (:func:`get_num_attention_heads`...) read the key the model's spec names.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass
from enum import Enum
from functools import cache
from typing import Any, Literal, Optional, Union, cast

import torch

from ..compiler.schema import ATTENTION_KINDS, Spec
from ..errors import (
    InputError,
    InputTypeError,
    ModelStructureError,
    RenamingError,
    UnsupportedArchitectureError,
    closest,
)
from .adapter import Adapter, has_config, read_config, rename_dict
from .adapter import text_config as _text_config_of
from .structure import layer_records

IgnoreType = Literal["mlp", "attention"]
NameValue = Union[str, list[str], None]
KeyValue = Union[str, list[str], int, None]



class IOType(Enum):
    """Whether an accessor reads a module's input or its output."""

    INPUT = "input"
    OUTPUT = "output"


class AttnProbFunction(ABC):
    """nnterp's hook for locating attention probabilities inside an attention module.

    nnspec reads them from the spec's ``attention.probabilities`` source instead, so a
    StandardizedTransformer refuses a RenameConfig that sets ``attn_prob_source``; the class is
    here so that code defining one still imports.
    """

    @abstractmethod
    def get_attention_prob_source(self, attention_module: Any, return_module_source: bool = False) -> Any:
        """The envoy whose output is the attention probabilities (or the whole source)."""

    def __call__(self, attention_module: Any, return_module_source: bool = False) -> Any:
        return self.get_attention_prob_source(attention_module, return_module_source)


@dataclass
class RenameConfig:
    """Module names and config keys of a model, for architectures whose spec names others.

    Every name field takes one name or a list of candidates (the first that exists on the model is
    used). A name is a dotted path from the model root or a module name that occurs once
    (``"h"``); ``layers_name`` and ``ln_final_name`` are looked up under ``model_name`` first;
    ``attn_name`` / ``mlp_name`` are paths inside one block.

    Attributes:
        attn_name: the attention module in a block (the spec's ``attention.module``).
        mlp_name: the MLP module in a block (``mlp.module``).
        ln_final_name: the final norm (``modules.ln_final``).
        lm_head_name: the unembedding (``modules.lm_head``).
        model_name: the module holding the blocks, embedding and final norm; the spec's paths of
            those move under it.
        layers_name: the block list (``modules.layers``).
        attn_prob_source: not supported (nnspec reads attention probabilities from the spec's
            ``attention.probabilities`` source: write a spec file and pass ``spec=``).
        ignore_mlp: the blocks have no MLP module (``mlp.module`` empty).
        ignore_attn: the blocks have no attention module; accepted only where the spec says so
            already (a block without attention needs a spec stating what it computes).
        attn_head_config_key, hidden_size_config_key, vocab_size_config_key: the config key (or
            candidate keys, the first present wins) of the head count / hidden size / vocabulary
            size, or the number itself.
    """

    attn_name: NameValue = None
    mlp_name: NameValue = None
    ln_final_name: NameValue = None
    lm_head_name: NameValue = None
    model_name: NameValue = None
    layers_name: NameValue = None
    attn_prob_source: Optional[AttnProbFunction] = None
    ignore_mlp: Optional[bool] = None
    ignore_attn: Optional[bool] = None
    attn_head_config_key: KeyValue = None
    hidden_size_config_key: KeyValue = None
    vocab_size_config_key: KeyValue = None


_NAME_FIELDS = ("attn_name", "mlp_name", "ln_final_name", "lm_head_name", "model_name", "layers_name")
_KEY_FIELDS = {"attn_head_config_key": "num_heads", "hidden_size_config_key": "hidden_size", "vocab_size_config_key": "vocab_size"}
#: Standard name each RenameConfig name field gives its module (nnterp's aliases).
STANDARD_NAMES = {
    "model_name": "model", "layers_name": "layers", "attn_name": "self_attn", "mlp_name": "mlp",
    "ln_final_name": "ln_final", "lm_head_name": "lm_head",
}


# -- the bundled specs' names ---------------------------------------------------------------------


def _adapters() -> list[Adapter]:
    from .registry import adapter_by_name, spec_names

    return [adapter_by_name(name) for name in spec_names()]


def _backbone(spec: Spec) -> Optional[str]:
    parts = spec.modules.layers.split(".")
    return parts[0] if len(parts) > 1 else None


@cache
def name_tables() -> dict[str, tuple[str, ...]]:
    """Every module path the bundled specs name, by role (sorted): ``MODEL_NAMES`` (the modules
    holding the blocks, other than ``model``), ``LAYER_NAMES``, ``ATTENTION_NAMES`` and
    ``MLP_NAMES`` (block-relative), ``LN_NAMES``, ``LM_HEAD_NAMES``, ``EMBED_TOKENS_NAMES``."""
    found: dict[str, set[str]] = {k: set() for k in (
        "MODEL_NAMES", "LAYER_NAMES", "ATTENTION_NAMES", "MLP_NAMES", "LN_NAMES", "LM_HEAD_NAMES", "EMBED_TOKENS_NAMES")}
    for adapter in _adapters():
        spec = adapter.spec
        backbone = _backbone(spec)
        if backbone and backbone != "model":
            found["MODEL_NAMES"].add(backbone)
        found["LAYER_NAMES"].add(spec.modules.layers)
        found["EMBED_TOKENS_NAMES"].add(spec.modules.embed_tokens)
        found["LM_HEAD_NAMES"].add(spec.modules.lm_head)
        if spec.modules.ln_final:
            found["LN_NAMES"].add(spec.modules.ln_final)
        per_layer = spec.attention.per_layer
        if spec.attention.module and spec.attention.kind in ATTENTION_KINDS:
            found["ATTENTION_NAMES"].add(spec.attention.module)
        if per_layer is not None:
            for entry, path in per_layer.modules.items():
                if path and per_layer.kinds.get(entry, spec.attention.kind) in ATTENTION_KINDS:
                    found["ATTENTION_NAMES"].add(path)
            found["MLP_NAMES"].update(p for p in per_layer.mlp_modules.values() if p)
        if spec.mlp.module:
            found["MLP_NAMES"].add(spec.mlp.module)
    return {key: tuple(sorted(values)) for key, values in found.items()}


@cache
def ignore_mlp_models() -> tuple[type, ...]:
    """The transformers causal-LM classes of the model types whose bundled spec has no MLP module."""
    import transformers
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    classes = []
    for adapter in _adapters():
        if adapter.spec.mlp.module is not None:
            continue
        for model_type in adapter.spec.model_types:
            name = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(model_type)
            cls = getattr(transformers, name, None) if name else None
            if isinstance(cls, type) and cls not in classes:
                classes.append(cls)
    return tuple(classes)


def expand_path_with_model(paths: list[str]) -> list[str]:
    """``paths`` plus, for each path starting with ``model.``, the same path under every other
    module the bundled specs hold blocks in (``model.layers`` -> ``transformer.layers``...)."""
    extra = [
        f"{backbone}.{path[len('model.'):]}"
        for backbone in name_tables()["MODEL_NAMES"]
        for path in paths
        if path.startswith("model.")
    ]
    return list(paths) + extra


def _keys_used(attribute: str) -> list[str]:
    counts = Counter(a.spec.config.key(attribute) for a in _adapters())
    counts.pop(None, None)
    return [key for key, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if key is not None]


def default_attn_head_config_keys() -> list[str]:
    """Config keys the bundled specs read for the head count, most used first (a new list)."""
    return _keys_used("num_heads")


def default_hidden_size_config_keys() -> list[str]:
    """Config keys the bundled specs read for the hidden size, most used first (a new list)."""
    return _keys_used("hidden_size")


def default_vocab_size_config_keys() -> list[str]:
    """Config keys the bundled specs read for the vocabulary size, most used first (a new list)."""
    return _keys_used("vocab_size")


def _names(value: NameValue, field: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        items = [value]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise InputTypeError(f"rename_config.{field}: expected a name or a list of names, got {type(value).__name__}")
    for item in items:
        if not isinstance(item, str) or not item:
            raise InputTypeError(f"rename_config.{field}: every name must be a non-empty string, got {item!r}")
    return items


def get_rename_dict(rename_config: Optional[RenameConfig] = None) -> dict[str, str]:
    """NNsight ``rename`` aliases, ``{native path or name: standard name}``.

    Without ``rename_config``: the union of the aliases of every bundled spec (model-level paths
    from the model root, e.g. ``"transformer.h": "layers"``; block-level paths relative to a block,
    e.g. ``"self_attention": "self_attn"``; the module holding the blocks where it is not
    ``model``, e.g. ``"transformer": "model"``). A path two specs would alias differently is left
    out. With ``rename_config``: its names are added, mapped to their standard names
    (``layers_name`` -> ``"layers"``...), over the union.
    """
    merged: dict[str, Optional[str]] = {}
    for adapter in _adapters():
        entries = dict(adapter.rename)
        backbone = _backbone(adapter.spec)
        if backbone and backbone != "model":
            entries[backbone] = "model"
        for path, alias in entries.items():
            if path in merged and merged[path] != alias:
                merged[path] = None  # two meanings: leave it out
            else:
                merged.setdefault(path, alias)
    result = {path: alias for path, alias in merged.items() if alias is not None}
    if rename_config is not None:
        check_rename_config_type(rename_config)
        for field, standard in STANDARD_NAMES.items():
            for name in _names(getattr(rename_config, field), field):
                result[name] = standard
    return result


# -- config helpers -------------------------------------------------------------------------------


def text_config(model: Any) -> Any:
    """The config the standard names read: the text config of a vision-language model, else the
    model's config. ``model`` is a model (anything with ``.config``) or a config."""
    config = getattr(model, "config", model)
    return _text_config_of(config)


def _spec_key(model: Any, attribute: str) -> Optional[str]:
    from .registry import adapter_for_model_type, model_types

    config = getattr(model, "config", model)
    for candidate in (getattr(config, "model_type", None), getattr(text_config(model), "model_type", None)):
        if candidate in model_types():
            return adapter_for_model_type(candidate).spec.config.key(attribute)
    return None


def _config_names(config: Any) -> list[str]:
    """The keys a config answers to (its own and its attribute map's aliases)."""
    own = list(config.to_dict()) if hasattr(config, "to_dict") else list(vars(config))
    return own + list(getattr(config, "attribute_map", None) or {})


def _config_number(model: Any, attribute: str, field: str, defaults: list[str], raise_error: bool,
                   rename_config: Optional[RenameConfig]) -> Optional[int]:
    override = getattr(rename_config, field, None) if rename_config is not None else None
    if isinstance(override, int) and not isinstance(override, bool):
        return override
    if override is not None and not isinstance(override, (str, list, tuple)):
        raise InputTypeError(f"rename_config.{field}: expected a config key, a list of keys or an int, got {override!r}")
    keys = [override] if isinstance(override, str) else list(override or [])
    spec_key = _spec_key(model, attribute)
    keys += [k for k in ([spec_key] if spec_key else []) + defaults if k not in keys]
    config = text_config(model)
    for key in keys:
        if has_config(config, key):
            return read_config(config, key)
    if raise_error:
        found = closest(keys[0], _config_names(config)) if keys else []
        raise RenamingError(
            f"{type(config).__name__} has none of the config keys {keys} for {attribute}"
            + (f" (closest: {', '.join(repr(f) for f in found)})" if found else "")
            + f"; pass RenameConfig({field}=<key or number>)"
        )
    return None


def get_num_attention_heads(model: Any, raise_error: bool = True, rename_config: Optional[RenameConfig] = None) -> Optional[int]:
    """The query head count: ``rename_config.attn_head_config_key`` (a key, keys or the number),
    else the key the model's spec reads, else the keys the bundled specs use. None (with
    ``raise_error=False``) or :class:`RenamingError` when no key is present."""
    return _config_number(model, "num_heads", "attn_head_config_key", default_attn_head_config_keys(), raise_error, rename_config)


def get_hidden_size(model: Any, raise_error: bool = True, rename_config: Optional[RenameConfig] = None) -> Optional[int]:
    """The residual width, looked up as :func:`get_num_attention_heads` does."""
    return _config_number(model, "hidden_size", "hidden_size_config_key", default_hidden_size_config_keys(), raise_error, rename_config)


def get_vocab_size(model: Any, raise_error: bool = True, rename_config: Optional[RenameConfig] = None) -> Optional[int]:
    """The vocabulary size, looked up as :func:`get_num_attention_heads` does."""
    return _config_number(model, "vocab_size", "vocab_size_config_key", default_vocab_size_config_keys(), raise_error, rename_config)


def get_ignores(model: Any, rename_config: Optional[RenameConfig] = None) -> list[str]:
    """Which branch modules the model's blocks lack, from its spec: ``"mlp"`` where some block has
    no MLP module (OPT's inline fc1/fc2, Mamba blocks), ``"attention"`` where some block has no
    attention module (a state-space or recurrent mixer); plus what ``rename_config`` ignores."""
    from .rawmodel import hf_module, resolve_adapter_for_module

    module = model if isinstance(model, torch.nn.Module) else hf_module(model)
    adapter = resolve_adapter_for_module(module)
    config = _text_config_of(module.config)
    spec = adapter.effective(config)
    n = read_config(config, spec.config.num_layers)
    ignores: list[str] = []
    records = layer_records(spec, config, n)
    if spec.limits.mlp_module or any(record.mlp.module is None for record in records):
        ignores.append("mlp")
    attention = [record.attention for record in records]
    if spec.limits.attention_module or any(a.module is None or a.kind not in ATTENTION_KINDS for a in attention):
        ignores.append("attention")
    if rename_config is not None:
        if rename_config.ignore_mlp and "mlp" not in ignores:
            ignores.append("mlp")
        if rename_config.ignore_attn and "attention" not in ignores:
            ignores.append("attention")
    return ignores


# -- RenameConfig -> adapter ----------------------------------------------------------------------


def check_rename_config_type(rename_config: Any) -> None:
    missing = [f for f in (*_NAME_FIELDS, "ignore_mlp", "ignore_attn", *_KEY_FIELDS, "attn_prob_source")
               if not hasattr(rename_config, f)]
    if missing:
        raise InputTypeError(
            f"rename_config: expected a RenameConfig (nnspec.rename_utils.RenameConfig), got {type(rename_config).__name__}; "
            "or describe the architecture in a spec file and pass spec='path.toml'"
        )


class _Tree:
    """Name lookups in a model's module tree, with the closest names for errors."""

    def __init__(self, root: torch.nn.Module) -> None:
        self.root = root
        self.names = [name for name, _ in root.named_modules() if name]

    def exists(self, path: str, under: Optional[torch.nn.Module] = None) -> bool:
        try:
            module = (under or self.root).get_submodule(path)
        except AttributeError:
            return False
        return module is not None

    def nearby(self, name: str, names: Optional[list[str]] = None) -> str:
        pool = names if names is not None else [n for n in self.names if not any(p.isdigit() for p in n.split("."))]
        found = closest(name, pool)
        return f" (closest: {', '.join(repr(f) for f in found)})" if found else ""

    def model_level(self, field: str, value: NameValue, prefix: Optional[str]) -> Optional[str]:
        """The root path of the first candidate of ``value`` that exists (None: not given)."""
        candidates = _names(value, field)
        if not candidates:
            return None
        flat = [n for n in self.names if not any(p.isdigit() for p in n.split("."))]
        for name in candidates:
            for path in ([f"{prefix}.{name}"] if prefix else []) + [name]:
                if self.exists(path):
                    return path
            matches = [n for n in flat if n.endswith("." + name)]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise RenamingError(
                    f"rename_config.{field}={name!r} names several modules of {type(self.root).__name__} "
                    f"({', '.join(repr(m) for m in matches)}); give the full path of one"
                )
        raise RenamingError(
            f"rename_config.{field}={value!r}: {type(self.root).__name__} has no module of that name"
            f"{self.nearby(candidates[0])}"
        )

    def block_level(self, field: str, value: NameValue, block: torch.nn.Module) -> Optional[str]:
        candidates = _names(value, field)
        if not candidates:
            return None
        for name in candidates:
            if self.exists(name, block):
                return name
        inside = [n for n, _ in block.named_modules() if n]
        raise RenamingError(
            f"rename_config.{field}={value!r}: block 0 ({type(block).__name__}) has no module of that name"
            f"{self.nearby(candidates[0], inside)}"
        )


def _base_path(spec: Spec) -> Optional[str]:
    """The longest common module path of the blocks and the token embedding (``model``,
    ``transformer``, ``model.decoder``...), None when they share none."""
    common = []
    for a, b in zip(spec.modules.layers.split("."), spec.modules.embed_tokens.split(".")):
        if a != b:
            break
        common.append(a)
    return ".".join(common) or None


def _meta_model(config: Any, spec: Spec, trust_remote_code: bool) -> torch.nn.Module:
    """The model ``config`` builds, on the meta device (no weights), to look names up in."""
    from .loading import auto_class

    with torch.device("meta"):
        return auto_class(config, spec).from_config(copy.deepcopy(config), trust_remote_code=trust_remote_code)


def adapter_for_rename_config(
    adapter: Adapter,
    rename_config: RenameConfig,
    config: Any,
    model: Any = None,
    trust_remote_code: bool = False,
) -> Adapter:
    """An adapter whose spec is ``adapter``'s with the paths and keys ``rename_config`` names.

    ``model`` is the loaded module to look names up in (None or a path: the module tree is built
    from ``config`` on the meta device). Every named module is looked up before anything runs;
    list values pick the first name that exists. A fixed number for a config key is written into
    the text config where the config lacks the spec's key (it must agree where present).

    Raises:
        RenamingError: a named module or config key does not exist (the field, and the closest
            existing names), or the renamed spec fails the structural check.
        InputError: ``attn_prob_source`` or ``ignore_attn`` asked of a spec that cannot honour it.
    """
    from .structure import check_structure

    check_rename_config_type(rename_config)
    rc = rename_config
    spec = adapter.spec
    if rc.attn_prob_source is not None:
        raise InputError(
            "rename_config.attn_prob_source: nnspec reads attention probabilities from the spec's "
            "attention.probabilities source, not a function; describe it in a spec file and pass spec='path.toml'"
        )
    text = _text_config_of(config)
    root = model if isinstance(model, torch.nn.Module) else _meta_model(config, spec, trust_remote_code)
    tree = _Tree(root)
    data = spec.model_dump()
    modules = data["modules"]
    old_paths = dict(modules)

    base = _base_path(spec)
    new_base = tree.model_level("model_name", rc.model_name, None)
    if new_base is not None and base is not None:
        def moved(path: Optional[str]) -> Optional[str]:
            if path is None or path == new_base or path.startswith(new_base + ".") or not path.startswith(base + "."):
                return path
            return f"{new_base}.{path[len(base) + 1:]}"

        for key in ("embed_tokens", "layers", "ln_final"):
            modules[key] = moved(modules[key])
        modules["before_lm_head"] = [moved(p) for p in modules["before_lm_head"]]
        for key in ("embed_tokens", "layers"):
            if not tree.exists(modules[key]):
                raise RenamingError(
                    f"rename_config.model_name={rc.model_name!r}: the spec's modules.{key} ({old_paths[key]!r}) "
                    f"would be {modules[key]!r} under it, which does not exist{tree.nearby(modules[key])}; "
                    f"give {'layers_name' if key == 'layers' else 'the module paths'} too"
                )
    prefix = new_base or base
    layers = tree.model_level("layers_name", rc.layers_name, prefix)
    if layers is not None:
        blocks = root.get_submodule(layers)
        if not isinstance(blocks, (torch.nn.ModuleList, torch.nn.Sequential)) or len(blocks) == 0:
            raise RenamingError(
                f"rename_config.layers_name={rc.layers_name!r}: {layers!r} is a {type(blocks).__name__}, not a "
                "non-empty list of blocks"
            )
        modules["layers"] = layers
    ln_final = tree.model_level("ln_final_name", rc.ln_final_name, prefix)
    if ln_final is not None:
        modules["ln_final"] = ln_final
    lm_head = tree.model_level("lm_head_name", rc.lm_head_name, None)
    if lm_head is not None:
        modules["lm_head"] = lm_head
    renamed = {old_paths["ln_final"]: modules["ln_final"]}
    renamed.update(dict(zip(old_paths["before_lm_head"], modules["before_lm_head"])))
    modules["optional"] = [renamed.get(p, p) for p in modules["optional"] if renamed.get(p, p) in
                           [modules["ln_final"], *modules["before_lm_head"]]]

    per_layer = spec.attention.per_layer
    block = cast(torch.nn.ModuleList, root.get_submodule(modules["layers"]))[0] if (rc.attn_name or rc.mlp_name) else None
    attn = tree.block_level("attn_name", rc.attn_name, block) if block is not None else None
    if attn is not None:
        if per_layer is not None and per_layer.modules:
            raise InputError(
                f"rename_config.attn_name: the {adapter.name!r} spec names the token mixer per layer "
                "(attention.per_layer.modules); one attn_name cannot say that: pass spec='path.toml'"
            )
        data["attention"]["module"] = attn
    if rc.ignore_mlp and rc.mlp_name:
        raise InputError("rename_config: ignore_mlp=True and mlp_name name no MLP and an MLP at once; drop one")
    mlp = tree.block_level("mlp_name", rc.mlp_name, block) if block is not None else None
    if mlp is not None or rc.ignore_mlp:
        if per_layer is not None and per_layer.mlp_modules:
            raise InputError(
                f"rename_config: the {adapter.name!r} spec names the MLP per layer (attention.per_layer.mlp_modules); "
                "mlp_name / ignore_mlp cannot say that: pass spec='path.toml'"
            )
        data["mlp"]["module"] = mlp
    if rc.ignore_attn and spec.attention.module is not None:
        raise InputError(
            f"rename_config.ignore_attn=True: the {adapter.name!r} spec's blocks have an attention module "
            f"({spec.attention.module!r}); a block without attention needs a spec saying what it computes: "
            "pass spec='path.toml'"
        )

    for field, attribute in _KEY_FIELDS.items():
        value = getattr(rc, field)
        if value is None:
            continue
        current = spec.config.key(attribute)
        if isinstance(value, int) and not isinstance(value, bool):
            key = current or {"num_heads": "num_attention_heads"}.get(attribute, attribute)
            if has_config(text, key):
                if read_config(text, key) != value:
                    raise RenamingError(
                        f"rename_config.{field}={value} but the config's {key!r} is {read_config(text, key)!r}"
                    )
            else:
                setattr(text, key, value)
            data["config"][attribute] = key
            continue
        keys = _names(value, field)
        chosen = next((k for k in keys if has_config(text, k)), None)
        if chosen is None:
            found = closest(keys[0], _config_names(text))
            raise RenamingError(
                f"rename_config.{field}={value!r}: {type(text).__name__} has no such key"
                + (f" (closest: {', '.join(repr(f) for f in found)})" if found else "")
            )
        data["config"][attribute] = chosen

    try:
        new_spec = Spec.model_validate(data)
    except Exception as error:  # pydantic's ValidationError: a name that is not a module path
        raise RenamingError(f"rename_config does not give a valid spec: {error}") from None
    attrs = {
        "name": adapter.name,
        "source": f"{adapter.source} with rename_config",
        "lineage": adapter.lineage,
        "spec": new_spec,
        "rename": rename_dict(new_spec),
    }
    renamed_adapter = type(type(adapter).__name__, (Adapter,), attrs)()
    try:
        check_structure(root, text, renamed_adapter.effective(text), renamed_adapter.source)
    except RenamingError:
        raise
    except ModelStructureError as error:
        raise RenamingError(str(error)) from None
    return renamed_adapter


# -- checks ---------------------------------------------------------------------------------------


def _structural_check(std_model: Any, model_name: str) -> None:
    from .model import StandardizedModel
    from .rawmodel import facts_for_module, hf_module
    from .structure import check_structure

    try:
        if isinstance(std_model, StandardizedModel):
            check_structure(std_model._module, _text_config_of(std_model._module.config), std_model.spec,
                            std_model.adapter.source)
        else:
            facts_for_module(hf_module(std_model))
    except (ModelStructureError, UnsupportedArchitectureError) as error:
        if isinstance(error, RenamingError):
            raise
        raise RenamingError(f"{model_name}: {error}") from None


def check_model_renaming(
    std_model: Any,
    model_name: str,
    ignores: list[IgnoreType],
    allow_dispatch: bool,
    allow_multimodal: bool = False,
) -> None:
    """Run nnspec's load-time structural check on ``std_model``: every path and config key of its
    spec exists (no forward). ``ignores``, ``allow_dispatch`` and ``allow_multimodal`` are taken for
    nnterp compatibility: the spec already says which branches each layer has. Raises
    :class:`RenamingError`."""
    _structural_check(std_model, model_name)


def check_io(std_model: Any, model_name: str, ignores: list[IgnoreType]) -> None:
    """Run nnspec's load-time structural check on ``std_model`` (as :func:`check_model_renaming`;
    the shapes of the standard values are proven per spec by the conformance matrix and
    ``nnspec check MODEL``). Raises :class:`RenamingError`."""
    _structural_check(std_model, model_name)
