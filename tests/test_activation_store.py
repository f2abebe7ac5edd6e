"""Streaming activation collection to disk: shards equal the in-memory result, a killed run resumes
to the same bytes, and folders that are not the store's are refused and left alone."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Iterator

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM

from nnspec import StandardizedTransformer
from nnspec.activation_store import ActivationStore, load_dataset_prompts, write_store
from nnspec.cli import main
from nnspec.errors import InputError, InputTypeError, LayerIndexError
from nnspec.nnsight_utils import collect_activations

from .conftest import checkpoint

PROMPTS = [f"prompt {i} says" + " more" * (i % 4) for i in range(21)]
KW = dict(layers=[2, 0], batch_size=2, shard_size=4, progress=False)


@pytest.fixture(scope="module")
def model() -> StandardizedTransformer:
    return StandardizedTransformer(str(checkpoint("gpt2")))


@pytest.fixture(scope="module")
def reference(model: StandardizedTransformer) -> torch.Tensor:
    return collect_activations(model, PROMPTS, layers=[2, 0], batch_size=2, progress=False)


@pytest.fixture(scope="module")
def full(model: StandardizedTransformer, tmp_path_factory: pytest.TempPathFactory) -> ActivationStore:
    """An uninterrupted run, the byte-for-byte reference of resumed ones."""
    return collect_activations(model, PROMPTS, out=tmp_path_factory.mktemp("full") / "store", **KW)


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_shards_equal_the_in_memory_collection(full: ActivationStore, reference: torch.Tensor) -> None:
    assert isinstance(full, ActivationStore) and full.complete and len(full) == 21
    assert torch.equal(full.tensor(), reference)
    assert torch.equal(full[5], reference[:, 5]) and torch.equal(full[-1], reference[:, 20])
    assert torch.equal(torch.stack(list(full), 1), reference)
    assert torch.equal(full.layer(0), reference[1]) and torch.equal(full.layer(2), reference[0])
    manifest = json.loads((full.path / "manifest.json").read_text())
    assert [(s["start"], s["stop"]) for s in manifest["shards"]] == [(0, 4), (4, 8), (8, 12), (12, 16), (16, 20), (20, 21)]
    assert manifest["layers"] == [2, 0] and manifest["prompt_count"] == 21 and manifest["stored_dtype"] == "float32"
    with safe_open(str(full.path / "shard-00001.safetensors"), framework="pt") as handle:  # a plain safetensors file
        assert sorted(handle.keys()) == ["layers_output.0", "layers_output.2"]
        assert torch.equal(handle.get_tensor("layers_output.0"), reference[1, 4:8])
    full.verify()
    with pytest.raises(InputError, match="layer 1 is not in this store"):
        full.layer(1)
    with pytest.raises(IndexError):
        full[21]


def test_rows_match_plain_transformers(full: ActivationStore) -> None:
    hf = AutoModelForCausalLM.from_pretrained(str(checkpoint("gpt2")))
    for row in (0, 7):  # one prompt alone: no padding, so the last token is the last column
        ids = full_tokenizer()(PROMPTS[row], return_tensors="pt")
        with torch.no_grad():
            states = hf(**ids, output_hidden_states=True).hidden_states
        torch.testing.assert_close(full[row][1], states[1][0, -1], atol=1e-5, rtol=1e-5)  # layer 0's output


def full_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(checkpoint("gpt2")))


def test_positions_list_and_dtype(model: StandardizedTransformer, tmp_path: Path) -> None:
    ref = collect_activations(model, PROMPTS[:6], layers=1, positions=[0, -1], batch_size=2, progress=False)
    store = collect_activations(model, PROMPTS[:6], layers=1, positions=[0, -1], out=tmp_path / "s", batch_size=2,
                                shard_size=4, progress=False, dtype=torch.float16)
    assert store.row_shape == (2, 64) and store[3].dtype == torch.float16
    assert torch.equal(store.tensor(), ref.to(torch.float16))


def interrupted(prompts: list[str], after: int) -> Iterator[str]:
    for i, prompt in enumerate(prompts):
        if i == after:
            raise KeyboardInterrupt("stopped on purpose")
        yield prompt


def test_interrupted_run_resumes_to_the_same_bytes(model: StandardizedTransformer, full: ActivationStore, tmp_path: Path) -> None:
    out = tmp_path / "store"
    with pytest.raises(KeyboardInterrupt):
        write_store(model, interrupted(PROMPTS, 13), out, **KW)
    partial = ActivationStore(out)
    assert not partial.complete and len(partial) == 12 and partial.num_shards == 3
    finished = {p.name: p.stat().st_ino for p in out.glob("shard-*")}
    # a write killed halfway leaves the store's own temporary name; other files stay as they are
    (out / ".shard-00003.safetensors.tmp").write_bytes(b"half a shard")
    (out / ".shard-00099.safetensors.tmp").write_bytes(b"an older leftover of the same store")
    (out / ".notes.tmp").write_text("mine")
    (out / "notes.txt").write_text("mine too")
    store = write_store(model, iter(PROMPTS), out, **KW)  # a fresh generator: unknown length is fine
    assert store.complete and len(store) == 21
    assert {p.name: p.stat().st_ino for p in out.glob("shard-0000[0-2]*")} == finished  # not rewritten
    mine = files(out)
    assert mine.pop(".notes.tmp") == b"mine" and mine.pop("notes.txt") == b"mine too"
    theirs = files(full.path)
    manifest, reference = json.loads(mine.pop("manifest.json")), json.loads(theirs.pop("manifest.json"))
    assert mine == theirs  # every shard byte for byte; no temporary file left
    assert manifest["shards"] == reference["shards"] and manifest["prompt_count"] is None
    again = write_store(model, PROMPTS, out, **KW)  # a finished store is returned as it is
    assert files(out)["shard-00005.safetensors"] == theirs["shard-00005.safetensors"] and len(again) == 21


@pytest.mark.parametrize("change, key", [
    (dict(layers=[2, 1]), "layers"), (dict(positions=0), "positions"), (dict(dtype=torch.float16), "dtype"),
    (dict(shard_size=8), "shard_size"), (dict(value="mlps_output"), "value"),
])
def test_other_arguments_are_refused_and_nothing_changes(model, tmp_path: Path, change: dict, key: str) -> None:
    out = tmp_path / "store"
    with pytest.raises(KeyboardInterrupt):
        write_store(model, interrupted(PROMPTS, 9), out, **KW)
    before = files(out)
    with pytest.raises(InputError, match=rf"collected with {key}=.*this call has {key}="):
        write_store(model, PROMPTS, out, **{**KW, **change})
    assert files(out) == before


def test_other_prompts_or_model_are_refused(model, full: ActivationStore, tmp_path: Path) -> None:
    out = tmp_path / "store"
    with pytest.raises(KeyboardInterrupt):
        write_store(model, interrupted(PROMPTS, 9), out, **KW)
    before = files(out)
    changed = PROMPTS[:5] + ["another prompt"] + PROMPTS[6:]
    with pytest.raises(InputError, match="prompts differ from those of finished shard 1"):
        write_store(model, changed, out, **KW)
    assert files(out) == before
    finished = files(full.path)
    with pytest.raises(InputError, match="prompt_count=21, but this call gives 20"):
        write_store(model, PROMPTS[:20], full.path, **KW)
    with pytest.raises(InputError, match="finished store of 21 prompts, but this call gives more"):
        write_store(model, iter(PROMPTS + ["one more"]), full.path, **KW)
    assert files(full.path) == finished
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["model"] = "some/other-model"
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="collected with model='some/other-model'"):
        write_store(model, PROMPTS, out, **KW)


def test_a_folder_of_other_files_is_refused_and_untouched(model, tmp_path: Path) -> None:
    (tmp_path / "results.csv").write_text("a,b\n")
    (tmp_path / ".shard-00000.safetensors.tmp").write_text("not ours: no manifest here")
    before = files(tmp_path)
    with pytest.raises(InputError, match="not an activation store .*results.csv"):
        write_store(model, PROMPTS, tmp_path, **KW)
    assert files(tmp_path) == before
    (tmp_path / "manifest.json").write_text('{"something": "else"}')
    with pytest.raises(InputError, match="not an nnspec activation store manifest"):
        write_store(model, PROMPTS, tmp_path, **KW)
    with pytest.raises(InputError, match="not an activation store"):
        ActivationStore(tmp_path / "nowhere")


def test_bad_arguments_are_refused_before_any_forward(model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nnspec.activations

    def no_forward(*args, **kwargs):
        raise AssertionError("a forward ran")

    monkeypatch.setattr(nnspec.activations, "iter_batches", no_forward)
    out = tmp_path / "new"
    rows = [{"text": p, "id": i} for i, p in enumerate(PROMPTS)]
    (tmp_path / "file").write_text("x")
    cases = [
        (dict(out=123), InputTypeError, "out must be a folder path"),
        (dict(out=tmp_path / "file"), InputError, "is a file"),
        (dict(shard_size=0), InputError, "shard_size must be an integer of at least 1, got 0"),
        (dict(shard_size=-3), InputError, "shard_size"),
        (dict(shard_size=True), InputError, "shard_size"),
        (dict(batch_size=0), InputError, "batch_size"),
        (dict(prompts=rows, column="txt"), InputError, "column='txt' is not a field of the rows .*did you mean 'text'"),
        (dict(prompts=rows), InputError, "give column= naming the text field"),
        (dict(column="text"), InputTypeError, "prompt 0 is a str"),
        (dict(prompts=[]), InputError, "prompts is empty"),
        (dict(prompts="one string"), InputTypeError, "one string"),
        (dict(layers=[0, 0]), InputError, "repeats"),
        (dict(layers=[7]), LayerIndexError, "out of range"),
        (dict(value="layer_output"), InputError, "did you mean 'layers_output'"),
        (dict(positions="last"), InputError, "positions must be"),
        (dict(dtype="float16"), InputTypeError, "dtype must be a torch.dtype"),
    ]
    for change, error, message in cases:
        kwargs = {"prompts": PROMPTS, "out": out, **KW, **change}
        with pytest.raises(error, match=message):
            write_store(model, **kwargs)
        assert not out.exists()


def test_dataset_rows_and_missing_datasets(model, reference: torch.Tensor, tmp_path: Path, monkeypatch) -> None:
    datasets = pytest.importorskip("datasets")
    table = datasets.Dataset.from_dict({"text": PROMPTS, "id": list(range(21))})
    with pytest.raises(InputError, match="not a column of this dataset .*did you mean 'text'"):
        write_store(model, table, tmp_path / "bad", column="texts", **KW)
    store = write_store(model, table, tmp_path / "ds", column="text", **KW)
    assert torch.equal(store.tensor(), reference)
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(InputError, match=r"pip install 'nnspec\[datasets\]'"):
        load_dataset_prompts("anything")


def test_command_line(model, reference: torch.Tensor, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    out = tmp_path / "store"
    args = ["collect", str(checkpoint("gpt2")), "--prompts", str(prompts), "--out", str(out), "--layers", "2,0",
            "--batch-size", "2", "--shard-size", "4", "--quiet"]
    assert main(args) == 0
    assert "21 prompts" in capsys.readouterr().out
    assert torch.equal(ActivationStore(out).tensor(), reference)
    assert main(args[:-1] + ["--layers", "1", "--quiet"]) == 2
    assert "collected with layers=[2, 0], but this call has layers=[1]" in capsys.readouterr().err
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("keep")
    assert main(args[:4] + ["--out", str(tmp_path / "other"), "--quiet"]) == 2
    assert "not an activation store" in capsys.readouterr().err and (tmp_path / "other" / "keep.txt").read_text() == "keep"
    assert main(args + ["--shard-size", "0"]) == 2
    assert "--shard-size 0: must be at least 1" in capsys.readouterr().err


def test_a_write_failing_halfway_leaves_finished_shards_only(model, full: ActivationStore, tmp_path: Path, monkeypatch) -> None:
    import safetensors.torch

    real, calls = safetensors.torch.save_file, []

    def dies_on_the_third(tensors, filename, metadata=None):
        calls.append(filename)
        if len(calls) == 3:
            Path(filename).write_bytes(b"half written")
            raise OSError("disk full")
        return real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(safetensors.torch, "save_file", dies_on_the_third)
    out = tmp_path / "store"
    with pytest.raises(OSError, match="disk full"):
        write_store(model, PROMPTS, out, **KW)
    assert sorted(p.name for p in out.glob("shard-*")) == ["shard-00000.safetensors", "shard-00001.safetensors"]
    assert len(ActivationStore(out)) == 8
    monkeypatch.setattr(safetensors.torch, "save_file", real)
    write_store(model, PROMPTS, out, **KW)
    mine, theirs = files(out), files(full.path)
    assert mine.pop("manifest.json") and theirs.pop("manifest.json") and mine == theirs


def test_shards_need_not_be_a_multiple_of_batches(model, reference: torch.Tensor, tmp_path: Path) -> None:
    kw = dict(KW, batch_size=2, shard_size=5)  # a batch never straddles two shards, so resuming is exact
    with pytest.raises(KeyboardInterrupt):
        write_store(model, interrupted(PROMPTS, 12), tmp_path / "cut", **kw)
    resumed = write_store(model, PROMPTS, tmp_path / "cut", **kw)
    whole = write_store(model, PROMPTS, tmp_path / "whole", **kw)
    assert [s["stop"] for s in whole.manifest["shards"]] == [5, 10, 15, 20, 21]
    assert resumed.manifest["shards"] == whole.manifest["shards"]
    torch.testing.assert_close(whole.tensor(), reference, atol=1e-5, rtol=1e-5)  # other batches: float noise only
