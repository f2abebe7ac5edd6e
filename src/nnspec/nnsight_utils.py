"""nnterp's functional API on NNsight models, plus ``collect_activations`` and ``load_model``.

Each function takes the model first (``nn_model``) and works on a
:class:`~nnspec.StandardizedTransformer` (values keep nnspec's meaning: ``get_attention_output``
is ``attentions_output[i]``) and on a plain NNsight model of a bundled architecture (module paths
from its spec, values as nnterp returns them). See :mod:`nnspec.runtime.functional`.
"""

from .runtime.activations import collect_activations
from .runtime.functional import (
    GetModuleOutput,
    ModuleAccessor,
    collect_last_token_activations_session,
    collect_token_activations_batched,
    compute_next_token_probs,
    get_attention,
    get_attention_output,
    get_embed_tokens,
    get_layer,
    get_layer_input,
    get_layer_output,
    get_layers,
    get_logits,
    get_mlp,
    get_mlp_output,
    get_next_token_probs,
    get_num_layers,
    get_token_activations,
    get_unembed,
    get_unembed_norm,
    project_on_vocab,
    set_layer_output,
)
from .runtime.loading import load_model

__all__ = [
    "GetModuleOutput",
    "ModuleAccessor",
    "collect_activations",
    "collect_last_token_activations_session",
    "collect_token_activations_batched",
    "compute_next_token_probs",
    "get_attention",
    "get_attention_output",
    "get_embed_tokens",
    "get_layer",
    "get_layer_input",
    "get_layer_output",
    "get_layers",
    "get_logits",
    "get_mlp",
    "get_mlp_output",
    "get_next_token_probs",
    "get_num_layers",
    "get_token_activations",
    "get_unembed",
    "get_unembed_norm",
    "load_model",
    "project_on_vocab",
    "set_layer_output",
]
