"""``nnspec scaffold``: draft a spec for a model type (or a checkpoint) and verify it.

The draft comes from :mod:`discover`'s tested facts; ``extends`` names the closest bundled spec
and the file states only what differs. The draft is then checked by the conformance matrix on a
tiny checkpoint, and the file's header says exactly which checks passed.
"""

from __future__ import annotations

import copy
import re
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import torch

from ..compiler.loader import BUNDLED_DIR, load_all, load_spec_file
from ..compiler.schema import SOURCE_SETS
from ..paths import PACKAGE_DIR
from .discover import (
    ATTENTION_NAME,
    MLP_NAME,
    NORM_NAME,
    Facts,
    Probe,
    ScaffoldError,
    _close,
    _first,
    find_layers,
    path_of,
    probe,
)
from .tinyconfig import checkpoint_options, tiny_overrides

if TYPE_CHECKING:
    from transformers import PreTrainedModel

#: The sources of an attention module calling the shared attention interface (the spec language's
#: named set; a draft states ``sources = "attention_interface"`` where that states the same).
INTERFACE_SOURCES = SOURCE_SETS["attention_interface"]
STANDARD_KEYS = {
    "num_layers": ("num_hidden_layers", "n_layer", "num_layers"),
    "num_heads": ("num_attention_heads", "n_head", "num_heads"),
    "num_kv_heads": ("num_key_value_heads", "num_kv_heads", "n_kv_heads", "multi_query_group_num"),
    "hidden_size": ("hidden_size", "n_embd", "d_model"),
    "vocab_size": ("vocab_size",),
    "head_dim": ("head_dim",),
}


def check_model_type(model_type: str) -> None:
    """Raise :class:`ScaffoldError` (with the closest names) unless transformers has a causal LM of this type."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    from ..errors import did_you_mean

    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise ScaffoldError(
            f"{model_type!r} is not a causal-LM model type of transformers{did_you_mean(model_type, MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)}"
        )


def build_model(model_type: str, options: Optional[dict[str, Any]] = None) -> tuple[PreTrainedModel, dict[str, Any]]:
    """A tiny random model of ``model_type`` (eager attention, float32, ``options`` set) and its
    config overrides."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from ..runtime.loading import dtype_kwarg

    check_model_type(model_type)
    try:
        overrides = tiny_overrides(model_type)
        config = AutoConfig.for_model(model_type, **{**overrides, **(options or {})})
        torch.manual_seed(0)
        try:
            model = AutoModelForCausalLM.from_config(config, attn_implementation="eager", **dtype_kwarg(torch.float32))
        except (ValueError, TypeError):
            model = AutoModelForCausalLM.from_config(config, **dtype_kwarg(torch.float32))
    except Exception as exc:  # noqa: BLE001 - config classes raise many kinds; the user gets one line
        raise ScaffoldError(_config_problem(model_type, exc)) from exc
    return model.eval(), overrides


def _config_problem(model_type: str, exc: BaseException) -> str:
    """One line saying why no tiny ``model_type`` model could be built, naming the config keys the
    error names (the innermost cause of a validation error says what is wrong)."""
    from transformers import AutoConfig

    cause: BaseException = exc
    while cause.__cause__ is not None:
        cause = cause.__cause__
    text = " ".join(str(cause).split()) or type(cause).__name__
    keys = sorted(set(AutoConfig.for_model(model_type).to_dict()) & set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text)))
    named = f" (config key{'s' if len(keys) > 1 else ''} {', '.join(keys)})" if keys else ""
    return (f"cannot build a tiny {model_type} model from its default config with small sizes{named}: {text[:300]}; "
            "draft from a checkpoint folder instead (nnspec scaffold PATH)")


def load_model(path: str) -> PreTrainedModel:
    from transformers import AutoModelForCausalLM

    from ..runtime.loading import dtype_kwarg

    if not Path(path).exists():
        raise ScaffoldError(f"{path}: no such checkpoint directory (give a model type or a readable path)")
    try:
        model = AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager", **dtype_kwarg(torch.float32))
    except (OSError, ValueError) as exc:
        raise ScaffoldError(f"{path}: cannot be loaded as a causal LM ({exc})") from exc
    return model.eval()


def _config_keys(config: Any) -> dict[str, Optional[str]]:
    keys: dict[str, Optional[str]] = {}
    for standard, candidates in STANDARD_KEYS.items():
        found = next((c for c in candidates if getattr(config, c, None) is not None), None)
        if found is None and standard not in ("num_kv_heads", "head_dim"):
            raise ScaffoldError(f"config has none of {', '.join(candidates)} (for {standard})")
        keys[standard] = found
    return keys


def _hidden(call: Any) -> Optional[torch.Tensor]:
    return call.args[0] if call.args else next(iter(call.kwargs.values()), None)


