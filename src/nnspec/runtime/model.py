"""The standardized model's core: any HF causal LM behind one set of standard names, on NNsight.

The public class, :class:`nnspec.StandardizedTransformer`, adds the research recipes to it."""

from __future__ import annotations

import inspect
import threading
import warnings
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Union, cast

import torch
from nnsight.intervention.envoy import Envoy
from nnsight.modeling.transformers import TransformersModel

from ..compiler.records import Module, Read, Refused
from ..compiler.schema import ATTENTION_KINDS, MIXER_KINDS, STATEFUL_KINDS, Branch, Spec
from ..errors import (
    CapabilityUnavailableError,
    InputError,
    InputTypeError,
    ModelStructureError,
    NnspecWarning,
    ShapeMismatchError,
    UnknownNameError,
)
from .accessors import (
    AttentionProbabilitiesAccessor,
    BlockEnvoy,
    ModuleAccessor,
    SavableTensor,
    ValueAccessor,
    at_occurrence,
    layer_index,
)
from .adapter import (
    Adapter,
    backbone_aliases,
    merge_aliases,
    read_config,
    text_config,
)
from .batching import columns
from .inputs import check_encoding, check_invoke, invoke_mask, position_limit, split_model_kwargs, warn_right_padding
from .loading import (
    auto_class,
    builds_text_model,
    from_config,
    load_tokenizer,
    normalize_dtype_kwargs,
    pipeline_accepts,
)
from .names import ATTENTION_INTERNALS
from .ports import ContributionPort, InputPort, MixerStatePort, OutputPort, with_prefix
from .readorder import worker_memo
from .registry import SpecArgument, resolve_adapter
from .sources import SourcePort, label_for
from .structure import BranchFacts, Structure, check_module_paths, check_overrides, check_structure, layer_records
from .tokens import TokenHelpers
from .unembed import final_module_paths

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


def _load_config(model: Any, trust_remote_code: bool, revision: Optional[str]) -> tuple[Any, str]:
    """The HF config of ``model`` (a hub id, a local path or a loaded ``PreTrainedModel``)."""
    if isinstance(model, torch.nn.Module):
        return model.config, type(model).__name__
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(str(model), trust_remote_code=trust_remote_code, revision=revision), str(model)


def _prefix_positions(spec: Spec, config: Any, source: str) -> int:
    """How many positions the model places in front of the input (``layer.prefix``; 0: none)."""
    prefix = spec.layer.prefix
    if prefix is None or isinstance(prefix, int):
        return prefix or 0
    try:
        value = read_config(config, prefix)
    except AttributeError:
        raise ModelStructureError(
            f"spec {source!r}: layer.prefix names config key {prefix!r}, which {type(config).__name__} does not have"
        ) from None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ModelStructureError(f"spec {source!r}: layer.prefix: config.{prefix} = {value!r} is not a number of positions")
    return value


def _layer_count(spec: Spec, config: Any, source: str, key: str, value: Union[str, int]) -> int:
    """A block count the spec states in ``[layer]`` as a config key or a number."""
    if isinstance(value, int):
        return value
    try:
        number = read_config(config, value)
    except AttributeError:
        raise ModelStructureError(
            f"spec {source!r}: layer.{key} names config key {value!r}, which {type(config).__name__} does not have"
        ) from None
    if isinstance(number, bool) or not isinstance(number, int) or number < 0:
        raise ModelStructureError(f"spec {source!r}: layer.{key}: config.{value} = {number!r} is not a count")
    return number


def _residual_shape(spec: Spec, config: Any, source: str, hidden: int) -> tuple[int, ...]:
    """The trailing shape of every residual-stream value: ``(hidden,)``, or several streams of it
    (``layer.streams``) concatenated or stacked."""
    if spec.layer.streams is None:
        return (hidden,)
    streams = _layer_count(spec, config, source, "streams", spec.layer.streams)
    if streams < 1:
        raise ModelStructureError(f"spec {source!r}: layer.streams: the config gives {streams} residual streams")
    return (streams * hidden,) if spec.layer.stream_layout == "concatenated" else (streams, hidden)


def _layer_passes(spec: Spec, config: Any, source: str, num_layers: int) -> list[int]:
    """How many times each block runs per forward (``layer.repeats``; 1 everywhere without it)."""
    repeats = spec.layer.repeats
    if repeats is None:
        return [1] * num_layers
    start = _layer_count(spec, config, source, "repeats.start", repeats.start)
    if repeats.end is not None:
        end = _layer_count(spec, config, source, "repeats.end", repeats.end)
    else:
        assert repeats.count is not None  # the schema requires exactly one of `end` and `count`
        end = start + _layer_count(spec, config, source, "repeats.count", repeats.count)
    passes = _layer_count(spec, config, source, "repeats.passes", repeats.passes)
    if not 0 <= start <= end <= num_layers or passes < 1:
        raise ModelStructureError(
            f"spec {source!r}: layer.repeats: blocks {start}..{end - 1} run {passes} times, which does not fit a model "
            f"with {num_layers} blocks"
        )
    return [passes if start <= i < end else 1 for i in range(num_layers)]


def _load_tokenizer(model: Any, trust_remote_code: bool, revision: Optional[str], extra: Optional[dict] = None) -> Any:
    config: Any = model.config if isinstance(model, torch.nn.Module) else None
    source = config.name_or_path if config is not None else str(model)
    if not source:
        raise InputError("this model carries no name_or_path to load a tokenizer from: pass tokenizer=")
    return load_tokenizer(source, trust_remote_code, revision, **(extra or {}))


def _indices(value: Any, label: str) -> list[int]:
    """An int, a list of ints or a 1-D integer tensor as a non-empty list of ints."""
    if isinstance(value, torch.Tensor):
        if value.is_floating_point() or value.dtype == torch.bool or value.ndim > 1:
            raise InputTypeError(f"{label}: expected integer indices (an int, a list or a 1-D tensor), got a {value.dtype} tensor of shape {tuple(value.shape)}")
        value = value.tolist()
    listed = list(value) if isinstance(value, (list, tuple, range)) else [value]
    if not listed:
        raise InputError(f"{label}: the list is empty; give at least one index, or None for all")
    for item in listed:
        if isinstance(item, bool) or not isinstance(item, int):
            raise InputTypeError(f"{label}: expected integer indices (an int, a list or a 1-D tensor), got {value!r}")
    return listed


def _tokenizer_settings(settings: Any, tokenizer: Any) -> dict:
    """``tokenizer_kwargs=`` checked: a dict of ``AutoTokenizer.from_pretrained`` arguments, for the
    tokenizer nnspec loads (not one passed as ``tokenizer=``)."""
    if settings is None:
        return {}
    if not isinstance(settings, dict):
        raise InputTypeError(f"tokenizer_kwargs: expected a dict of tokenizer arguments, got {type(settings).__name__}")
    if settings and tokenizer is not None:
        raise InputError(
            "tokenizer_kwargs configure the tokenizer nnspec loads, but tokenizer= was passed too: configure that "
            "tokenizer yourself, or drop tokenizer= to have it loaded with these settings"
        )
    side = settings.get("padding_side", "left")
    if side not in ("left", "right"):
        raise InputError(f"tokenizer_kwargs['padding_side']: expected 'left' or 'right', got {side!r}")
    return dict(settings)


