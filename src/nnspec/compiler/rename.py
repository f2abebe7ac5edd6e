"""The NNsight aliases that give a spec's native module paths their standard names."""

from __future__ import annotations

from .schema import ATTENTION_KINDS, Spec


def rename_dict(spec: Spec) -> dict[str, str]:
    """NNsight ``rename`` aliases giving the standard module names (native path -> alias).

    Model-level paths are keyed from the root; block-level paths are relative to a block, so they
    bind on every block. Aliases equal to the native name are left out, and so are aliases of a
    path inside a module of the alias's name (``self_attn.0`` in a block whose ``self_attn`` is a
    list of attention sublayers): binding one would hide that module.
    """
    wanted = {
        spec.modules.layers: "layers",
        spec.modules.embed_tokens: "embed_tokens",
        spec.modules.ln_final: "ln_final",
        spec.modules.lm_head: "lm_head",
    }
    wanted.pop(None, None)  # a model without a final norm module
    # Block-level paths: a hybrid's per-layer paths too. A path that plays different roles on
    # different layers (Nemotron-H's `mixer` is Mamba, attention or MLP) keeps its own name.
    per_layer = spec.attention.per_layer
    kinds = {} if per_layer is None else per_layer.kinds
    roles: dict[str, set[str]] = {}

    def mixer_alias(kind: str) -> str:
        return "self_attn" if kind in ATTENTION_KINDS else "mixer"

    if spec.attention.module and spec.attention.kind != "none":
        roles.setdefault(spec.attention.module, set()).add(mixer_alias(spec.attention.kind))
    if per_layer is not None:
        for entry, kind in kinds.items():
            path = per_layer.modules.get(entry, spec.attention.module)
            if path and kind != "none":
                roles.setdefault(path, set()).add(mixer_alias(kind))
        for entry, path in per_layer.modules.items():
            if path and entry not in kinds:
                roles.setdefault(path, set()).add(mixer_alias(spec.attention.kind))
        for path in per_layer.mlp_modules.values():
            if path:
                roles.setdefault(path, set()).add("mlp")
    if spec.mlp.module:
        roles.setdefault(spec.mlp.module, set()).add("mlp")
    for path, aliases in roles.items():
        if len(aliases) == 1:
            wanted[path] = next(iter(aliases))
    return {
        path: alias for path, alias in wanted.items()
        if path is not None and path != alias and not path.startswith(alias + ".")
    }