def _final_modules(model: torch.nn.Module, p: Probe, layers: str, lm_head: str, num_layers: int) -> tuple[str, list[str]]:
    last = p.calls[f"{layers}.{num_layers - 1}"].order
    head = p.calls[lm_head].order
    between = [
        path for path in p.order[last + 1 : head]
        if path and not layers.startswith(path) and not path.startswith(f"{layers}.") and path != layers
        and isinstance(_first(p.calls[path].output), torch.Tensor)
        and not any(other != path and other.startswith(path + ".") for other in p.order[last + 1 : head])
    ]
    norms = [path for path in between if NORM_NAME.search(type(p.calls[path].module).__name__) or NORM_NAME.search(path.rsplit(".", 1)[-1])]
    if not norms:
        raise ScaffoldError(f"no final norm between the last block and {lm_head!r}: modules there: {', '.join(between) or 'none'}")
    after = [p_ for p_ in between[between.index(norms[0]) + 1 :] if "dropout" not in p_]
    return norms[0], after


def _is_norm(p: Probe, path: str) -> bool:
    return bool(NORM_NAME.search(path.rsplit(".", 1)[-1]) or "Norm" in type(p.calls[path].module).__name__)


def _children(p: Probe, block: str) -> list[str]:
    prefix = block + "."
    return [path[len(prefix):] for path in p.order if path.startswith(prefix) and "." not in path[len(prefix):]]


def _branch_candidates(p: Probe, block: str, module: Optional[str], after_norms: list[str]) -> list[tuple[dict[str, Any], torch.Tensor]]:
    """(spec facts, contribution tensor) hypotheses for one branch of one block."""
    out = []
    if module is not None:
        call = p.calls[f"{block}.{module}"]
        snapshot = _first(call.snapshot)
        live = _first(call.output)
        mutated = live is not None and snapshot is not None and not torch.equal(live, snapshot)
        base: dict[str, Any] = {"clone": True} if mutated else {}
        if snapshot is not None:
            out.append((dict(base), snapshot))
            import inspect

            params = list(inspect.signature(type(call.module).forward).parameters)[1:]
            if "residual" in params:
                i = params.index("residual")
                residual = call.kwargs.get("residual", call.args[i] if len(call.args) > i else None)
                if isinstance(residual, torch.Tensor) and residual.shape == snapshot.shape:
                    out.append(({**base, "includes_residual": "residual"}, snapshot - residual))
    for norm in after_norms:
        value = _first(p.calls[f"{block}.{norm}"].snapshot)
        if value is not None:
            out.append(({"contribution": norm}, value))
    return out


def _norms_between(p: Probe, block: str, start: Optional[str], end: Optional[str]) -> list[str]:
    children = _children(p, block)
    lo = children.index(start) + 1 if start in children else 0
    hi = children.index(end) if end in children else len(children)
    return [c for c in children[lo:hi] if NORM_NAME.search(c) or NORM_NAME.search(type(p.calls[f"{block}.{c}"].module).__name__)]


def _scales(config: Any) -> list[Optional[tuple[str, float]]]:
    found: list[Optional[tuple[str, float]]] = [None]
    for key, value in sorted(config.to_dict().items()):
        if isinstance(value, float) and value not in (0.0, 1.0) and ("multiplier" in key or "residual" in key or "scale" in key):
            found.append((key, value))
    return found


def discover(model: PreTrainedModel, model_type: str) -> Facts:
    """Establish a model's spec facts by probing it (see module docstring)."""
    config = model.config
    keys = _config_keys(config)
    layers_key = keys["num_layers"]
    assert layers_key is not None  # _config_keys raises where a required key is missing
    num_layers = int(getattr(config, layers_key))
    embed = path_of(model, model.get_input_embeddings())
    lm_head = path_of(model, model.get_output_embeddings())
    if embed is None or lm_head is None:
        raise ScaffoldError(f"{type(model).__name__} exposes no {'input' if embed is None else 'output'} embeddings")
    layers = find_layers(model, num_layers, embed)
    vocab = int(config.vocab_size)
    ids = torch.randint(4, min(vocab, 300), (2, 7), generator=torch.Generator().manual_seed(0))
    p = probe(model, ids)
    ln_final, before = _final_modules(model, p, layers, lm_head, num_layers)
    facts = Facts(model_type=model_type, embed_tokens=embed, layers=layers, ln_final=ln_final, lm_head=lm_head,
                  before_lm_head=before, config_keys=keys)
    block0 = f"{layers}.0"
    facts.layer_returns = "tuple" if isinstance(p.calls[block0].output, tuple) else "tensor"
    children = _children(p, block0)
    attention = next((c for c in children if not _is_norm(p, f"{block0}.{c}")
                      and (ATTENTION_NAME.search(c) or "Attention" in type(p.calls[f"{block0}.{c}"].module).__name__)), None)
    mlp = next((c for c in children if c != attention and not _is_norm(p, f"{block0}.{c}")
                and (MLP_NAME.search(c) or re.search("MLP|MoE|Expert|FeedForward", type(p.calls[f"{block0}.{c}"].module).__name__))), None)
    if attention is None:
        raise ScaffoldError(f"no attention module among block 0's children: {', '.join(children)}")
    _branches(facts, model, p, config, attention, mlp, children)
    facts.residual = _residual_kind(model, facts, ids, p)
    facts.logit_transforms = _logit_transforms(model, p, facts, config)
    _attention_sources(facts, model, p)
    return facts