class StandardizedModel(TokenHelpers, TransformersModel):
    """The core of :class:`nnspec.StandardizedTransformer` (documented there): a HuggingFace causal
    LM with standard names for every module and residual-stream value. The research recipes built
    on those names (``run_with_cache``, ``gradients``...) are added by the public class.
    """

    # The standard names, declared for type checkers and editors. `_install_accessors` installs
    # exactly the accessors declared here (tests/test_typing.py checks both ways). Indexing takes a
    # layer number (negative: from the end); each comment says what it gives for layer i.
    #: Block i's envoy (also answers to ``self_attn`` / ``mixer`` / ``mlp``).
    layers: ModuleAccessor[Envoy]
    #: ``(batch, seq, hidden)``: the residual stream entering block i.
    layers_input: ValueAccessor[SavableTensor]
    #: ``(batch, seq, hidden)``: the residual stream leaving block i.
    layers_output: ValueAccessor[SavableTensor]
    #: Layer i's attention module envoy.
    attentions: ModuleAccessor[Envoy]
    #: ``(batch, seq, hidden)``: what layer i's attention reads (after its input norm).
    attentions_input: ValueAccessor[SavableTensor]
    #: ``(batch, seq, hidden)``: layer i's attention contribution to the residual stream.
    attentions_output: ValueAccessor[SavableTensor]
    #: ``(batch, seq, hidden)``: layer i's attention module's own output, before what the block applies to it.
    attentions_module_output: ValueAccessor[SavableTensor]
    #: Layer i's token-mixer module envoy (attention, state space, recurrence, convolution).
    mixers: ModuleAccessor[Envoy]
    #: ``(batch, seq, hidden)``: what layer i's token mixer reads (after its input norm).
    mixers_input: ValueAccessor[SavableTensor]
    #: ``(batch, seq, hidden)``: layer i's token-mixer contribution to the residual stream.
    mixers_output: ValueAccessor[SavableTensor]
    #: Layer i's MLP module envoy.
    mlps: ModuleAccessor[Envoy]
    #: ``(batch, seq, hidden)``: what layer i's MLP reads (after its input norm).
    mlps_input: ValueAccessor[SavableTensor]
    #: ``(batch, seq, hidden)``: layer i's MLP contribution to the residual stream.
    mlps_output: ValueAccessor[SavableTensor]
    #: ``(batch, seq, hidden)``: layer i's MLP module's own output, before what the block applies to it.
    mlps_module_output: ValueAccessor[SavableTensor]
    #: Layer i's recurrent state after the last position (its shape is the mixer's cache entry); read-only.
    mixer_states: ValueAccessor[SavableTensor]
    #: ``(batch, heads, q, k)``: layer i's attention probabilities (eager attention).
    attention_probabilities: AttentionProbabilitiesAccessor
    #: ``(batch, heads, seq, head_dim)``: layer i's queries as they enter the scores (after rotary).
    queries: ValueAccessor[SavableTensor]
    #: ``(batch, kv_heads, seq, head_dim)``: layer i's keys as they enter the scores (after rotary).
    keys: ValueAccessor[SavableTensor]
    #: ``(batch, kv_heads, seq, head_dim)``: layer i's values as they enter the attention.
    values: ValueAccessor[SavableTensor]
    #: ``(batch, seq, heads, head_dim)``: layer i's per-head attention output, before the output projection.
    attention_heads_output: ValueAccessor[SavableTensor]
    # Module aliases the spec names (NNsight renames), on every architecture.
    #: The token embedding module's envoy.
    embed_tokens: Envoy
    #: The final norm's envoy (refused with the reason on a model without one).
    ln_final: Envoy
    #: The unembedding (``lm_head``) envoy.
    lm_head: Envoy
    #: The tokenizer traces use (loaded from the model unless one was passed).
    tokenizer: PreTrainedTokenizerBase

    def __init__(
        self,
        model: Union[str, Path, torch.nn.Module],
        trust_remote_code: bool = False,
        check_renaming: bool = True,
        remote: bool = False,
        allow_dispatch: bool = True,
        enable_attention_probs: bool = False,
        check_attn_probs_with_trace: bool = True,
        allow_multimodal: bool = False,
        rename_config: Any = None,
        *,
        spec: SpecArgument = None,
        tokenizer: Any = None,
        rename: Optional[dict[str, str]] = None,
        allow_unverified: bool = False,
        **kwargs: Any,
    ) -> None:
        if model is None or (isinstance(model, str) and not model.strip()):
            raise InputError(f"model: expected a hub id, a local checkpoint directory or a loaded PreTrainedModel, got {model!r}")
        for flag, value in (
            ("trust_remote_code", trust_remote_code), ("check_renaming", check_renaming), ("remote", remote),
            ("allow_dispatch", allow_dispatch), ("enable_attention_probs", enable_attention_probs),
            ("check_attn_probs_with_trace", check_attn_probs_with_trace), ("allow_multimodal", allow_multimodal),
            ("allow_unverified", allow_unverified),
        ):
            if not isinstance(value, bool):
                raise InputTypeError(f"StandardizedTransformer({flag}=...): expected True or False, got {value!r}")
        if remote:
            raise CapabilityUnavailableError(
                "StandardizedTransformer(remote=True): running nnspec's standard names on NDIF is not available. A "
                "remote request ships the trace together with the model object it reads, and a StandardizedTransformer "
                "(its spec, ports and hooks) is not sent that way; load the model locally, or trace remotely with "
                "nnsight's TransformersModel and the module paths from model.spec.modules"
            )
        tokenizer_kwargs = _tokenizer_settings(kwargs.pop("tokenizer_kwargs", None), tokenizer)
        if rename_config is not None:  # nnterp's renaming: checked here, applied to the spec below
            from .renameconfig import check_rename_config_type

            check_rename_config_type(rename_config)
        if enable_attention_probs:
            implementation = kwargs.get("attn_implementation", "eager")
            if implementation != "eager":
                raise InputError(
                    f"enable_attention_probs=True needs eager attention, but attn_implementation={implementation!r} "
                    "was passed; drop one of the two"
                )
            kwargs["attn_implementation"] = "eager"
        if isinstance(model, Path):
            model = str(model)
        normalize_dtype_kwargs(kwargs)  # `dtype=` on a transformers that only knows `torch_dtype=`
        revision = kwargs.get("revision")
        config, source = _load_config(model, trust_remote_code, revision)
        for key, value in split_model_kwargs(kwargs, config).items():
            setattr(config, key, value)  # config overrides, as from_pretrained applies them
        adapter = resolve_adapter(spec, getattr(config, "model_type", ""), source)
        if rename_config is not None:  # a spec with the paths and keys it names, checked on the module tree
            from .renameconfig import adapter_for_rename_config

            adapter = adapter_for_rename_config(adapter, rename_config, config, model, trust_remote_code)
        # Standard names describe the text model: a vision-language config's keys are read from its
        # text config (the config itself for a text-only model).
        effective = adapter.effective(text_config(config))
        check_overrides(text_config(config), adapter.spec, adapter.source)
        from .adapter import installed_version
        from .compat import refuse_unserved, warn_if_unverified

        # Before the weights load: refuses a release the spec does not serve, and a version pair
        # verified as failing for it.
        refuse_unserved(adapter.name, adapter.requires_transformers, adapter.requires_reason,
                        installed_version("transformers"), allow_unverified=allow_unverified)
        warn_if_unverified(
            adapter.name, installed_version("transformers"), installed_version("nnsight"), allow_unverified=allow_unverified
        )
        check_module_paths(effective, adapter.source)
        if tokenizer is None:
            tokenizer = _load_tokenizer(model, trust_remote_code, revision, tokenizer_kwargs)
        aliases = dict(adapter.rename_for(effective))
        aliases.pop(effective.modules.layers, None)  # `layers` is an nnspec accessor (index checks)
        # nnterp's tree on top of the HF one: model.model.layers[i].self_attn, model.model.ln_final...
        aliases = merge_aliases(aliases, backbone_aliases(effective))
        aliases.update(rename or {})
        if not isinstance(model, torch.nn.Module):
            kwargs.setdefault("config", config)  # already loaded: NNsight need not read it again
            from .placement import apply_default_device_map

            apply_default_device_map(model, kwargs)  # "auto" with accelerate and a GPU/MPS device, as nnterp
        # Blocks say why a standard branch name is missing (OPT's blocks have no `mlp` module).
        kwargs.setdefault("envoys", {f"{effective.modules.layers}.*": BlockEnvoy})
        # The class that builds what the spec describes (a vision-language wrapper's whole model).
        self._auto_class = auto_class(config, adapter.spec)
        # Kept for the tokenizer's user-visible settings, which NNsight's own set-up would reset.
        self._tokenizer_kwargs = tokenizer_kwargs
        build = partial(
            super().__init__, model, task="text-generation", tokenizer=tokenizer, rename=aliases,
            trust_remote_code=trust_remote_code,
        )
        try:
            build(**kwargs)
        except (RuntimeError, NotImplementedError) as exc:
            # Some releases' modules read a tensor's value while they are built (xIELU before
            # transformers 5.1 calls .item() in its __init__), which NNsight's weightless meta
            # build cannot give: such a model loads its weights now instead.
            if isinstance(model, torch.nn.Module) or kwargs.get("dispatch") or "meta" not in str(exc):
                raise
            warnings.warn(
                f"nnspec: {type(exc).__name__} while building the model on the meta device ({exc}); "
                "loading its weights now (as dispatch=True does)",
                NnspecWarning,
                stacklevel=3,
            )
            build(dispatch=True, **kwargs)
        self._adapter = adapter
        # Overrides may hold only for the attention implementation the built model runs.
        built = adapter.effective(text_config(self._module.config))
        if adapter.rename_for(built) != adapter.rename_for(effective):
            raise ModelStructureError(
                f"{adapter.source}: an override conditioned on the attention implementation changes module paths; "
                "such overrides may only change attention sources and limits"
            )
        effective = built
        self._spec = effective
        self._enable_attention_probs = enable_attention_probs
        hf_config = text_config(self._module.config)
        # What each standard name reads on this model: the adapter's generated records (the base
        # spec's), or the effective spec's compiled the same way when an override holds.
        self._records = adapter.records_for(effective)
        self._blocks_path = cast(Module, self._records.base["layers"]).path.removesuffix(".{i}")
        if check_renaming:
            structure = check_structure(self._module, hf_config, effective, adapter.source, self._records)
        else:
            structure = Structure(num_layers=len(cast(torch.nn.ModuleList, self._module.get_submodule(effective.modules.layers))))
        self._structure = structure
        modules = effective.modules
        self._final_modules = final_module_paths(self._module, effective)
        # Why `ln_final` names no module on this model (None: it names one).
        self._no_ln_final: Optional[str] = None
        if modules.ln_final is None:
            self._no_ln_final = (
                f"the {adapter.name!r} spec declares no final norm module (modules.ln_final is empty): the last block's "
                "output goes to the unembedding without one; project_on_vocab applies what the model does"
            )
        elif modules.ln_final not in self._final_modules:
            self._no_ln_final = (
                f"this config builds no {modules.ln_final!r} (modules.optional): the last block's output goes to the "
                "unembedding without a final norm; project_on_vocab applies what the model does"
            )
        self.num_layers: int = structure.num_layers
        self.hidden_size: int = adapter.config_value(hf_config, "hidden_size")
        self.vocab_size: int = adapter.config_value(hf_config, "vocab_size")
        # Per layer: a config may set the head count, head size or kv head count per layer (sliding
        # layers with their own attention sizes); `num_heads` / `head_dim` / `num_kv_heads` are the
        # value all layers share. None on a model without attention heads (a state-space model).
        n = self.num_layers
        heads = adapter.config_values_per_layer(hf_config, "num_heads", n)
        self.num_heads_per_layer: Optional[list[int]] = None if heads[0] is None else list(heads)
        self.num_kv_heads_per_layer: Optional[list[int]] = None if self.num_heads_per_layer is None else [
            value or heads[i] for i, value in enumerate(adapter.config_values_per_layer(hf_config, "num_kv_heads", n))
        ]
        self.head_dims: Optional[list[int]] = None if self.num_heads_per_layer is None else [
            value or self.hidden_size // heads[i]
            for i, value in enumerate(adapter.config_values_per_layer(hf_config, "head_dim", n))
        ]
        self.prefix_positions: int = _prefix_positions(effective, hf_config, adapter.source)
        # The trailing shape of residual-stream values: (hidden,), or several streams side by side.
        self.residual_shape: tuple[int, ...] = _residual_shape(effective, hf_config, adapter.source, self.hidden_size)
        # How many times each block runs per forward (a looped section runs several times; the
        # standard values of its blocks are those of the last pass).
        self.layer_passes: list[int] = _layer_passes(effective, hf_config, adapter.source, self.num_layers)
        # Every layer's branch facts, computed once (by the structural check when it ran).
        self._layer_records = structure.layers or layer_records(effective, hf_config, self.num_layers, self._records)
        self._block_shapes: dict[int, torch.Size] = {}
        self._positions: dict[tuple[str, Optional[str]], Optional[int]] = {}
        self._shape_hooks: list[Any] = []
        self._position_limit = position_limit(self._module, hf_config)
        self._run_lock = threading.Lock()
        self._running_thread: Optional[int] = None
        self._batch_mask: Optional[torch.Tensor] = None
        self._install_accessors()
        if self.dispatched:
            self._install_shape_hooks()

    # -- construction ---------------------------------------------------------------------------

    def _vision_language_class(self) -> Any:
        """The image-text-to-text auto class where it builds this model (None: the causal-LM one)."""
        auto = self.__dict__.get("_auto_class")
        return None if auto is None or auto.__name__ == "AutoModelForCausalLM" else auto

    def _loaded_preprocessors(self) -> set:
        """What NNsight loads besides the model, read from the pipeline class of the model's task.
        Text generation reads text only: transformers 4.48 to 4.53 leave the text-generation
        pipeline with the base class's flags saying it loads a feature extractor and an image
        processor (4.54 sets them off), and a checkpoint without either then fails to load."""
        needed: set = super()._loaded_preprocessors()
        return needed - {"feature_extractor", "image_processor"} if self.task == "text-generation" else needed

    def _load_meta(self, repo_id: str, *args: Any, **kwargs: Any) -> torch.nn.Module:
        import transformers

        auto = self._vision_language_class()
        if auto is None and "config" in kwargs and builds_text_model(transformers.AutoModelForCausalLM, kwargs["config"]):
            # The causal-LM class builds only the text model of this composite config, which
            # from_config does not see before transformers 5.10 (from_pretrained does).
            auto = transformers.AutoModelForCausalLM
        if auto is None or "config" not in kwargs:
            return super()._load_meta(repo_id, *args, **kwargs)
        # NNsight's meta build with the class the spec describes; the text-generation pipeline
        # around it gives text prompts the tokenizer, as for any causal LM.
        import copy

        from transformers import pipeline

        arch = {
            k: v for k, v in kwargs.items()
            if k in ("trust_remote_code", "torch_dtype", "dtype", "attn_implementation") and v != "auto"
        }
        module = from_config(auto, copy.deepcopy(kwargs["config"]), **arch)
        trust = {"trust_remote_code": kwargs["trust_remote_code"]} if "trust_remote_code" in kwargs else {}
        with pipeline_accepts(type(module).__name__):
            self.pipeline = pipeline(self.task, model=module, device="meta", **self._preprocessor_sources(), **trust)
        self._sync()
        return module

    def _load(self, repo_id: str, *args: Any, **kwargs: Any) -> torch.nn.Module:
        auto = self._vision_language_class()
        if auto is None or "config" not in kwargs:
            return super()._load(repo_id, *args, **kwargs)
        from nnsight.modeling.quantization import resolve_load_kwargs
        from nnsight.modeling.transformers import _split_pipeline_kwargs

        top_level, model_kwargs = _split_pipeline_kwargs(resolve_load_kwargs(kwargs))
        for name in ("config", "dtype", "torch_dtype", "device_map", "trust_remote_code", "token"):
            if name in top_level:
                model_kwargs[name] = top_level[name]
        module = auto.from_pretrained(repo_id, revision=self.revision, **model_kwargs)
        with pipeline_accepts(type(module).__name__):
            return self._wrap(module, **top_level)

    def _configure_tokenizer(self) -> None:
        # NNsight sets padding_side to "left" on every load; a padding_side the user asked for in
        # tokenizer_kwargs stays on the tokenizer object (traces still pad on the left: see _batch).
        super()._configure_tokenizer()
        side = self.__dict__.get("_tokenizer_kwargs", {}).get("padding_side")
        if side is not None and self.tokenizer is not None:
            self.tokenizer.padding_side = side

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails: `ln_final` on a model without a final norm module
        # is refused with the reason instead of a bare AttributeError.
        if name == "ln_final":
            reason = self.__dict__.get("_no_ln_final")
            if reason:
                raise CapabilityUnavailableError(f"ln_final is not available for this model: {reason}")
        return super().__getattr__(name)

    @property
    def spec(self) -> Spec:
        """The effective spec for this model (base spec plus the overrides that apply)."""
        return self._spec

    @property
    def adapter(self) -> Adapter:
        """The adapter the spec was compiled into."""
        return self._adapter

    @property
    def num_heads(self) -> Optional[int]:
        """The query head count every attention layer shares (``None`` without attention heads);
        refused where it differs between layers: read ``num_heads_per_layer[i]`` then."""
        return self._shared("num_heads", "num_heads_per_layer", self.num_heads_per_layer)

    @property
    def head_dim(self) -> Optional[int]:
        """The per-head width every attention layer shares (``None`` without attention heads);
        refused where it differs between layers: read ``head_dims[i]`` then."""
        return self._shared("head_dim", "head_dims", self.head_dims)

    @property
    def num_kv_heads(self) -> Optional[int]:
        """The key/value head count every attention layer shares (``None`` without attention
        heads); refused where it differs between layers: read ``num_kv_heads_per_layer[i]`` then."""
        return self._shared("num_kv_heads", "num_kv_heads_per_layer", self.num_kv_heads_per_layer)

    def _shared(self, name: str, per_layer: str, values: Optional[list[int]]) -> Optional[int]:
        if values is None:
            return None
        if len(set(values)) > 1:
            key = self._spec.config.key(name)
            raise CapabilityUnavailableError(
                f"{name} differs between layers on this model (its config sets {key!r} per layer: "
                f"{', '.join(str(v) for v in sorted(set(values)))}): read model.{per_layer}[i] for layer i"
            )
        return values[0] if values else None

    @property
    def limits(self) -> dict[str, str]:
        """Promises this model cannot keep, by capability, with the reason."""
        return self._spec.limits.declared()

    def _block(self, i: int) -> Any:
        return self.get(self._blocks_path)[i]

    def _refusal(self, name: str) -> Optional[str]:
        """The reason the adapter states for refusing model-level capability ``name`` (None: served)."""
        record = self._records.base.get(name)
        return record.reason if isinstance(record, Refused) else None

    def _read(self, name: str, i: int) -> Read:
        """Layer ``i``'s record for standard value ``name`` (the accessors refuse a value the layer
        does not serve before asking for its port)."""
        read = self._layer_records[i].reads[name]
        if not isinstance(read, Read):
            raise ModelStructureError(f"{name}[{i}]: the {self._adapter.name!r} adapter states no read for it ({read!r})")
        return read

    def _envoy(self, path: str, i: int) -> Any:
        """The module at a record's ``path`` for layer ``i``: within block ``i`` (``{i}`` the layer
        index), or from the model's root."""
        block = self._layer_records[i].reads["layers"]
        prefix = cast(Module, block).path
        if path == prefix:
            return self._block(i)
        if path.startswith(prefix + "."):
            return self._block(i).get(path[len(prefix) + 1 :])
        return self.get(path.replace("{i}", str(i)))

    def _flat_shape(self, i: int) -> Any:
        def shape() -> torch.Size:
            return self._block_shapes[i]

        return shape

    def branch(self, name: str, i: int) -> Branch:
        """Layer ``i``'s facts for branch ``name`` (``"attention"``, the token mixer, or ``"mlp"``);
        hybrid models differ per layer. A branch the layer lacks has ``module = None``."""
        return self._layer_records[i].branch(name)

    def mixer_kind(self, i: int) -> str:
        """What layer ``i``'s token mixer computes: ``"softmax"``, ``"linear"`` (attention),
        ``"state_space"``, ``"recurrent"``, ``"convolution"``, or ``"none"`` (no mixer)."""
        return self._layer_records[layer_index("mixer_kind", i, self.num_layers)].attention.kind

    @property
    def mixer_kinds(self) -> list[str]:
        """Every layer's mixer kind, in order (see :meth:`mixer_kind`)."""
        return [a.kind for a in (r.attention for r in self._layer_records)]

    def _contribution(self, label: str, name: str, facts: BranchFacts, i: int) -> ContributionPort:
        # `facts` holds the record's scale and residual argument as found on the model at load.
        read = self._read(label, i)
        return ContributionPort(
            f"{label}[{i}]",
            self._envoy(read.module, i),
            element=read.element or 0,
            scale=facts.scale,
            residual_position=facts.residual_position,
            residual_name=read.minus_residual,
            clone=read.clone,
            shape=self._flat_shape(i) if read.flattened else None,
            where=f"{self._adapter.source}: {name}.element = {read.element}",
            prefix=self.prefix_positions,
            bias_element=read.bias_element,
        )

    def _module_output(self, label: str, name: str, i: int) -> OutputPort:
        read = self._read(label, i)
        return OutputPort(
            f"{label}[{i}]", self._envoy(read.module, i), read.element or 0,
            where=f"{self._adapter.source}: {name}.module = {self.branch(name, i).module!r}",
            prefix=0 if read.flattened else self.prefix_positions,
        )

    def _missing_branch(self, name: str, i: int) -> Optional[str]:
        """Why block ``i`` has no ``name`` (``self_attn``, ``mixer``, ``mlp``) module, for the error."""
        if not 0 <= i < self.num_layers:
            return None
        branch = self.branch("mlp" if name == "mlp" else "attention", i)
        lacks = self._no_mlp(i) if name == "mlp" else (self._no_mixer(i) if name == "mixer" else self._not_attention(i))
        if lacks is not None:
            return lacks
        if branch.module is None:
            limit = self._spec.limits.mlp_module if name == "mlp" else self._spec.limits.attention_module
            return (limit or f"the {self._adapter.name!r} spec names no module for this branch.") + (
                f" Read model.{'mlps' if name == 'mlp' else 'attentions'}_input[{i}] / _output[{i}] instead."
            )
        return (
            f"its {'MLP' if name == 'mlp' else 'token mixer'} is {branch.module!r} (spec {self._adapter.source}); "
            f"use model.{ {'mlp': 'mlps', 'self_attn': 'attentions'}.get(name, 'mixers') }[{i}]"
        )

    def _no_module(self, name: str, i: int) -> Optional[str]:
        if self.branch(name, i).module is None:
            return f"layer {i}'s {name} branch has no module of its own in this spec (its computation sits in the block)"
        return None

    def _branch_input(self, label: str, name: str, i: int) -> InputPort:
        read = self._read(label, i)
        return InputPort(
            f"{label}[{i}]",
            self._envoy(read.module, i),
            shape=self._flat_shape(i) if read.flattened else None,
            prefix=self.prefix_positions,
        )

    # Why a layer lacks a branch: each accessor asks per layer, and refuses with the reason.
    def _no_mixer(self, i: int) -> Optional[str]:
        attention = self._layer_records[i].attention
        if attention.kind == "none" or attention.contribution_path is None:
            return f"layer {i} has no token mixer (its block holds only an MLP, so layers_output = layers_input + mlps_output)"
        return None

    def _not_attention(self, i: int) -> Optional[str]:
        reason = self._no_mixer(i)
        if reason is None and self._layer_records[i].attention.kind not in ATTENTION_KINDS:
            kind = self._layer_records[i].attention.kind
            reason = (
                f"layer {i}'s token mixer ({self._layer_records[i].attention.module!r}) is {MIXER_KINDS[kind]}, kind '{kind}', not attention; "
                f"read mixers_input[{i}] / mixers_output[{i}] for it"
            )
        return reason

    def _no_mlp(self, i: int) -> Optional[str]:
        if self._layer_records[i].mlp.contribution_path is None:
            return f"layer {i} has no MLP (its block is the token mixer alone, so layers_output = layers_input + mixers_output)"
        return None

    def _install_accessors(self) -> None:
        spec, n, limits = self._spec, self.num_layers, self._spec.limits
        self.layers = ModuleAccessor("layers", n, self._block)
        prefix = self.prefix_positions

        def block_output(i: int) -> OutputPort:
            read = self._read("layers_output", i)
            return OutputPort(
                f"layers_output[{i}]", self._envoy(read.module, i), read.element or 0,
                where=f"{self._adapter.source}: layer.hidden_element = {read.element or 0}", prefix=prefix,
            )

        self.layers_input = ValueAccessor(
            "layers_input", n, lambda i: InputPort(f"layers_input[{i}]", self._envoy(self._read("layers_input", i).module, i), prefix=prefix)
        )
        self.layers_output = ValueAccessor("layers_output", n, block_output)
        self.layers_output.returns_tuple = spec.layer.returns == "tuple"
        self.layers_input.returns_tuple = False  # a block reads its hidden state as a tensor
        kinds = {a.kind for a in (r.attention for r in self._layer_records)}
        no_attention = None
        if not kinds & set(ATTENTION_KINDS):
            described = ", ".join(f"{MIXER_KINDS[k]} ('{k}')" for k in sorted(kinds))
            no_attention = f"this model has no attention: its token mixer is {described}; read mixers_input / mixers_output"
        # A branch exists where the spec names what it adds (OPT's MLP has no module of its own).
        no_mixer = None if any(a.contribution_path for a in (r.attention for r in self._layer_records)) else "this model's blocks have no token mixer"
        no_mlp = None if any(m.contribution_path for m in (r.mlp for r in self._layer_records)) else (
            "this model's blocks have no MLP: layers_output[i] = layers_input[i] + mixers_output[i]"
        )
        mixer_inputs: dict[int, Any] = {}
        mixer_outputs: dict[int, Any] = {}

        def module_of(plural: str) -> Callable[[int], Any]:
            def module(i: int) -> Any:
                record = self._layer_records[i].reads[plural]
                if not isinstance(record, Module):  # the accessors refuse a branch without a module first
                    raise ModelStructureError(f"{plural}[{i}]: {getattr(record, 'reason', record)}")
                return self._envoy(record.path, i)

            return module

        def module_refusal(branch: str, refuse: Callable[[int], Optional[str]]) -> Callable[[int], Optional[str]]:
            return lambda i: refuse(i) or self._no_module(branch, i)

        for plural, name, facts, unavailable, module_limit, refuse, shared in (
            ("mixers", "attention", self._structure.attention, no_mixer, None, self._no_mixer, (mixer_inputs, mixer_outputs)),
            ("attentions", "attention", self._structure.attention, no_attention, limits.attention_module, self._not_attention,
             (mixer_inputs, mixer_outputs)),
            ("mlps", "mlp", self._structure.mlp, no_mlp, limits.mlp_module, self._no_mlp, (None, None)),
        ):
            # A limit on the module (no module to return) leaves the values served.
            module_reason = module_limit or unavailable
            setattr(self, plural, ModuleAccessor(plural, n, module_of(plural), module_reason, refuse))
            setattr(self, f"{plural}_input", ValueAccessor(
                f"{plural}_input", n, partial(self._branch_input, f"{plural}_input", name), unavailable, refuse, shared[0],
            ))
            setattr(self, f"{plural}_output", ValueAccessor(
                f"{plural}_output", n, partial(self._contribution, f"{plural}_output", name, facts),
                limits.contribution or unavailable, refuse, shared[1],
            ))
            if plural != "mixers":
                # The branch module's own output (first element of a tuple), before anything the
                # block applies to it: what nnterp calls attentions_output / mlps_output.
                setattr(self, f"{plural}_module_output", ValueAccessor(
                    f"{plural}_module_output", n, partial(self._module_output, f"{plural}_module_output", name),
                    module_reason, module_refusal(name, refuse),
                ))
        # The recurrent state a state-space, linear-attention or recurrent mixer leaves after the
        # last position, from the cache the forward returns (read it after the other values).
        stateful = STATEFUL_KINDS
        no_state = None if any(a.kind in stateful and a.contribution_path for a in (r.attention for r in self._layer_records)) else (
            "this model has no state-space, linear-attention or recurrent mixer, so no layer keeps a recurrent state"
        )
        self.mixer_states = ValueAccessor(
            "mixer_states", n, lambda i: MixerStatePort(f"mixer_states[{i}]", self, i), no_state,
            lambda i: None if self._layer_records[i].attention.kind in stateful and self._layer_records[i].attention.contribution_path else (
                f"layer {i}'s token mixer is {MIXER_KINDS[self._layer_records[i].attention.kind]}, which keeps no recurrent state"
            ),
        )
        # Cloned: some models scale the embedding output in place (CTRL's `inputs_embeds *= sqrt(d)`).
        embeddings = cast(Read, self._records.base["token_embeddings"])
        self._token_embeddings = OutputPort(
            "token_embeddings", self.get(embeddings.module), clone=embeddings.clone, prefix=self.prefix_positions
        )
        self._install_attention_sources()
        if any(p > 1 for p in self.layer_passes):
            # A looped block's standard values are those of its last pass (the one the blocks
            # after the section read): every read and write binds to that call of its modules.
            for value in vars(self).values():
                if isinstance(value, ValueAccessor):
                    value.occurrences = [p - 1 for p in self.layer_passes]

    # Probabilities, q/k/v and the per-head output live inside the attention computation.
    _SOURCES = (
        ("attention_probabilities", "probabilities", "attention_probabilities"),
        ("queries", "queries", "qkv"),
        ("keys", "keys", "qkv"),
        ("values", "values", "qkv"),
        ("attention_heads_output", "per_head_output", "per_head_output"),
    )

    def _install_attention_sources(self) -> None:
        attention, limits = self._spec.attention, self._spec.limits.declared()
        for name, field, capability in self._SOURCES:
            ref = getattr(attention, field)
            reason = limits.get(capability)
            if reason is None and all(a.kind != "softmax" for a in (r.attention for r in self._layer_records)):
                found = sorted({a.kind for a in (r.attention for r in self._layer_records)})
                reason = f"this model has no softmax attention (its token mixer is {', '.join(MIXER_KINDS[k] for k in found)})"
            if reason is None and (ref is None or attention.module is None):
                reason = f"the spec ({self._adapter.source}) declares no attention.{field} source"
            make = lambda i, n=name: self._source_port(n, i)  # noqa: E731
            if name == "attention_probabilities":
                accessor: ValueAccessor = AttentionProbabilitiesAccessor(
                    name, self.num_layers, make, reason, self._not_eager, self._check_probabilities, self._print_probabilities
                )
            else:
                accessor = ValueAccessor(name, self.num_layers, make, reason)
            setattr(self, name, accessor)

    def _source_port(self, name: str, i: int) -> SourcePort:
        attention = self._layer_records[i].attention
        read = self._read(name, i)
        host = self._layer_records[i].reads.get("attentions")

        def check() -> None:
            if attention.kind != "softmax":
                raise CapabilityUnavailableError(
                    f"{name}[{i}] is not available: layer {i}'s token mixer ({attention.module!r}) is "
                    f"{MIXER_KINDS[attention.kind]}, kind '{attention.kind}', not softmax attention"
                )
            if name == "attention_probabilities":
                self._require_eager()

        return SourcePort(
            f"{name}[{i}]", lambda: self._envoy(read.module, i), read, check,
            heads=1 if self.num_heads_per_layer is None else self.num_heads_per_layer[i],
            before=lambda: self._fetch_early(name, i),
            in_host=isinstance(host, Module) and host.path == read.module,
        )

    def _fetch_early(self, name: str, i: int) -> None:
        """Before reading attention internal ``name`` of layer ``i``: fetch what the values
        documented after it need and the model computes before it (see :mod:`.readorder`), so
        that :data:`~nnspec.runtime.readorder.LAYER_ORDER` works on every architecture."""
        contribution = self.attentions_output
        branch = self.branch("attention", i)
        # The residual the attention module receives, where the module that adds it runs the
        # attention inside it; a module called after the attention is read after it anyway.
        surrounds = branch.module is not None and (
            branch.contribution_path == branch.module or branch.module.startswith(f"{branch.contribution_path}.")
        )
        if contribution.unavailable is None and branch.includes_residual and surrounds:
            cast(ContributionPort, contribution.port(i)).prefetch()
        mine = self._position(name, i)
        if mine is None:
            return
        early = []
        for other in ATTENTION_INTERNALS[ATTENTION_INTERNALS.index(name) + 1 :]:
            accessor = getattr(self, other)
            if accessor.unavailable is not None or not getattr(accessor, "enabled", True) or not accessor.port(i).available():
                continue
            position = self._position(other, i)
            if position is not None and position < mine:
                early.append((position, other))
        for _, other in sorted(early):
            getattr(self, other).port(i).prefetch()

    def _position(self, name: str, i: int) -> Optional[int]:
        key = (name, self._layer_records[i].attention.module)
        if key not in self._positions:
            self._positions[key] = getattr(self, name).port(i).position()
        return self._positions[key]

    @property
    def attention_implementation(self) -> Optional[str]:
        """The attention implementation the model runs (``"eager"``, ``"sdpa"``...), read from its
        config (NNsight 0.8.0 has no ``attn_implementation`` property; 0.8.1 does)."""
        return getattr(self._module.config, "_attn_implementation", None)

    def _not_eager(self) -> Optional[str]:
        """Why attention probabilities cannot be served as loaded (None: eager attention)."""
        try:
            self._require_eager()
        except CapabilityUnavailableError as error:
            return str(error)
        return None

    _CHECK_PROMPT = "The quick brown fox jumps over the lazy dog"

    def _run_for_check(self, what: str, allow_dispatch: bool) -> None:
        if not allow_dispatch and not self.dispatched:
            raise InputError(
                f"{what}(allow_dispatch=False): this runs the model on a short prompt, and its weights are not loaded "
                "yet; pass allow_dispatch=True, or call model.dispatch() first"
            )

    def _check_probabilities(self, i: int, use_trace: bool, allow_dispatch: bool) -> None:
        """``attention_probabilities.check_source``: shape, row sums and (``use_trace``) that an
        edit reaches the logits, on a short prompt."""
        from ..errors import ConformanceError

        self._run_for_check("check_source", allow_dispatch)
        saved: list[Any] = []
        with torch.no_grad():
            with self.trace(self._CHECK_PROMPT):
                probs = self.attention_probabilities[i]
                saved.append(probs.save())
                if use_trace:
                    noise = torch.rand_like(probs) + 0.1
                    self.attention_probabilities[i] = noise / noise.sum(-1, keepdim=True)
                saved.append(self.logits.save())
            if use_trace:
                with self.trace(self._CHECK_PROMPT):
                    saved.append(self.logits.save())
        probs = saved[0]
        heads = None if self.num_heads_per_layer is None else self.num_heads_per_layer[i]
        if probs.ndim != 4 or probs.shape[0] != 1 or probs.shape[1] != heads or probs.shape[2] != probs.shape[3]:
            raise ConformanceError(
                f"attention_probabilities[{i}] has shape {tuple(probs.shape)}, not (batch=1, heads={heads}, seq, seq): the "
                f"spec's attention.probabilities source ({self._adapter.source}) does not read the probabilities"
            )
        sums = probs.float().sum(-1)
        sinks = bool(getattr(self._spec.attention, "sinks", None))
        if not bool((sums <= 1 + 1e-3).all()) or (not sinks and not torch.allclose(sums, torch.ones_like(sums), atol=1e-3)):
            raise ConformanceError(
                f"attention_probabilities[{i}]: rows sum to {sums.min().item():.4f}..{sums.max().item():.4f}, not 1"
            )
        if use_trace and torch.allclose(saved[1], saved[2]):
            raise ConformanceError(
                f"attention_probabilities[{i}]: replacing the probabilities left the logits unchanged, so the value read is "
                "not the one the model uses"
            )

    def _print_probabilities(self, i: int, allow_dispatch: bool) -> None:
        """``attention_probabilities.print_source``: the operation read, in context, and its function."""
        self._run_for_check("print_source", allow_dispatch)
        port = cast(SourcePort, self.attention_probabilities.port(i))
        found: list[str] = []
        with torch.no_grad(), self.trace(self._CHECK_PROMPT) as tracer:
            node, parent = port._envoy(), None
            for step in port.read.steps():
                parent = node.source
                node = getattr(parent, label_for(parent.names, step, port.label))
            if parent is None:  # a value read from a submodule's input or output
                found += [f"the module {node.path}", inspect.getsource(type(node._module).forward)]
            else:
                found += [str(node), str(parent)]
            tracer.stop()
        print(f"attention_probabilities[{i}] is read from ({self._adapter.source}: attention.probabilities):")
        print(found[0])
        print("\nWhole source it sits in:")
        print(found[1])

    def _require_eager(self) -> None:
        if self.attention_implementation != "eager":
            raise CapabilityUnavailableError(
                f"attention probabilities need eager attention, but this model runs {self.attention_implementation!r}: "
                "load it with StandardizedTransformer(..., enable_attention_probs=True) (or attn_implementation='eager')"
            )

    # Blocks whose branches see flattened tokens need the block's (batch, seq) shape; a forward
    # pre-hook on each block records it. Installed on the real modules once they exist.
    def _install_shape_hooks(self) -> None:
        if not (self._spec.attention.flattened or self._spec.mlp.flattened):
            return
        for handle in self._shape_hooks:
            handle.remove()
        blocks = cast(torch.nn.ModuleList, self._module.get_submodule(self._spec.modules.layers))

        def recorder(i: int) -> Any:
            def hook(module: Any, args: tuple, kwargs: dict) -> None:
                hidden = args[0] if args else next(iter(kwargs.values()))
                self._block_shapes[i] = hidden.shape

            return hook

        self._shape_hooks = [
            block.register_forward_pre_hook(recorder(i), with_kwargs=True) for i, block in enumerate(blocks)
        ]

    def dispatch(self) -> None:
        """Load the real weights (done automatically by the first trace)."""
        was = self.dispatched
        super().dispatch()
        if not was:
            self._install_shape_hooks()

    # -- running: one trace at a time, weights before dtype moves -----------------------------------

    def interleave(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one trace's forward. Traces of one model run one at a time: a trace opened inside
        another is refused, and a trace from a second thread waits for the first to finish."""
        me = threading.get_ident()
        if self._running_thread == me:
            raise InputError(
                "a trace of this model was opened inside another trace of it; NNsight runs one forward per trace: "
                "close the first trace, or use tracer.invoke(...) inside it for several inputs"
            )
        with self._run_lock:
            self._running_thread = me
            try:
                return super().interleave(fn, *args, **kwargs)
            finally:
                self._running_thread = None

    def to(self, *args: Any, **kwargs: Any) -> "StandardizedModel":
        """Move or cast the model (``model.to("cuda")``, ``model.to(torch.bfloat16)``); on a model
        not loaded yet, the weights are loaded first so that the change is kept."""
        if not self.dispatched:
            self.dispatch()
        self._module.to(*args, **kwargs)
        return self

    def __reduce_ex__(self, protocol: Any) -> Any:
        raise TypeError(
            "a StandardizedTransformer cannot be pickled (it holds live hooks into the model): save the weights with "
            "model._module.save_pretrained(path) and load them with StandardizedTransformer(path)"
        )

    def __deepcopy__(self, memo: dict) -> Any:
        raise InputTypeError(
            "copy.deepcopy of a StandardizedTransformer is not supported (its NNsight envoys hold hooks into the "
            "model): load another one with StandardizedTransformer(path), or deep-copy model._module for a plain copy"
        )

    # -- inputs: checked before the forward, padded on the left ------------------------------------

    def _batch_size(self, *inputs: Any, **kwargs: Any) -> int:
        check_invoke(inputs)
        return super()._batch_size(*inputs, **kwargs)

    def _batch(self, invokes: list, fn: Any) -> tuple:
        tokenizer = self.tokenizer
        side = getattr(tokenizer, "padding_side", "left")
        if side != "left":
            warn_right_padding(tokenizer)
            tokenizer.padding_side = "left"
        try:
            args, kwargs = super()._batch(invokes, fn)
        finally:
            if side != "left":
                tokenizer.padding_side = side
        check_encoding(kwargs, self.vocab_size, self._position_limit)
        self._batch_mask = kwargs.get("attention_mask")
        reason = self._refusal("padding")
        mask = self._batch_mask
        if reason and isinstance(mask, torch.Tensor) and mask.ndim == 2 and not bool(mask.all()):
            raise CapabilityUnavailableError(
                f"padding is not available for this model: {reason} Batch prompts of the same token length, or run "
                "them one at a time"
            )
        return args, kwargs

    # -- model-level values -----------------------------------------------------------------------

    @property
    def token_embeddings(self) -> SavableTensor:
        """Output of the token embedding module, ``(batch, seq, hidden)`` (before any position
        embedding or scaling the model applies afterwards)."""
        return cast(SavableTensor, self._token_embeddings.get())

    @token_embeddings.setter
    def token_embeddings(self, value: torch.Tensor) -> None:
        self._token_embeddings.set(value)

    @property
    def logits(self) -> SavableTensor:
        """The model's logits, ``(batch, seq, vocab)``, after every final transform."""
        return self.output.logits  # type: ignore[arg-type]  # NNsight's IEnvoy protocol types `path` Optional; Envoy's is a str

    @property
    def next_token_probs(self) -> SavableTensor:
        """Softmax of the last position's logits, ``(batch, vocab)`` (batches are left-padded)."""
        return cast(SavableTensor, self.logits[:, -1, :].softmax(-1))

    def _model_input(self, name: str) -> Any:
        args, kwargs = self.inputs  # type: ignore[arg-type]  # NNsight's IEnvoy protocol types `path` Optional; Envoy's is a str
        if name in kwargs:
            return kwargs[name]
        if name == "input_ids" and args:
            return args[0]
        raise UnknownNameError(f"this trace passed no {name} to the model")

    @property
    def input_ids(self) -> SavableTensor:
        """Token ids the model receives, ``(batch, seq)``. Read it before any module."""
        return self._model_input("input_ids")

    @property
    def attention_mask(self) -> SavableTensor:
        """Attention mask the model receives, ``(batch, seq)``. Read it before any module."""
        return self._model_input("attention_mask")

    @property
    def input_size(self) -> torch.Size:
        """Shape of ``input_ids``, ``(batch, seq)``."""
        return self.input_ids.shape

    @property
    def _model(self) -> torch.nn.Module:
        """The wrapped HF model: NNsight 0.7's name (which nnterp code reads) for ``_module``."""
        return self._module

    @property
    def attn_probs_available(self) -> bool:
        """Whether ``attention_probabilities`` can be read and written on this model as loaded."""
        return self.attention_probabilities.enabled

    # -- helpers -----------------------------------------------------------------------------------

    def project_on_vocab(self, hidden_state: torch.Tensor) -> torch.Tensor:
        """Logits for residual-stream states ``(..., hidden)`` -> ``(..., vocab)`` (``hidden`` is
        :attr:`residual_shape`: wider where the spec declares several residual streams).

        Applies ``ln_final``, any modules the spec lists before ``lm_head``, ``lm_head``, then every
        final transform the model applies (softcapping, logit scale, divisors), so that
        ``project_on_vocab(layers_output[-1])`` equals ``logits``. Works inside and outside a trace.
        Refused with the spec's reason where that cannot hold (``limits.project_on_vocab``: the final
        norm reads something other than the last block's output).
        """
        reason = self._refusal("project_on_vocab")
        if reason:
            raise CapabilityUnavailableError(
                f"project_on_vocab is not available for this model: {reason} The final modules are still there to "
                "apply by hand (model.ln_final, model.lm_head)"
            )
        if not self._is_residual(hidden_state, 0, None):
            shape = tuple(hidden_state.shape) if isinstance(hidden_state, torch.Tensor) else type(hidden_state).__name__
            raise ShapeMismatchError(
                f"project_on_vocab(hidden_state): expected (..., {self._residual_text()}), got {shape}"
            )
        if not self.dispatched:
            self.dispatch()
        weight = next(self._module.parameters())
        x = hidden_state.to(dtype=weight.dtype, device=weight.device)  # a float32 vector on a bf16 model
        # One code path with nnspec.nnsight_utils.project_on_vocab on plain NNsight models.
        from .unembed import unembed

        finals = [self.get(path) for path in self._final_modules]
        return unembed(x, finals, self.lm_head, self._spec, text_config(self._module.config))

    def steer(
        self,
        layers: Union[int, list[int]],
        steering_vector: torch.Tensor,
        factor: float = 1,
        positions: Union[int, list[int], torch.Tensor, None] = None,
        token_positions: Union[int, list[int], torch.Tensor, None] = None,
        batch_index: Union[int, list[int], torch.Tensor, None] = None,
    ) -> None:
        """Inside a trace: add ``factor * steering_vector`` to ``layers_output`` of each of
        ``layers``, in the prompts ``batch_index`` (default all) at ``token_positions`` (default all).

        ``steering_vector`` has the residual stream's shape, :attr:`residual_shape` (``(hidden,)``
        on a single-stream model). ``token_positions`` (an int, a list or a 1-D tensor) count within
        each prompt's own tokens: ``0`` is every prompt's first real token in a left-padded batch,
        negative positions count from its end. ``batch_index`` (an int, a list or a 1-D tensor)
        picks rows of this invoke's batch; with both, every chosen row is steered at every chosen
        position. ``positions`` is the deprecated name of ``token_positions``. Arguments are checked
        before the model runs (out-of-range positions or rows raise, naming the argument).
        """
        if positions is not None:
            if token_positions is not None:
                raise InputError("steer: Cannot specify both positions= (deprecated) and token_positions=; give token_positions=")
            warnings.warn("steer(positions=...) is deprecated: use token_positions=", DeprecationWarning, stacklevel=2)
            token_positions = positions
        self._steer(layers, steering_vector, factor, token_positions, batch_index)

    def _steer(self, layers: Any, steering_vector: Any, factor: Any, token_positions: Any, batch_index: Any) -> None:
        if not self._is_residual(steering_vector, 0, 0):
            got = tuple(steering_vector.shape) if isinstance(steering_vector, torch.Tensor) else type(steering_vector).__name__
            raise ShapeMismatchError(
                f"steer(steering_vector=...): expected shape ({self._residual_text()},), got {got}"
            )
        if isinstance(factor, bool) or not isinstance(factor, (int, float, torch.Tensor)) or (
            isinstance(factor, torch.Tensor) and factor.numel() != 1
        ):
            raise InputTypeError(f"steer(factor=...): expected a number, got {factor!r}")
        chosen = [layers] if not isinstance(layers, (list, tuple, range, torch.Tensor)) else list(layers)
        if not chosen:
            raise InputError("steer(layers=...): the list of layers is empty")
        order = sorted({layer_index("steer(layers=...)", layer, self.num_layers) for layer in chosen})
        wanted_rows = None if batch_index is None else _indices(batch_index, "steer(batch_index=...)")
        wanted_cols = None if token_positions is None else _indices(token_positions, "steer(token_positions=...)")
        shape = self._invoke_shape()
        rows = cols = None
        if shape is not None:  # checked before the model runs
            rows, cols = self._steer_targets(wanted_rows, wanted_cols, *shape)
        for i in order:
            hidden = self.layers_output[i]
            if shape is None:
                shape = (hidden.shape[0], hidden.shape[1])
                rows, cols = self._steer_targets(wanted_rows, wanted_cols, *shape)
            if cols is not None and hidden.shape[1] != shape[1]:
                # A generation step after the first runs on the new token only (the rest is cached).
                raise InputError(
                    f"steer(token_positions=...): this forward holds {hidden.shape[1]} position(s), not the "
                    f"prompt's {shape[1]}: inside model.generate, each step after the first runs on the newly "
                    "generated token only; steer those steps without token_positions, and give "
                    "token_positions only at step 0"
                )
            delta = factor * steering_vector.to(device=hidden.device, dtype=hidden.dtype)
            if rows is None and cols is None:
                self.layers_output[i] = hidden + delta
                continue
            steered = hidden.clone()
            picked = torch.arange(hidden.shape[0]) if rows is None else rows
            if cols is None:
                steered[picked] += delta
            else:
                steered[picked.unsqueeze(-1), cols[picked]] += delta
            self.layers_output[i] = steered

    def _invoke_shape(self) -> Optional[tuple[int, int]]:
        """``(batch, seq)`` of the current invoke, known before the model runs from the batch's
        attention mask (None when the trace passed none)."""
        mask = self._batch_mask
        if not isinstance(mask, torch.Tensor) or mask.ndim != 2:
            return None
        from nnsight.intervention.interleaver import Mediator

        try:
            group = Mediator.current("steer").batch_group
        except (ValueError, AttributeError):
            group = None
        return (mask.shape[0] if group is None else group[1]), mask.shape[1]

    def _steer_targets(self, rows: Optional[list[int]], positions: Optional[list[int]], batch: int, seq: int) -> tuple:
        """The rows (``(n,)``) and per-row columns (``(batch, m)``) ``steer`` edits (None: all)."""
        picked = None
        if rows is not None:
            bad = [r for r in rows if not -batch <= r < batch]
            if bad:
                raise InputError(
                    f"steer(batch_index={bad[0]}): out of range for a batch of {batch} prompts "
                    f"(valid: 0..{batch - 1}, or -{batch}..-1 from the end)"
                )
            picked = torch.tensor(sorted({r % batch for r in rows}), dtype=torch.long)
        cols = None if positions is None else self._columns(positions, batch, seq, "steer(token_positions=...)")
        return picked, cols

    def _columns(self, positions: Any, batch: int, seq: int, label: str) -> torch.Tensor:
        """``(batch, n)`` columns of positions counted within each prompt's own tokens."""
        wanted = positions.tolist() if isinstance(positions, torch.Tensor) else positions
        wanted = [wanted] if not isinstance(wanted, (list, tuple)) else list(wanted)
        if not wanted or not all(isinstance(p, int) and not isinstance(p, bool) for p in wanted):
            raise InputError(f"{label}: positions are token indices (ints), got {positions!r}")
        index = torch.tensor(wanted, dtype=torch.long).expand(batch, len(wanted))
        return columns(invoke_mask(self._batch_mask, batch, seq), index, label)

    def skip_layers(
        self,
        start_layer: int,
        end_layer: int,
        skip_with: Optional[torch.Tensor] = None,
        layer_returns_tuple: Optional[bool] = None,
    ) -> None:
        """Skip blocks ``start_layer..end_layer`` (inclusive): each returns ``skip_with``
        (``(batch, seq, hidden)``; default: ``layers_input[start_layer]``) instead of running.

        ``layer_returns_tuple`` need not be given: the spec says whether a block returns a tuple
        (:attr:`layers_output.returns_tuple`), and nnspec wraps ``skip_with`` in what the block
        returns. Given, it must agree with the spec (a disagreement raises :class:`InputError`).
        """
        if layer_returns_tuple is not None:
            if not isinstance(layer_returns_tuple, bool):
                raise InputTypeError(f"skip_layers(layer_returns_tuple=...): expected True, False or None, got {layer_returns_tuple!r}")
            if layer_returns_tuple != self.layers_output.returns_tuple:
                says = "returns a tuple" if self.layers_output.returns_tuple else "returns a tensor, not a tuple"
                raise InputError(
                    f"skip_layers(layer_returns_tuple={layer_returns_tuple}): the spec ({self._adapter.source}: "
                    f"layer.returns) says this model's block {says}; leave layer_returns_tuple out"
                )
        start = layer_index("skip_layers(start_layer=...)", start_layer, self.num_layers)
        end = layer_index("skip_layers(end_layer=...)", end_layer, self.num_layers)
        if end < start:
            raise InputError(f"skip_layers: end_layer ({end_layer}) comes before start_layer ({start_layer})")
        if skip_with is None:
            # The block's whole input, with any positions the model placed in front of the input.
            with at_occurrence(self.layer_passes[start] - 1):
                skip_with = self.layers[start].input if self.prefix_positions else self.layers_input[start]
        elif not self._is_residual(skip_with, 2, 2):
            shape = tuple(skip_with.shape) if isinstance(skip_with, torch.Tensor) else type(skip_with).__name__
            raise ShapeMismatchError(
                f"skip_layers(skip_with=...): expected a residual-stream tensor (batch, seq, {self._residual_text()}), "
                f"got {shape}"
            )
        elif self.prefix_positions:
            # The prefix positions pass through unchanged: the block returns them as it received them.
            skip_with = with_prefix(self.layers[start].input, skip_with, self.prefix_positions)
        worker_memo().setdefault("skipped", set()).update(range(start, end + 1))
        for i in range(start, end + 1):
            with at_occurrence(self.layer_passes[i] - 1):  # a looped block: its last pass
                self._skip_block(i, skip_with)

    def _skip_block(self, i: int, skip_with: Any) -> None:
        """Block ``i`` returns ``skip_with`` (in the tuple it returns) instead of running."""
        layer = self._spec.layer
        if layer.returns != "tuple":
            replacement: Any = skip_with
        elif layer.skip_returns is None:
            slots = [None] * (layer.hidden_element + 2)
            slots[layer.hidden_element] = skip_with
            replacement = tuple(slots)
        else:
            # Arguments the block passes on (a recurrent state) go on as the block received them.
            replacement = tuple(
                skip_with if entry == "hidden" else (self._block_argument(i, entry) if entry else None)
                for entry in layer.skip_returns
            )
        self.layers[i].skip(replacement)

    def _block_argument(self, i: int, name: str) -> Any:
        """Forward argument ``name`` of block ``i`` as the block receives it (None when not passed)."""
        args, kwargs = self.layers[i].inputs  # type: ignore[arg-type]  # NNsight's IEnvoy protocol types `path` Optional; Envoy's is a str
        if name in kwargs:
            return kwargs[name]
        block = cast(torch.nn.ModuleList, self._module.get_submodule(self._spec.modules.layers))[i]
        parameters = list(inspect.signature(type(block).forward).parameters)[1:]
        position = parameters.index(name)
        return args[position] if position < len(args) else None

    def skip_layer(self, layer: int, skip_with: Optional[torch.Tensor] = None) -> None:
        """Skip one block: it returns ``skip_with`` (default: its input) instead of running."""
        self.skip_layers(layer, layer, skip_with)

    def detect_layer_output_type(self) -> bool:
        """Whether each block returns a tuple (True) or a tensor (False), as the spec states it
        (``layer.returns``); nothing runs. Also :attr:`layers_output.returns_tuple`."""
        return bool(self.layers_output.returns_tuple)

    @property
    def add_prefix_false_tokenizer(self) -> Any:
        """The model's tokenizer loaded again with ``add_prefix_space=False`` (loaded on first use,
        then kept), for tokenizing a word without the space a byte-level BPE would put in front."""
        cached = self.__dict__.get("_prefix_false_tokenizer")
        if cached is not None:
            return cached
        source = getattr(self.tokenizer, "name_or_path", None) or getattr(self._module.config, "name_or_path", None)
        if not source:
            raise InputError(
                "add_prefix_false_tokenizer: this model's tokenizer carries no name_or_path to load it again from; "
                "load your tokenizer with add_prefix_space=False yourself"
            )
        from transformers import AutoTokenizer

        loaded = AutoTokenizer.from_pretrained(source, add_prefix_space=False)
        self.__dict__["_prefix_false_tokenizer"] = loaded
        return loaded

    def probs_to_dict(self, tokens: Union[torch.Tensor, list[int]], probs: Union[torch.Tensor, list[float]]) -> dict[str, float]:
        """``{token string: probability}`` for token ids ``tokens`` ``(n,)`` and their
        probabilities ``probs`` ``(n,)`` (e.g. the indices and values of ``torch.topk``)."""
        ids = tokens.tolist() if isinstance(tokens, torch.Tensor) else tokens
        values = probs.detach().float().cpu().tolist() if isinstance(probs, torch.Tensor) else probs
        if isinstance(tokens, torch.Tensor) and tokens.ndim != 1 or isinstance(probs, torch.Tensor) and probs.ndim != 1:
            raise ShapeMismatchError(
                f"probs_to_dict: expected 1-D tokens and probs, got shapes {tuple(getattr(tokens, 'shape', ()))} and "
                f"{tuple(getattr(probs, 'shape', ()))}"
            )
        if not isinstance(ids, (list, tuple)) or not all(isinstance(t, int) and not isinstance(t, bool) for t in ids):
            raise InputTypeError(f"probs_to_dict(tokens=...): expected token ids (ints), got {tokens!r}")
        if not isinstance(values, (list, tuple)) or len(values) != len(ids):
            raise ShapeMismatchError(
                f"probs_to_dict: {len(ids)} tokens but {len(values) if isinstance(values, (list, tuple)) else values!r} probabilities"
            )
        bad = [t for t in ids if not 0 <= t < len(self.tokenizer)]
        if bad:
            raise InputError(f"probs_to_dict(tokens=...): token id {bad[0]} is outside the tokenizer's {len(self.tokenizer)} ids")
        return {token: float(p) for token, p in zip(self.tokenizer.convert_ids_to_tokens(list(ids)), values)}

    def get_topk_closest_tokens(self, hidden_state: torch.Tensor, k: int = 5) -> Union[dict[str, float], list[dict[str, float]]]:
        """Top-``k`` tokens of ``softmax(project_on_vocab(h))`` for ``h`` of shape ``(hidden,)``
        (one dict token -> probability) or ``(batch, hidden)`` (a list of dicts)."""
        if not self._is_residual(hidden_state, 0, 1):
            shape = tuple(hidden_state.shape) if isinstance(hidden_state, torch.Tensor) else type(hidden_state).__name__
            raise ShapeMismatchError(
                f"get_topk_closest_tokens(hidden_state): expected ({self._residual_text()},) or "
                f"(batch, {self._residual_text()}), got {shape}"
            )
        single = hidden_state.ndim == len(self.residual_shape)
        probs = self.project_on_vocab(hidden_state).softmax(-1)
        top = torch.topk(probs, k=k, dim=-1)
        rows = [(top.indices, top.values)] if single else list(zip(top.indices, top.values))
        dicts = [
            dict(zip(self.tokenizer.convert_ids_to_tokens(ids.tolist()), values.detach().tolist()))
            for ids, values in rows
        ]
        return dicts[0] if single else dicts

    def _is_residual(self, value: Any, least: int, most: Optional[int]) -> bool:
        """Whether ``value`` is a tensor ending in the residual stream's shape, with ``least`` to
        ``most`` (None: any number of) leading dims."""
        if not isinstance(value, torch.Tensor):
            return False
        lead = value.ndim - len(self.residual_shape)
        return lead >= least and (most is None or lead <= most) and tuple(value.shape[lead:]) == self.residual_shape

    def _residual_text(self) -> str:
        """The residual stream's trailing shape for error messages: ``64``, or ``4, 64`` for stacked streams."""
        return ", ".join(str(d) for d in self.residual_shape)
