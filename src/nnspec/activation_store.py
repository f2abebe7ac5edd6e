"""Activation collection streamed to disk in shards, resumable, and read back lazily.

A store is a folder::

    manifest.json                  what was collected and which shards are finished
    shard-00000.safetensors        rows [0, shard_size): one tensor per layer, named "<value>.<layer>"
    shard-00001.safetensors        rows [shard_size, 2 * shard_size) ...

Each shard holds ``(rows, hidden)`` per layer (``(rows, num_positions, hidden)`` for a list of
positions). At most one shard lives in memory while collecting. Shards and the manifest are written
to a temporary file in the same folder (``.shard-00003.safetensors.tmp``), flushed to disk and renamed
over the final name, so a killed run leaves only finished shards behind; running the same call again
skips the finished shards (after checking that the first prompts are the same ones) and continues.

Batches never straddle two shards, so a resumed run computes exactly the batches an uninterrupted
one does and writes the same bytes. With ``shard_size`` a multiple of ``batch_size`` the batches are
also those of the in-memory :func:`nnspec.activations.collect_activations`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from itertools import chain, islice
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Sequence, Sized, Union

import torch

from .errors import InputError, InputTypeError, did_you_mean
from .logging import logger

#: Names of the files a store writes; anything else in its folder is left alone.
MANIFEST = "manifest.json"
FORMAT = "nnspec-activations"
VERSION = 1
_SHARD = re.compile(r"shard-\d{5,}\.safetensors")
_TEMP = re.compile(r"\.(shard-\d{5,}\.safetensors|manifest\.json)\.tmp")

#: Manifest keys a resumed call must repeat exactly (the first one that differs is named).
CHECKED_KEYS = ("model", "spec", "value", "layers", "positions", "dtype", "column", "batch_size", "shard_size")

PathLike = Union[str, "os.PathLike[str]"]


def shard_name(index: int) -> str:
    """File name of shard ``index`` (``shard-00003.safetensors``)."""
    return f"shard-{index:05d}.safetensors"


def _temp_of(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _replace_durably(temp: Path, final: Path) -> None:
    os.chmod(temp, 0o666 & ~_umask())  # the usual permissions of a new file (the writer may make it private)
    with open(temp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(temp, final)
    _fsync_dir(final.parent)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    temp = _temp_of(path)
    temp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    _replace_durably(temp, path)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _prompt_digest(prompts: Sequence[str]) -> str:
    """sha256 over the prompts, each length-prefixed so that no two lists share a digest by concatenation."""
    digest = hashlib.sha256()
    for prompt in prompts:
        data = prompt.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def _dtype_name(dtype: Optional[torch.dtype]) -> Optional[str]:
    return None if dtype is None else str(dtype).removeprefix("torch.")


# -- reading ----------------------------------------------------------------------------------------


class ActivationStore(torch.utils.data.Dataset):
    """A folder of activation shards written by ``collect_activations(..., out=DIR)``, read lazily.

    A torch ``Dataset`` of rows: ``store[i]`` is prompt ``i``'s activations, ``(num_layers, hidden)``
    (``(num_layers, num_positions, hidden)`` for a list of positions), layers in the order they were
    asked for. Shards are opened with safetensors' ``safe_open`` (memory-mapped) when first read.
    An unfinished store (a run still going, or interrupted) reads its finished shards.
    """

    def __init__(self, path: PathLike) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise InputTypeError(f"path must be a folder path (str or os.PathLike), got {type(path).__name__}")
        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        self._handles: dict[int, Any] = {}
        self._starts = [shard["start"] for shard in self.manifest["shards"]]

    # what was collected
    @property
    def layers(self) -> list[int]:
        """Layer numbers, in the order rows stack them."""
        return list(self.manifest["layers"])

    @property
    def names(self) -> list[str]:
        """Tensor name of each layer inside a shard (``"layers_output.3"``), in :attr:`layers` order."""
        return list(self.manifest["names"])

    @property
    def value(self) -> str:
        return str(self.manifest["value"])

    @property
    def complete(self) -> bool:
        """Whether every prompt was collected (False while collecting or after an interruption)."""
        return bool(self.manifest["complete"])

    @property
    def row_shape(self) -> tuple[int, ...]:
        """Shape of one layer of one row: ``(hidden,)`` or ``(num_positions, hidden)``."""
        return tuple(self.manifest["row_shape"] or ())

    @property
    def num_shards(self) -> int:
        return len(self.manifest["shards"])

    def __len__(self) -> int:
        return int(self.manifest["rows"])

    def __repr__(self) -> str:
        state = "complete" if self.complete else "incomplete"
        return (f"ActivationStore({str(self.path)!r}: {len(self)} rows of {self.value} at layers {self.layers}, "
                f"{self.num_shards} shards, {state})")

    # lazy shard access
    def shard(self, index: int) -> Any:
        """Shard ``index`` opened with ``safetensors.safe_open`` (memory-mapped; ``get_slice(name)``)."""
        from safetensors import safe_open

        if not 0 <= index < self.num_shards:
            raise InputError(f"shard {index} out of range: this store has {self.num_shards} finished shards")
        if index not in self._handles:
            self._handles[index] = safe_open(str(self.path / self.manifest["shards"][index]["file"]), framework="pt")
        return self._handles[index]

    def _name(self, layer: int) -> str:
        if isinstance(layer, bool) or not isinstance(layer, int):
            raise InputTypeError(f"layer must be an int, got {type(layer).__name__}")
        if layer not in self.layers:
            raise InputError(f"layer {layer} is not in this store: it holds layers {self.layers}")
        return self.names[self.layers.index(layer)]

    def _locate(self, row: int) -> tuple[int, int]:
        import bisect

        shard = bisect.bisect_right(self._starts, row) - 1
        return shard, row - self._starts[shard]

    def __getitem__(self, index: int) -> torch.Tensor:
        if isinstance(index, bool) or not isinstance(index, int):
            raise InputTypeError(f"index must be an int row number, got {type(index).__name__}")
        total = len(self)
        if not -total <= index < total:
            raise IndexError(f"row {index} out of range for a store of {total} rows")
        shard, offset = self._locate(index % total)
        handle = self.shard(shard)
        return torch.stack([handle.get_slice(name)[offset : offset + 1][0] for name in self.names], 0)

    def shard_tensors(self, layer: Optional[int] = None) -> Iterator[torch.Tensor]:
        """Each finished shard in turn, read whole: ``(num_layers, rows, ...)``, or ``(rows, ...)`` for
        one ``layer``. One shard in memory at a time."""
        name = None if layer is None else self._name(layer)
        for index in range(self.num_shards):
            handle = self.shard(index)
            if name is not None:
                yield handle.get_tensor(name)
            else:
                yield torch.stack([handle.get_tensor(n) for n in self.names], 0)

    def __iter__(self) -> Iterator[torch.Tensor]:
        """Rows in order (``store[i]`` for each ``i``), reading one shard at a time."""
        for block in self.shard_tensors():
            for row in range(block.shape[1]):
                yield block[:, row]

    def layer(self, layer: int) -> torch.Tensor:
        """Every row of one layer, ``(rows, hidden)`` or ``(rows, num_positions, hidden)``."""
        parts = list(self.shard_tensors(layer))
        return torch.cat(parts, 0) if parts else torch.empty((0, *self.row_shape))

    def tensor(self) -> torch.Tensor:
        """The whole store as the in-memory collection returns it: ``(num_layers, rows, ...)``."""
        parts = list(self.shard_tensors())
        if not parts:
            return torch.empty((len(self.layers), 0, *self.row_shape))
        return torch.cat(parts, 1)

    def verify(self) -> None:
        """Check every finished shard's size and sha256 against the manifest; raise InputError naming the first bad one."""
        for shard in self.manifest["shards"]:
            path = self.path / shard["file"]
            if not path.is_file() or path.stat().st_size != shard["bytes"] or _sha256(path) != shard["sha256"]:
                raise InputError(f"{path}: missing or not the shard the manifest records (size or sha256 differs)")

    def __getstate__(self) -> dict[str, Any]:  # open memory maps stay in their process (DataLoader workers)
        state = dict(self.__dict__)
        state["_handles"] = {}
        return state


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of the store in ``folder``; InputError when there is none or it is not a store's."""
    path = folder / MANIFEST
    if not path.is_file():
        raise InputError(f"{folder}: not an activation store (no {MANIFEST}); write one with collect_activations(..., out=...)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot be read as a store manifest ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(f"{path}: not an nnspec activation store manifest (no \"format\": \"{FORMAT}\")")
    if data.get("version") != VERSION:
        raise InputError(f"{path}: store format version {data.get('version')!r}; this nnspec reads version {VERSION}")
    return data


# -- writing ----------------------------------------------------------------------------------------


def _check_out(out: Any) -> Path:
    if not isinstance(out, (str, os.PathLike)) or (isinstance(out, str) and not out.strip()):
        raise InputTypeError(f"out must be a folder path (str or os.PathLike), got {type(out).__name__} {out!r}")
    folder = Path(out).expanduser()
    if folder.exists() and not folder.is_dir():
        raise InputError(f"out={str(out)!r} is a file; give a folder (new, empty, or a store to resume)")
    return folder


def _count(value: Any, label: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{label} must be an integer of at least 1, got {value!r}")
    return value


def _positions_key(positions: Any) -> Union[int, list[int]]:
    if isinstance(positions, torch.Tensor):
        if positions.ndim > 1 or positions.dtype.is_floating_point or positions.dtype == torch.bool:
            raise InputError(f"positions must be an int or a 1-D list of ints, got a {positions.ndim}-D {positions.dtype} tensor")
        return int(positions) if positions.ndim == 0 else [int(p) for p in positions.tolist()]
    if isinstance(positions, int) and not isinstance(positions, bool):
        return positions
    if isinstance(positions, (list, tuple, range)) and positions and all(
            isinstance(p, int) and not isinstance(p, bool) for p in positions):
        return list(positions)
    raise InputError(f"positions must be an int or a non-empty list of ints, got {positions!r}")


def _texts(prompts: Any, column: Optional[str]) -> tuple[Iterator[str], Optional[int]]:
    """An iterator of prompt strings from strings, rows (dicts) or a datasets column, and the count
    when known. The first row is looked at before anything runs, so a wrong ``column`` is refused early."""
    if isinstance(prompts, (str, bytes)):
        raise InputTypeError("prompts is one string: give a list (or any iterable) of prompts")
    if isinstance(prompts, dict):
        raise InputTypeError("prompts is a dict: give a list of prompts, or a list of rows with column=")
    if not isinstance(prompts, Iterable):
        raise InputTypeError(f"prompts must be an iterable of strings or rows, got {type(prompts).__name__}")
    if column is not None and not isinstance(column, str):
        raise InputTypeError(f"column must be a string naming the text field, got {type(column).__name__}")
    names = getattr(prompts, "column_names", None)  # a datasets.Dataset knows its columns without a row
    if column is not None and isinstance(names, (list, tuple)) and names and column not in names:
        raise InputError(f"column={column!r} is not a column of this dataset{did_you_mean(column, names)}; its columns: {', '.join(names)}")
    total = len(prompts) if isinstance(prompts, Sized) else None
    iterator = iter(prompts)
    try:
        first = next(iterator)
    except StopIteration:
        raise InputError("prompts is empty: give at least one prompt") from None
    if column is None and isinstance(first, dict):
        keys = [str(k) for k in first]
        raise InputError(f"prompts are rows (dicts): give column= naming the text field, one of {', '.join(keys)}")
    if column is not None:
        if not isinstance(first, dict):
            raise InputTypeError(f"column={column!r} was given but prompt 0 is a {type(first).__name__}, not a row (dict)")
        if column not in first:
            keys = [str(k) for k in first]
            raise InputError(f"column={column!r} is not a field of the rows{did_you_mean(column, keys)}; their fields: {', '.join(keys)}")
    rows = chain([first], iterator)

    def texts() -> Iterator[str]:
        for i, row in enumerate(rows):
            text = row[column] if column is not None else row
            if not isinstance(text, str):
                where = f"column {column!r} of row {i}" if column is not None else f"prompt {i}"
                raise InputTypeError(f"{where} is a {type(text).__name__}, not a string")
            yield text

    return texts(), total


class _Progress:
    """A tqdm bar when tqdm is installed, else a log line per shard; both report prompts per second."""

    def __init__(self, total: Optional[int], done: int, enabled: bool, label: str) -> None:
        self.start, self.done, self.first = time.perf_counter(), done, done
        self.bar = None
        if enabled:
            try:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=total, initial=done, desc=label, unit="prompt", dynamic_ncols=True)
            except ImportError:
                pass

    def rate(self) -> float:
        return (self.done - self.first) / max(time.perf_counter() - self.start, 1e-9)

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)

    def shard(self, index: int, folder: Path) -> None:
        logger.info("%s: wrote %s (%d prompts so far, %.1f prompts/s)", folder, shard_name(index), self.done, self.rate())

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _prepare(folder: Path, wanted: dict[str, Any]) -> Optional[dict[str, Any]]:
    """The manifest to resume from (None: start afresh). Refuses a folder holding foreign files, or a
    store whose finished shards were collected with other arguments; deletes only the store's own
    temporary files."""
    refuse_foreign(folder)
    if not (folder / MANIFEST).is_file():
        return None
    manifest = read_manifest(folder)
    for name in sorted(p.name for p in folder.iterdir()):  # leftovers of a run killed while writing: the store's own temporary names only
        if _TEMP.fullmatch(name):
            (folder / name).unlink()
            logger.info("%s: removed the unfinished temporary file %s", folder, name)
    if not manifest["shards"]:
        return None  # nothing finished yet: start afresh, with this call's arguments
    for key in CHECKED_KEYS:
        if manifest.get(key) != wanted[key]:
            raise InputError(
                f"out={str(folder)!r} holds a store collected with {key}={manifest.get(key)!r}, but this call has "
                f"{key}={wanted[key]!r}; repeat that call's arguments to resume, or give another folder"
            )
    for shard in manifest["shards"]:
        path = folder / shard["file"]
        if not path.is_file() or path.stat().st_size != shard["bytes"]:
            raise InputError(f"{path}: a finished shard is missing or has the wrong size; the store cannot be resumed")
    return manifest