def _branches(facts: Facts, model: Any, p: Probe, config: Any, attention: str, mlp: Optional[str], children: list[str]) -> None:
    """Find contribution hypotheses that make the identity hold on every layer."""
    n = len(model.get_submodule(facts.layers))
    scales = _scales(config)
    per_layer = []
    for i in range(n):
        block = f"{facts.layers}.{i}"
        x = _hidden(p.calls[block])
        y = _first(p.calls[block].snapshot)
        if x is None or y is None:
            raise ScaffoldError(f"block {i} ({block}) {'received' if x is None else 'returned'} no hidden-state tensor")
        a_norms = _norms_between(p, block, attention, mlp)
        m_norms = _norms_between(p, block, mlp, None) if mlp else []
        a = [c for c in _branch_candidates(p, block, attention, a_norms) if c[1].shape == x.shape]
        m = [c for c in _branch_candidates(p, block, mlp, m_norms) if c[1].shape == x.shape] if mlp else []
        per_layer.append((x, y, a, m))
    inline: dict[str, Any] = {}
    if mlp is None:
        inline = _inline_mlp(model, p, facts.layers, attention, children)
        for k, (x, y, a, _) in enumerate(per_layer):
            out = _first(p.calls[f"{facts.layers}.{k}.{inline['contribution']}"].snapshot)
            per_layer[k] = (x, y, a, [({}, out.reshape(x.shape))] if out is not None and out.numel() == x.numel() else [])
    for scale in scales:
        s = 1.0 if scale is None else scale[1]
        for ai in range(len(per_layer[0][2])):
            for mi in range(len(per_layer[0][3])):
                ok = all(
                    ai < len(a) and mi < len(m) and _close(x + s * a[ai][1] + s * m[mi][1], y)
                    for x, y, a, m in per_layer
                )
                if ok:
                    facts.attention = {"module": attention, **per_layer[0][2][ai][0]}
                    facts.mlp = {"module": mlp, **per_layer[0][3][mi][0]} if mlp else dict(inline)
                    if inline:
                        facts.limits["mlp_module"] = (
                            f"the block calls {inline['input']} ... {inline['contribution']} inline; there is no MLP module "
                            "(mlps_input and mlps_output work)"
                        )
                    if scale is not None:
                        facts.attention["scale"] = facts.mlp["scale"] = scale[0]
                    return
    facts.attention, facts.mlp = {"module": attention}, {"module": mlp}
    facts.residual = "post_norm"
    facts.limits["contribution"] = (
        "No decomposition of the block output into input + attention + MLP holds (checked at draft time): "
        "the block normalises or transforms the stream after the residual adds."
    )


def _inline_mlp(model: Any, p: Probe, layers: str, attention: str, children: list[str]) -> dict[str, Any]:
    """An MLP written inline in the block (OPT's fc1 -> activation -> fc2)."""
    hidden = model.config.hidden_size
    block = f"{layers}.0"
    after = children[children.index(attention) + 1 :]
    linears = [c for c in after if isinstance(p.calls[f"{block}.{c}"].module, torch.nn.Linear)]
    first = next((c for c in linears if p.calls[f"{block}.{c}"].module.in_features == hidden), None)
    last = next((c for c in reversed(linears) if p.calls[f"{block}.{c}"].module.out_features == hidden), None)
    if first is None or last is None or first == last:
        raise ScaffoldError(f"no MLP module among block 0's children ({', '.join(children)}); write the mlp branch by hand")
    output = _first(p.calls[f"{block}.{last}"].output)
    return {"module": "", "input": first, "contribution": last, "flattened": output is not None and output.ndim == 2}


def _residual_kind(model: Any, facts: Facts, ids: torch.Tensor, clean: Probe) -> str:
    if facts.residual == "post_norm":
        return "post_norm"
    block = f"{facts.layers}.0"
    attention = f"{block}.{facts.attention['module']}"
    mlp = f"{block}.{facts.mlp['module'] or facts.mlp['input']}"

    def nudge(module: Any, args: Any, output: Any) -> Any:
        first = output[0] if isinstance(output, tuple) else output
        noise = torch.randn(first.shape, generator=torch.Generator().manual_seed(3))  # not constant: norms remove constants
        return (first + noise,) + output[1:] if isinstance(output, tuple) else first + noise

    perturbed = probe(model, ids, hooks={attention: nudge})
    before, after = _hidden(clean.calls[mlp]), _hidden(perturbed.calls[mlp])
    return "parallel" if _close(before, after) else "sequential"


