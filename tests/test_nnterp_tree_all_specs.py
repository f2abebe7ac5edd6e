"""nnterp's module tree (``model.model.layers[i].self_attn`` / ``.mlp``, ``model.model.ln_final``,
``model.model.embed_tokens``, ``model.lm_head``) on every bundled spec, without a forward: each
name must reach the very ``nn.Module`` the spec's path names in the HF model, and nnspec's own
accessors must keep reaching it too."""

from __future__ import annotations

import pytest

from nnspec import StandardizedTransformer
from nnspec.runtime.adapter import rename_dict
from nnspec.runtime.registry import spec_names
from tests.conftest import checkpoint


def _aliased(spec, path, alias):
    """Whether the spec's rename gives block-level ``path`` the name ``alias`` (or it is that name)."""
    return path == alias or rename_dict(spec).get(path) == alias


def test_every_spec_answers_to_nnterps_tree():
    failures = []
    for name in spec_names():
        try:
            model = StandardizedTransformer(checkpoint(name))
        except Exception as error:  # pragma: no cover - reported below
            failures.append(f"{name}: load: {type(error).__name__}: {error}")
            continue
        hf, spec = model._module, model.spec
        try:
            blocks = hf.get_submodule(spec.modules.layers)
            assert model.model.layers._module is blocks, "model.model.layers"
            for i in range(model.num_layers):
                block = model.model.layers[i]
                assert block._module is blocks[i] and model.layers[i]._module is blocks[i], f"layers[{i}]"
                attention = model.branch("attention", i)
                if model.attentions.unavailable is None and model.attentions.serves(i) and _aliased(spec, attention.module, "self_attn"):
                    expected = blocks[i].get_submodule(attention.module)
                    assert block.self_attn._module is expected, f"layers[{i}].self_attn"
                    assert model.attentions[i]._module is expected, f"attentions[{i}]"
                mlp = model.branch("mlp", i)
                if mlp.module and model.mlps.unavailable is None and model.mlps.serves(i) and _aliased(spec, mlp.module, "mlp"):
                    expected = blocks[i].get_submodule(mlp.module)
                    assert block.mlp._module is expected, f"layers[{i}].mlp"
                    assert model.mlps[i]._module is expected, f"mlps[{i}]"
                elif mlp.module is None:
                    assert not hasattr(block, "mlp"), f"layers[{i}].mlp exists but the spec names no MLP module"
            if spec.modules.ln_final:
                norm = hf.get_submodule(spec.modules.ln_final)
                assert model.model.ln_final._module is norm and model.ln_final._module is norm, "ln_final"
            embed = hf.get_submodule(spec.modules.embed_tokens)
            assert model.model.embed_tokens._module is embed and model.embed_tokens._module is embed, "embed_tokens"
            assert model.lm_head._module is hf.get_submodule(spec.modules.lm_head), "lm_head"
        except (AssertionError, AttributeError) as error:
            failures.append(f"{name}: {error}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("name", ["opt", "falcon_mamba"])
def test_a_missing_mlp_module_says_why(name):
    model = StandardizedTransformer(checkpoint(name))
    with pytest.raises(AttributeError, match=r"no 'mlp' module: .*mlps_input|no 'mlp' module: .*no MLP"):
        model.model.layers[0].mlp
