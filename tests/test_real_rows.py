"""Real configs that shrink to the same tiny checkpoint share one matrix row; any behaviour key
that differs keeps them apart."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from nnspec.verification import realconfigs
from nnspec.verification.matrix import subjects


def test_same_tiny_checkpoint_shares_a_row() -> None:
    corpus = realconfigs.corpus()
    groups = realconfigs.distinct([corpus["meta-llama/Meta-Llama-3-8B"], corpus["meta-llama/Meta-Llama-3-70B"]])
    assert groups == {"meta-llama/Meta-Llama-3-8B": ["meta-llama/Meta-Llama-3-8B", "meta-llama/Meta-Llama-3-70B"]}


def test_a_behaviour_difference_keeps_rows_apart(tmp_path: Path) -> None:
    base = realconfigs.corpus()["meta-llama/Meta-Llama-3-8B"]
    config = base.load()
    config["rope_theta"] = config.get("rope_theta", 10000.0) * 2  # a behaviour key, not a size
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps(config), encoding="utf-8")
    other = dataclasses.replace(base, hub_id="someone/changed", file=changed)
    assert set(realconfigs.distinct([base, other])) == {base.hub_id, "someone/changed"}


def test_every_corpus_config_is_covered_by_a_row() -> None:
    rows = {v.removeprefix(realconfigs.REAL_PREFIX) for _, v in subjects() if v and v.startswith(realconfigs.REAL_PREFIX)}
    covered = set()
    for reals in realconfigs.by_model_type().values():
        for representative, ids in realconfigs.distinct(reals).items():
            if representative in rows:
                covered.update(ids)
    served = {r.hub_id for r in realconfigs.corpus().values()} - covered
    # Configs of model types no spec serves are the corpus test's concern, not this one's.
    from nnspec.runtime.registry import model_types

    assert not {h for h in served if realconfigs.corpus()[h].model_type in set(model_types())}