def _logit_transforms(model: Any, p: Probe, facts: Facts, config: Any) -> list[dict[str, str]]:
    last = _first(p.calls[f"{facts.layers}.{len(model.get_submodule(facts.layers)) - 1}"].snapshot)
    with torch.no_grad():
        x = model.get_submodule(facts.ln_final)(last)
        for path in facts.before_lm_head:
            x = model.get_submodule(path)(x)
        base = model.get_submodule(facts.lm_head)(x)
    if _close(base, p.logits):
        return []
    def priority(item: tuple[str, Any]) -> tuple[int, str]:
        key = item[0]
        return (0 if "logit" in key else 1 if any(w in key for w in ("cap", "scal", "mult")) else 2, key)

    for key, value in sorted(config.to_dict().items(), key=priority):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value == 0 or key.endswith(("_id", "_ids")):
            continue
        for op, fn in (("softcap", lambda t, v: torch.tanh(t / v) * v), ("multiply", lambda t, v: t * v), ("divide", lambda t, v: t / v)):
            if value == 1 and op != "softcap":
                continue
            if _close(fn(base, value), p.logits):
                return [{"op": op, "key": key}]
    facts.notes.append("logits differ from lm_head(ln_final(h)) by a transform no single config value explains")
    return []


def _attention_sources(facts: Facts, model: Any, p: Probe) -> None:
    import inspect

    if getattr(model.config, "attn_logit_softcapping", None):
        facts.score_softcap = "attn_logit_softcapping"

    block = model.get_submodule(facts.layers)[0]
    attention = block.get_submodule(facts.attention["module"])
    try:
        source = inspect.getsource(type(attention).forward)
    except (OSError, TypeError):
        return
    if "attention_interface(" not in source:
        reason = (f"no attention source is declared yet: {type(attention).__name__}.forward does not call the "
                  "attention interface; add [attention] probabilities/queries/keys/values sources by hand")
        facts.limits.update({"attention_probabilities": reason, "qkv": reason, "per_head_output": reason})
        return
    if "attention_interface(" in source:
        facts.attention.update(copy.deepcopy(INTERFACE_SOURCES))
        dims = getattr(attention, "head_dim", None)
        for name, child in attention.named_children():
            if isinstance(child, torch.nn.Linear) and child.out_features == model.config.hidden_size and name in ("o_proj", "dense", "out_proj", "c_proj", "o"):
                facts.attention["output_projection"] = name
        if dims is None:
            facts.notes.append("attention module has no head_dim attribute")


# -- turning facts into a spec ---------------------------------------------------------------------


def facts_to_spec(facts: Facts, name: str, tiny_config: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": name,
        "model_types": [facts.model_type],
        "config": {k: (v if v is not None else "") for k, v in facts.config_keys.items() if k != "head_dim" or v},
        "modules": {"embed_tokens": facts.embed_tokens, "layers": facts.layers, "ln_final": facts.ln_final, "lm_head": facts.lm_head},
        "layer": {"returns": facts.layer_returns},
        "attention": dict(facts.attention),
        "mlp": dict(facts.mlp),
        "residual": {"kind": facts.residual},
        "tiny": {"config": dict(tiny_config)},
    }
    if "head_dim" not in spec["config"]:
        spec["config"]["head_dim"] = ""
    if facts.before_lm_head:
        spec["modules"]["before_lm_head"] = facts.before_lm_head
    if facts.logit_transforms:
        spec["logits"] = {"transforms": facts.logit_transforms}
    if facts.score_softcap:
        spec["attention"]["score_softcap"] = facts.score_softcap
    if facts.limits:
        spec["limits"] = dict(facts.limits)
    return spec


def _leaves(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_leaves(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): d}


def serving_spec(model_type: str, specs: dict[str, Any]) -> Optional[str]:
    """The bundled spec nnspec uses for ``model_type`` today (None: none serves it). Where several
    list the type, the registry's choice wins, then the first by name."""
    from ..errors import UnsupportedArchitectureError
    from ..runtime.registry import adapter_for_model_type

    try:
        registered: Optional[str] = adapter_for_model_type(model_type).spec.name
    except UnsupportedArchitectureError:
        registered = None
    serving = sorted(name for name, loaded in specs.items() if model_type in loaded.spec.model_types)
    return registered if registered in serving else (serving[0] if serving else registered if registered in specs else None)


#: How the scaffold chooses the spec a draft extends (written into the draft's header).
PARENT_RULE = (
    "The parent is the bundled spec that serves this model type, where one does (its own parent when this draft "
    "takes its name); otherwise the bundled spec sharing the most probed facts (minus facts it states that this "
    "model lacks)."
)


