"""The standardized model class, under the module name nnterp users import it from.

:class:`StandardizedTransformer` is the core model (:class:`nnspec.runtime.model.StandardizedModel`:
loading, standard names, accessors, token helpers) plus the research recipes built on the standard
names: the activation cache, gradients and logit directions.
"""

from __future__ import annotations

from typing import Any, Optional, Union

import torch

from .runtime.model import StandardizedModel


class StandardizedTransformer(StandardizedModel):
    """A HuggingFace causal LM with standard names for every module and residual-stream value.

    The model runs with the original HF code; an adapter compiled from the architecture's spec
    tells nnspec where things are. Inside ``with model.trace(...)``, in forward order:

    - ``layers_input[i]`` / ``layers_output[i]``: residual stream entering / leaving block ``i``,
      ``(batch, seq, hidden)``; ``layers_output[i]`` equals HF ``hidden_states[i + 1]`` for
      ``i < num_layers - 1``.
    - ``attentions_input[i]`` / ``mlps_input[i]``: what each branch reads (after its input norm).
    - ``attentions_output[i]`` / ``mlps_output[i]``: each branch's contribution to the residual
      stream, so that ``layers_input[i] + attentions_output[i] + mlps_output[i] == layers_output[i]``.
    - ``mixers_input[i]`` / ``mixers_output[i]`` ``(batch, seq, hidden)``: the token-mixing branch
      whatever its kind (:attr:`mixer_kinds`: softmax or linear attention, state space, recurrence,
      short convolution); the same values as ``attentions_*`` on attention layers. Accessors of a
      branch a layer lacks (attention on a Mamba layer, the MLP of a Mamba block) refuse with the
      layer's mixer kind; the identity then leaves the missing branch out.
    - ``token_embeddings``, ``logits`` ``(batch, seq, vocab)``, ``next_token_probs`` ``(batch, vocab)``,
      ``input_ids``, ``attention_mask``.
    - ``attention_probabilities[i]`` ``(batch, heads, q, k)`` (eager attention), ``queries[i]``
      ``(batch, heads, seq, head_dim)``, ``keys[i]`` / ``values[i]`` ``(batch, kv_heads, seq, head_dim)``
      as they enter the score computation (after rotary), and ``attention_heads_output[i]``
      ``(batch, seq, heads, head_dim)``, the per-head output before the output projection.
      On models with attention sinks (a learned logit per head that joins the softmax and attends
      to nothing: gpt-oss and others whose spec sets ``attention.sinks``),
      ``attention_probabilities`` are the probabilities over the real keys, as eager attention
      returns them: each row sums to less than 1 and the sink's share is ``1 - row sum``. Setting
      them replaces the probabilities over the real keys; the sink's share never reaches the
      output, since the model drops it after the softmax.

    - ``attentions_module_output[i]`` / ``mlps_module_output[i]``: the attention / MLP module's own
      output (the first element when it returns a tuple), as the module returns it: before any
      norm, scale or residual the block applies afterwards (this is what nnterp calls
      ``attentions_output`` / ``mlps_output``; it equals the contribution on plain pre-norm blocks
      and differs on e.g. Gemma 2/3, whose post-norms come after the module, or where the module
      adds the residual itself). Readable and settable; refused where the branch has no module
      of its own (OPT's MLP).

    Every value accessor also takes assignment (``model.layers_output[3] = h``), which checks the
    shape. Module accessors: ``embed_tokens``, ``layers[i]``, ``attentions[i]``, ``mixers[i]``,
    ``mlps[i]``, ``ln_final``, ``lm_head``; blocks also answer to ``self_attn`` (attention),
    ``mixer`` (another token mixer) and ``mlp``. nnterp's module tree is there too, on top of the
    HF one: ``model.model.layers[i]`` (with ``.self_attn`` / ``.mlp``), ``model.model.ln_final``,
    ``model.model.embed_tokens``, ``model.lm_head``, whatever the native names (GPT-2's
    ``transformer.h``, OPT's ``model.decoder.layers``, a vision-language wrapper's text model);
    only modules the spec names are aliased (OPT has no ``mlp`` module). NNsight's
    ``tracer.cache`` answers to ``cache["model.layers.0"]`` and ``cache.model.model.layers[0]``.

    Args:
        model: a hub id, a local checkpoint directory, or a loaded ``PreTrainedModel``.
        trust_remote_code: passed to the config, tokenizer and model loads.
        check_renaming: run the load-time structural checks (no forward pass). Default True.
        remote: refused (True raises :class:`CapabilityUnavailableError`): a remote request ships
            the model object with the trace, and a StandardizedTransformer is not sent that way.
        allow_dispatch: accepted for compatibility with nnterp; nnspec's load-time checks never
            run the model, so there is nothing to dispatch at load.
        enable_attention_probs: load with eager attention (``attn_implementation="eager"``).
        check_attn_probs_with_trace: accepted for compatibility with nnterp; nothing runs at load
            (call ``model.attention_probabilities.check_source()`` to run the check).
        allow_multimodal: accepted for compatibility with nnterp, which refuses models whose blocks
            differ in type unless it is True. nnspec serves such models (vision-language wrappers'
            text models, hybrids) through the spec, which says what each layer holds, so either
            value loads them.
        rename_config: nnterp's :class:`~nnspec.rename_utils.RenameConfig`: its module names and
            config keys replace the spec's (list values: the first that exists), each checked
            against the module tree before any forward (``attn_prob_source`` is refused).
        spec: a spec file path, a bundled spec name or an :class:`Adapter`, for a model no bundled
            spec serves (default: found from ``config.model_type``). Keyword only.
        tokenizer: the tokenizer to use (default: loaded from ``model``). Keyword only.
        rename: extra NNsight aliases, ``{native path: alias}``, merged over the spec's. Keyword only.
        allow_unverified: load even when the installed transformers and NNsight pair was verified as
            failing for this spec (it then warns, naming the failing checks); default False raises
            :class:`~nnspec.errors.VersionFailureError`. Keyword only.
        **kwargs: model kwargs (``dtype``, ``device_map``, ``attn_implementation``, ``revision``, ...;
            without ``device_map``, a hub id or path loads with ``device_map="auto"`` when
            ``accelerate`` is installed and a GPU or MPS device is visible, as nnterp does, and
            on the CPU otherwise; pass ``device_map=None`` to always load on the CPU),
            config overrides (``output_attentions=True``: set on the config, as ``from_pretrained``
            does), ``tokenizer_kwargs`` (passed to ``AutoTokenizer.from_pretrained`` for the
            tokenizer nnspec loads; refused together with ``tokenizer=``) and NNsight kwargs
            (``dispatch``). Any other name is refused at once with the closest valid one.
            ``tokenizer_kwargs={"padding_side": "right"}`` stays set on ``model.tokenizer`` for
            your own tokenizing, but traces still pad on the left (with a warning, once).

    Prompts are checked before the forward (empty prompts, ids outside the vocabulary, inputs
    longer than a learned position table raise :class:`~nnspec.errors.InputError`); batches are
    padded on the left whatever ``tokenizer.padding_side`` says; values assigned in a trace are
    cast to the model's dtype and device when that loses nothing. Traces of one model run one at
    a time (a second thread waits; a trace inside a trace is refused).
    """

    def run_with_cache(
        self,
        prompts: Union[str, list[str], torch.Tensor],
        names: Optional[list[str]] = None,
        layers: Union[int, list[int], None] = None,
        to_cpu: bool = False,
        remote: bool = False,
        *,
        names_filter: Any = None,
        return_type: Any = ...,
        remove_batch_dim: bool = False,
        device: Any = None,
    ) -> Any:
        """One forward caching standard values under ``"name.layer"`` keys; see
        :func:`nnspec.cache.run_with_cache`. Returns an :class:`ActivationCache`, which
        also unpacks as TransformerLens's ``logits, cache = model.run_with_cache(...)``."""
        from .cache import _UNSET, run_with_cache

        return run_with_cache(
            self, prompts, names, layers, to_cpu, remote, names_filter=names_filter,
            return_type=_UNSET if return_type is ... else return_type, remove_batch_dim=remove_batch_dim, device=device,
        )

    def gradients(self, prompts: Union[str, list[str]], metric: Any, names: tuple[str, ...] = ("layers_output",),
                  layers: Union[int, list[int], None] = None, remote: bool = False) -> dict[str, torch.Tensor]:
        """Gradients of ``metric(logits)`` (a scalar) w.r.t. standard values; see
        :func:`nnspec.gradients.gradients`."""
        from .gradients import gradients

        return gradients(self, prompts, metric, names, layers, remote)

    def tokens_to_residual_directions(self, tokens: Any) -> torch.Tensor:
        """The direction in the final norm's output whose dot product is each token's logit
        (TransformerLens's ``W_U[:, token]``, with logit multipliers folded in): ``tokens.shape +
        (hidden,)``; see :func:`nnspec.attribution.logit_directions`."""
        from .attribution import logit_directions

        return logit_directions(self, tokens)


__all__ = ["StandardizedTransformer"]