def refuse_foreign(out: Any, label: str = "out=") -> Path:
    """``out`` as a folder path, after refusing a non-path, a file, or a non-empty folder that holds no
    store (checked before a model is loaded; nothing is written)."""
    folder = _check_out(out)
    if folder.is_dir() and not (folder / MANIFEST).is_file():
        entries = sorted(p.name for p in folder.iterdir())
        if entries:
            shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
            raise InputError(f"{label}{str(out)!r} holds files that are not an activation store ({shown}); "
                             "give a new or empty folder, or a store to resume (nothing was changed)")
    return folder


class LinePrompts:
    """The prompts of a text file, one per line (empty lines skipped), or of a JSON-lines file's
    ``column``; read lazily, counted once for the progress bar."""

    def __init__(self, path: PathLike, column: Optional[str] = None) -> None:
        self.path, self.column = Path(path), column
        if not self.path.is_file():
            raise InputError(f"prompts file {str(path)!r} not found")
        self.rows = self.path.suffix.lower() in (".jsonl", ".ndjson")
        with open(self.path, encoding="utf-8") as handle:
            self._len = sum(1 for line in handle if line.strip())

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[Any]:
        with open(self.path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                if not self.rows:
                    yield line.rstrip("\r\n")
                    continue
                try:
                    yield json.loads(line)
                except ValueError as exc:
                    raise InputError(f"{self.path}:{number}: not a JSON line ({exc})") from None


def load_dataset_prompts(name: str, split: str = "train", streaming: bool = False) -> Any:
    """``datasets.load_dataset(name, split=split, streaming=streaming)``, with a clear error when the
    ``datasets`` package is missing (``pip install 'nnspec[datasets]'``)."""
    try:
        import datasets
    except ImportError:
        raise InputError(f"--dataset {name}: reading Hugging Face datasets needs the datasets package "
                         "(pip install 'nnspec[datasets]'); or give a text or JSON-lines file with --prompts") from None
    builders = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet", ".txt": "text", ".arrow": "arrow"}
    path = Path(name).expanduser()
    try:
        if path.is_dir() and (path / "dataset_info.json").is_file():  # written by Dataset.save_to_disk
            loaded = datasets.load_from_disk(str(path))
            return loaded[split] if isinstance(loaded, datasets.DatasetDict) else loaded
        if path.is_file() and path.suffix.lower() in builders:
            return datasets.load_dataset(builders[path.suffix.lower()], data_files=str(path), split=split, streaming=streaming)
        return datasets.load_dataset(name, split=split, streaming=streaming)
    except (OSError, ValueError, KeyError) as exc:  # not found, offline, no such split
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputError(f"--dataset {name}: cannot be loaded ({first})") from None


def write_store(
    model: Any,
    prompts: Union[Sequence[str], Iterable[Any]],
    out: PathLike,
    layers: Any = None,
    positions: Any = -1,
    batch_size: int = 32,
    value: str = "layers_output",
    column: Optional[str] = None,
    remote: bool = False,
    progress: bool = True,
    dtype: Optional[torch.dtype] = None,
    shard_size: int = 4096,
) -> ActivationStore:
    """Collect ``value[layer]`` at ``positions`` of every prompt into a store folder ``out``, shard by
    shard, and return the store. Arguments as :func:`nnspec.activations.collect_activations`, plus:

    Args:
        out: a new or empty folder, or a store an earlier call with the same arguments began (it
            resumes after its last finished shard; a finished store is returned as is).
        shard_size: prompts per shard file (the most rows held in memory).

    Returns:
        An :class:`ActivationStore`; ``store[i]`` is ``(num_layers, hidden)`` or
        ``(num_layers, num_positions, hidden)``.
    """
    from safetensors.torch import save_file

    from .activations import VALUES, iter_batches
    from .runtime.arguments import as_layers

    folder = _check_out(out)
    _count(shard_size, "shard_size")
    _count(batch_size, "batch_size")
    if value not in VALUES:
        raise InputError(f"value={value!r} is not collectable{did_you_mean(value, VALUES)}; choose from {', '.join(VALUES)}")
    if dtype is not None and not isinstance(dtype, torch.dtype):
        raise InputTypeError(f"dtype must be a torch.dtype such as torch.float16, got {type(dtype).__name__} {dtype!r}")
    chosen = as_layers(model, layers)
    repeated = sorted({layer for layer in chosen if chosen.count(layer) > 1})
    if repeated:
        raise InputError(f"layers repeats {repeated}: a store keeps one tensor per layer")
    accessor = getattr(model, value)
    for layer in chosen:  # a value a chosen layer lacks raises its reason before any forward
        if not accessor.serves(layer):
            accessor[layer]
    wanted: dict[str, Any] = {
        "format": FORMAT, "version": VERSION,
        "model": str(getattr(model.config, "name_or_path", "") or ""), "spec": model.spec.name,
        "value": value, "layers": chosen, "positions": _positions_key(positions), "dtype": _dtype_name(dtype),
        "column": column, "batch_size": batch_size, "shard_size": shard_size,
        "names": [f"{value}.{layer}" for layer in chosen],
    }
    texts, total = _texts(prompts, column)
    manifest = _prepare(folder, wanted)

    # Skip the prompts of finished shards, checking that they are the ones collected before.
    if manifest is not None:
        if total is not None and manifest.get("prompt_count") not in (None, total):
            raise InputError(f"out={str(folder)!r} holds a store of prompt_count={manifest['prompt_count']}, "
                             f"but this call gives {total} prompts; give the same prompts to resume")
        for index, shard in enumerate(manifest["shards"]):
            seen = list(islice(texts, shard["stop"] - shard["start"]))
            if len(seen) != shard["stop"] - shard["start"] or _prompt_digest(seen) != shard["prompts_sha256"]:
                raise InputError(f"out={str(folder)!r}: prompts differ from those of finished shard {index} "
                                 f"(rows {shard['start']}-{shard['stop']}); give the same prompts in the same order to resume")
        if manifest["complete"]:
            extra = next(texts, None)
            if extra is not None:
                raise InputError(f"out={str(folder)!r} holds a finished store of {manifest['rows']} prompts, "
                                 "but this call gives more; give the same prompts, or another folder")
            return ActivationStore(folder)
    else:
        folder.mkdir(parents=True, exist_ok=True)
        manifest = dict(wanted, prompt_count=total, rows=0, complete=False, row_shape=None, stored_dtype=None, shards=[])
        _write_json(folder / MANIFEST, manifest)
    manifest["prompt_count"] = total if total is not None else manifest.get("prompt_count")

    done = int(manifest["rows"])
    bar = _Progress(total, done, progress, f"collecting {value}")
    buffers: Optional[torch.Tensor] = None  # (layers, shard_size, ...), reused from shard to shard

    def write_shard(shard_prompts: list[str], filled: int) -> None:
        assert buffers is not None
        index = len(manifest["shards"])
        final = folder / shard_name(index)
        temp = _temp_of(final)
        start = int(manifest["rows"])
        tensors = {name: buffers[k, :filled].contiguous() for k, name in enumerate(manifest["names"])}
        # one metadata key: safetensors writes several in no fixed order, and equal runs must give equal bytes
        rows = json.dumps({"format": FORMAT, "start": start, "stop": start + filled}, sort_keys=True)
        save_file(tensors, str(temp), metadata={"nnspec": rows})
        _replace_durably(temp, final)
        manifest["shards"].append({
            "file": final.name, "start": start, "stop": start + filled, "bytes": final.stat().st_size,
            "sha256": _sha256(final), "prompts_sha256": _prompt_digest(shard_prompts),
        })
        manifest["rows"] = start + filled
        _write_json(folder / MANIFEST, manifest)
        bar.shard(index, folder)

    try:
        while True:
            shard_prompts = list(islice(texts, shard_size))  # strings only: the rows come one batch at a time
            if not shard_prompts:
                break
            filled = 0
            # batches start at each shard's first prompt, so a resumed run forms the same batches
            for part in iter_batches(model, shard_prompts, chosen, positions, batch_size=batch_size, value=value,
                                     remote=remote, dtype=dtype):
                if buffers is None:
                    buffers = torch.empty((len(chosen), shard_size, *part.shape[2:]), dtype=part.dtype)
                    manifest["row_shape"], manifest["stored_dtype"] = list(part.shape[2:]), _dtype_name(part.dtype)
                buffers[:, filled : filled + part.shape[1]] = part
                filled += part.shape[1]
                bar.update(part.shape[1])
            write_shard(shard_prompts, filled)
    finally:
        bar.close()
    manifest["complete"] = True
    _write_json(folder / MANIFEST, manifest)
    logger.info("%s: %d prompts collected (%.1f prompts/s this run)", folder, manifest["rows"], bar.rate())
    return ActivationStore(folder)


__all__ = [
    "ActivationStore", "CHECKED_KEYS", "LinePrompts", "MANIFEST", "load_dataset_prompts", "read_manifest", "refuse_foreign",
    "shard_name", "write_store",
]