def closest_parent(spec: dict[str, Any], specs: dict[str, Any], prefer: Optional[str] = None) -> tuple[Optional[str], dict[str, Any]]:
    """The parent for ``spec`` and ``spec`` reduced to what differs from it.

    The parent is ``prefer`` (the bundled spec serving the model type) when given and among
    ``specs``; otherwise the bundled spec sharing the most facts with ``spec`` (ignoring names and
    tiny configs). With a preferred parent, attention sources the probe could not establish are
    inherited (the checks then decide) rather than cleared."""
    ignore = ("name", "model_types", "description", "tiny", "variants", "overrides", "extends", "unset")
    mine = {k: v for k, v in _leaves({k: v for k, v in spec.items() if k not in ignore}).items()}
    best, best_score = None, -1
    for other_name, loaded in specs.items():
        if prefer in specs:
            best = prefer
            break
        theirs = _leaves({k: v for k, v in loaded.spec.model_dump(mode="json").items() if k not in ignore})
        theirs.pop("attention.sources", None)  # the named set stands for sources compared one by one
        score = sum(1 for k, v in mine.items() if _norm(theirs.get(k)) == _norm(v)) - sum(
            1 for k, v in theirs.items() if k not in mine and v not in (None, "", [], False, 0, "tensor", "sequential", "softmax", "scaled_dot_product", "output", -1)
        )
        if score > best_score:
            best, best_score = other_name, score
    if best is None:
        return None, spec
    merged = specs[best].spec.model_dump(
        mode="json", exclude={"name", "model_types", "description", "extends", "tiny", "variants", "overrides", "unset"}
    )
    merged.get("attention", {}).pop("sources", None)
    reduced = _diff(spec, merged)
    reduced["name"], reduced["model_types"] = spec["name"], spec["model_types"]
    # The tiny config states only the keys whose values differ from the parent's; what the
    # parent's tiny config sets and this model lacks is unset (the HF default applies).
    inherited_tiny = specs[best].spec.tiny.config
    own_tiny = spec["tiny"]["config"]
    changed = {k: v for k, v in own_tiny.items() if k not in inherited_tiny or inherited_tiny[k] != v}
    tiny_rest = {k: v for k, v in spec["tiny"].items() if k != "config"}
    if changed or tiny_rest:
        reduced["tiny"] = {**tiny_rest, **({"config": changed} if changed else {})}
    dropped = [f"tiny.config.{key}" for key in inherited_tiny if key not in own_tiny]
    if dropped:
        reduced["unset"] = dropped
    # Attention sources the parent declares and the draft found none of: clear them (the checks
    # then decide; see `_settle_attention`).
    for field in ("probabilities", "queries", "keys", "values", "per_head_output"):
        if best == prefer:
            break
        if merged.get("attention", {}).get(field) and field not in spec.get("attention", {}):
            reduced.setdefault("attention", {})[field] = ""
    # Everything the parent states and this model does not: clear it.
    for key, value in _leaves({k: merged.get(k) for k in ("attention", "mlp", "limits", "logits")}).items():
        section, _, leaf = key.partition(".")
        if leaf and "." not in leaf and value not in (None, "", [], False) and leaf not in spec.get(section, {}):
            sources = ("probabilities", "queries", "keys", "values", "per_head_output", "output_projection")
            if best == prefer and section == "attention" and leaf in sources:
                continue
            if section in ("attention", "mlp") and leaf in ("probabilities", "queries", "keys", "values", "per_head_output", "output_projection", "contribution", "includes_residual", "scale"):
                reduced.setdefault(section, {})[leaf] = ""
            if section == "limits" and leaf == "contribution":
                reduced.setdefault("limits", {})[leaf] = ""
            if section == "logits" and leaf == "transforms":
                reduced.setdefault("logits", {})["transforms"] = []
    return best, reduced


def _norm(value: Any) -> Any:
    if isinstance(value, dict) and "ops" in value or isinstance(value, dict) and "module" in value and len(value) <= 6:
        from ..compiler.schema import SourceRef

        try:
            return SourceRef.model_validate(value).model_dump()
        except Exception:  # noqa: BLE001 - not a source after all
            return value
    return None if value in ("", None) else value


def _diff(mine: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in mine.items():
        other = theirs.get(key)
        if isinstance(value, dict) and isinstance(other, dict) and key not in ("probabilities", "queries", "keys", "values", "per_head_output"):
            sub = _diff(value, other)
            if sub:
                out[key] = sub
        elif _norm(value) != _norm(other):
            out[key] = value
    return out


# -- TOML ------------------------------------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if value is None:
        return '""'
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def _key(key: str) -> str:
    return key if re.match(r"^[A-Za-z0-9_-]+$", key) else _toml_value(key)


def to_toml(spec: dict[str, Any], header: list[str]) -> str:
    lines = [f"# {h}" if h else "#" for h in header] + [""]
    scalars = [(k, v) for k, v in spec.items() if not isinstance(v, dict)]
    tables = [(k, v) for k, v in spec.items() if isinstance(v, dict)]
    lines += [f"{_key(k)} = {_toml_value(v)}" for k, v in scalars]

    def table(name: str, body: dict[str, Any]) -> None:
        plain = [(k, v) for k, v in body.items() if not (isinstance(v, dict) and name in ("tiny", "variants"))]
        nested = [(k, v) for k, v in body.items() if isinstance(v, dict) and name in ("tiny", "variants")]
        if plain:
            lines.extend(["", f"[{name}]"])
            lines.extend(f"{_key(k)} = {_toml_value(v)}" for k, v in plain)
        for k, v in nested:
            table(f"{name}.{_key(k)}", v)

    for name, body in tables:
        table(name, body)
    return "\n".join(lines) + "\n"


# -- the command -----------------------------------------------------------------------------------


def _run_checks(body: dict[str, Any], name: str) -> list[Any]:
    from ..runtime.adapter import Adapter
    from ..verification import conformance, tiny

    with tempfile.TemporaryDirectory() as scratch:
        trial = Path(scratch) / f"{name}.toml"
        trial.write_text(to_toml(body, ["draft"]), encoding="utf-8")
        spec = Adapter.from_file(trial).spec
        results = []
        for variant in [None, *spec.variants]:
            try:
                path = tiny.build(spec, Path(scratch) / f"tiny-{variant or 'base'}", variant=variant)
                subject = conformance.load_subject(name, path, spec=str(trial))
                found = conformance.run_checks(subject)
            except Exception as exc:  # noqa: BLE001 - a checkpoint that cannot be built or run is a failure
                if variant is None:
                    raise
                found = [conformance.failed_result("load", exc)]
            results += [r if variant is None else replace(r, variant=variant) for r in found]
        return results


#: The reason a draft's ``[limits]`` gives for a capability the checks refuted, by the structural
#: cause of the failure (:data:`~nnspec.verification.conformance.FailureCause`). Fixed sentences:
#: the failure's message (numbers, tensor shapes) never goes into a spec.
LIMIT_REASONS: dict[str, str] = {
    "mismatch": "values read inside the attention differ from what plain transformers computes",
    "shape_mismatch": "values read inside the attention do not have the standard shapes",
    "no_effect": "setting the value inside the attention does not change the model's output",
    "served_despite_limit": "the runtime serves a value the spec declares unavailable",
    "refusal_mismatch": "the runtime refuses or serves a branch against the layer's structure",
    "no_branch": "a layer has neither a token mixer nor an MLP",
    "contribution_mismatch": "the branch outputs do not add up to the block output",
    "zero_branch": "a branch contributes nothing to the residual stream",
    "reference_missing": "plain transformers never computes the value to compare with",
    "probabilities_mismatch": "the eager attention weights could not be verified as one softmax over the scores",
    "softmax_count": "the attention computes more than one softmax, so no single tensor is its probabilities",
    "qkv_shape": "queries and keys are not laid out as (batch, heads, seq, head_dim)",
    "qkv_masks": "the attention receives several score-shaped masks, so its scores cannot be rebuilt from queries and keys",
    "sinks_per_token": "sink logits are computed per token by a module, so the scores are not scaled dot-products",
    "probabilities_not_softmax_qk": "softmax of the scaled query-key scores does not reproduce the attention weights",
    "heads_output_not_probs_values": "the per-head output is not the attention probabilities times the values",
    "heads_output_not_projection_input": "the output projection of the per-head output does not give the attention output",
    "error": "the check of this capability fails with an error on the drafted spec",
    "load_failed": "the tiny checkpoint cannot be built or loaded",
}


def limit_reason(cause: Optional[str]) -> str:
    """The fixed sentence :data:`LIMIT_REASONS` gives for ``cause`` (the ``error`` one for an unknown cause)."""
    return LIMIT_REASONS.get(cause or "error", LIMIT_REASONS["error"])


def _settle(body: dict[str, Any], name: str, check: bool) -> list[Any]:
    """Run the checks and revise attention facts the checks refute, declaring what cannot hold.

    Decisions read the results' structured fields (check, cause, variant), never their messages.
    A q/k recomputation that does not reproduce the weights (``probabilities_not_softmax_qk``)
    first tries queries that arrive pre-scaled (score scale 1), then declares the score function
    other than scaled dot-product; a per-head output that fails either way becomes a
    ``per_head_output`` limit, any other q/k/v failure ``qkv`` and ``per_head_output`` limits,
    failing probabilities an ``attention_probabilities`` limit, each with the fixed sentence of
    :data:`LIMIT_REASONS` for its cause. A variant inherited from the parent that fails where the
    base checkpoint passes is dropped. Nothing else is revised.
    """
    if not check:
        return []
    tried_scale = False
    results: list[Any] = []
    for _ in range(5):
        results = _run_checks(body, name)
        failures = [r for r in results if not r.passed]
        # A variant inherited from the parent whose options this model does not take: drop it.
        base_failed = {r.check for r in failures if r.variant is None}
        own = body.get("variants", {})
        broken = {r.variant for r in failures if r.variant is not None and r.check not in base_failed}
        inherited = sorted(v for v in broken if v not in own and f"variants.{v}" not in body.get("unset", []))
        if inherited:
            body["unset"] = [*body.get("unset", []), *(f"variants.{v}" for v in inherited)]
            continue
        attention = body.setdefault("attention", {})
        limits = body.setdefault("limits", {})
        revised = False
        first: dict[str, Any] = {}  # check -> its first failure (the base checkpoint's before a variant's)
        for r in failures:
            first.setdefault(r.check, r)
        qkv = first.get("qkv")
        if qkv is not None and qkv.cause == "probabilities_not_softmax_qk":
            if not tried_scale and attention.get("score_scale") in (None, ""):
                attention["score_scale"], tried_scale, revised = 1.0, True, True
            else:
                attention.pop("score_scale", None)
                attention["score"], revised = "other", True
        elif qkv is not None and qkv.cause in ("heads_output_not_probs_values", "heads_output_not_projection_input"):
            attention["per_head_output"] = ""
            limits["per_head_output"] = limit_reason(qkv.cause)
            revised = True
        elif qkv is not None:
            reason = limit_reason(qkv.cause)
            for field in ("queries", "keys", "values", "per_head_output"):
                attention[field] = ""
            limits.update({"qkv": reason, "per_head_output": reason})
            revised = True
        probabilities = first.get("attention_probabilities")
        if probabilities is not None:
            attention["probabilities"] = ""
            limits["attention_probabilities"] = limit_reason(probabilities.cause)
            revised = True
        if not limits:
            body.pop("limits")
        if not attention:
            body.pop("attention")
        if not revised:
            break
    return results



def package_dir() -> Path:
    """The folder of the imported ``nnspec`` package."""
    return PACKAGE_DIR


def _source_checkout(package: Path) -> bool:
    """Whether ``package`` is ``src/nnspec`` of a source checkout (its ``pyproject.toml`` names nnspec),
    where new bundled specs are added to ``specs/``."""
    pyproject = package.parent.parent / "pyproject.toml"
    if package.parent.name != "src" or not pyproject.is_file():
        return False
    try:
        return re.search(r'^name\s*=\s*"nnspec"\s*$', pyproject.read_text(encoding="utf-8"), re.M) is not None
    except OSError:
        return False


def package_path_problem(path: Path) -> Optional[str]:
    """Why a drafted spec may not be written to ``path`` (None when it may).

    Nothing is written inside the installed nnspec package; in a source checkout, only its
    ``specs/`` folder (where bundled specs live) takes new files."""
    package = package_dir()
    target = Path(path).expanduser().resolve()
    if target != package and package not in target.parents:
        return None
    specs = package / "specs"
    if _source_checkout(package) and target.parent == specs:
        return None
    where = f"inside the nnspec package ({package})"
    if _source_checkout(package):
        return f"{where}; in a source checkout only {specs} takes new spec files"
    return f"{where}, which an upgrade replaces; write the draft elsewhere (the current folder by default) and load it with spec=PATH"


def _own_name_note(model_type: str, name: str, bundled: dict[str, Any]) -> tuple[Optional[str], Optional[str]]:
    """For a draft named like the bundled spec serving ``model_type`` (which it cannot extend: a
    spec cannot extend itself): that spec's own parent, the next best one, and a header note."""
    served = serving_spec(model_type, bundled)
    if served is None or served != name:
        return None, None
    lineage = bundled[served].lineage
    note = (f"model type {model_type!r} is served by the bundled spec {served!r}, which this draft of the same name "
            f"shadows where it is loaded; draft with --name NEW_NAME to get a spec that extends {served!r}")
    return (lineage[-2] if len(lineage) > 1 else None), note


def describe(facts: Facts, parent: Optional[str]) -> str:
    """A one-line description of a drafted spec, from the discovered facts only."""
    residual = {"sequential": "sequential-residual", "parallel": "parallel-branch", "post_norm": "post-norm"}.get(facts.residual, facts.residual)
    parts = [f"{residual} decoder blocks"]
    if all(facts.attention.get(k) for k in INTERFACE_SOURCES):
        parts.append("attention through the shared attention interface")
    if facts.score_softcap:
        parts.append("softcapped attention scores")
    if any(t.get("op") == "softcap" for t in facts.logit_transforms):
        parts.append("softcapped logits")
    elif facts.logit_transforms:
        parts.append("scaled logits")
    if facts.ln_final in ("", None):
        parts.append("no final norm module")
    like = f"; drafted from a probed model, closest bundled spec {parent}" if parent else "; drafted from a probed model"
    return f"{facts.model_type}: " + ", ".join(parts) + like + "."


def _state_sources_once(body: dict[str, Any], name: str) -> None:
    """Where the draft states every source of the shared attention interface one by one, state the
    named set instead (``sources = "attention_interface"``), if the loaded spec stays the same."""
    attention = body.get("attention", {})
    if any(attention.get(k) != v for k, v in INTERFACE_SOURCES.items()):
        return
    short = {**body, "attention": {"sources": "attention_interface",
                                   **{k: v for k, v in attention.items() if k not in INTERFACE_SOURCES}}}
    with tempfile.TemporaryDirectory() as scratch:
        loaded = []
        for i, candidate in enumerate((body, short)):
            folder = Path(scratch) / str(i)
            folder.mkdir()
            trial = folder / f"{name}.toml"
            trial.write_text(to_toml(candidate, []), encoding="utf-8")
            loaded.append(load_spec_file(trial, [BUNDLED_DIR]).spec.attention.model_dump(exclude={"sources"}))
    if loaded[0] == loaded[1]:
        body["attention"] = short["attention"]


def scaffold(
    target: str,
    output: Optional[Path] = None,
    name: Optional[str] = None,
    check: bool = True,
    description: Optional[str] = None,
) -> tuple[Path, list[Any], Optional[str]]:
    """Draft a spec for ``target`` (a model type or a checkpoint path), verify it, write it.

    ``output`` is the spec file to write, or a folder to write ``NAME.toml`` into; by default
    ``NAME.toml`` in the current folder. A path inside the installed nnspec package is refused
    (:class:`ScaffoldError`) before anything is built. ``description`` is the spec's one-line
    description (default: one written from the discovered facts); the draft states only what
    differs from its parent.

    Returns ``(path written, conformance results, parent spec)``.
    """
    if description is not None and not description.strip():
        raise ScaffoldError("description: a spec's description cannot be empty; give one line saying what is distinctive")
    if output is not None and not Path(output).is_dir():
        problem = package_path_problem(Path(output))
        if problem:
            raise ScaffoldError(f"{output}: {problem}")
    bundled = load_all(BUNDLED_DIR)
    if output is not None and not Path(output).is_dir() and name is None:
        name = Path(output).stem  # a spec's name is its file's stem
    if Path(target).exists() or "/" in target:
        model = load_model(target)
        model_type, tiny_config = model.config.model_type, tiny_overrides(model.config.model_type)
        options: dict[str, Any] = {}
    else:
        # Probe with the options real checkpoints use, so multipliers and transforms are visible.
        check_model_type(target)
        options = checkpoint_options(target)
        try:
            model, tiny_config = build_model(target, options)
        except Exception:  # noqa: BLE001 - an option this type cannot combine: probe without
            options = {}
            model, tiny_config = build_model(target)
        model_type = target
    facts = discover(model, model_type)
    name = name or model_type.replace("-", "_")
    draft = facts_to_spec(facts, name, tiny_config)
    # A parent must not lead back to this spec: `opt` cannot extend `biogpt`, which extends `opt`
    # (loaded next to the draft, the name would resolve to the draft itself).
    specs = {k: v for k, v in bundled.items() if k != name and name not in v.lineage}
    ancestor, shadowing = _own_name_note(model_type, name, bundled)
    if shadowing:
        facts.notes.append(shadowing)
    serving = serving_spec(model_type, specs) or ancestor
    if serving is not None:
        # The serving spec's hand-written attention sources are inherited, not declared missing.
        stated = specs[serving].spec.attention.model_dump(mode="json")
        limits = draft.get("limits", {})
        for limit, fields in (("attention_probabilities", ("probabilities",)), ("qkv", ("queries", "keys", "values")),
                              ("per_head_output", ("per_head_output",))):
            if limit in limits and all(stated.get(f) for f in fields):
                limits.pop(limit)
        if "limits" in draft and not limits:
            draft.pop("limits")
    parent, reduced = closest_parent(draft, specs, prefer=serving)
    body: dict[str, Any] = {"name": name}
    if parent:
        body["extends"] = parent
    body["description"] = " ".join((description or describe(facts, parent)).split())
    body["model_types"] = reduced["model_types"]
    if reduced.get("unset"):
        body["unset"] = reduced["unset"]
    body.update({k: v for k, v in reduced.items() if k not in ("name", "model_types", "unset")})
    _state_sources_once(body, name)
    if options:
        body["variants"] = {"checkpoint_options": options}
    if output is None or Path(output).is_dir():
        output = Path(output or Path.cwd()) / f"{name}.toml"
    problem = package_path_problem(output)
    if problem:
        raise ScaffoldError(f"{output}: {problem}")
    results = _settle(body, name, check)
    passed = [r.check for r in results if r.passed]
    failed = [r for r in results if not r.passed]
    header = [
        f"{name}: drafted by `nnspec scaffold {target}` from a probed tiny {model_type} model.",
        (f"extends {parent}: the parent of the bundled spec {name} serving {model_type}; only what differs is stated."
         if parent == serving == ancestor and shadowing else
         f"extends {parent}: the bundled spec serving {model_type}; only what differs is stated." if parent == serving
         else f"extends {parent}: the closest bundled spec by structure; only what differs is stated.") if parent
        else "no bundled spec is close.",
        PARENT_RULE,
    ]
    if check:
        header.append(f"conformance at draft time: {len(passed)}/{len(results)} checks pass (base checkpoint and variants)")
        header += [f"FAILS {r.label}: {r.error[:160]}" for r in failed]
        if failed:
            header.append("Review the failing rows before relying on this spec.")
    else:
        header.append("not checked (run `nnspec matrix --specs NAME` after `nnspec compile`).")
    header += [f"note: {n}" for n in facts.notes]
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(to_toml(body, header), encoding="utf-8")
    return output, results, parent
