"""The corpus of real published configs: ``config.json`` files of checkpoints researchers load.

Each file in ``nnspec/data/configs/`` is a verbatim copy of one Hub checkpoint's ``config.json``;
``SOURCES.toml`` beside them names, for each Hub id, its file and the public copy it was taken
from (repository, path, commit; or, for an archived public copy whose repository was not
recorded, its archive id and a note saying what the copy is). The conformance matrix builds a
tiny checkpoint from each (sizes shrunk, every other key kept) and checks it like any spec's own,
so a spec is proven on what real checkpoints ship, not only on a config it chose.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

from ..errors import TinyCheckpointError, did_you_mean
from ..paths import data_path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

#: Marks a matrix row built from a real config (the rest is the Hub id).
REAL_PREFIX = "hub:"
#: Where the corpus lives.
CONFIG_DIR = data_path("configs")


@dataclass(frozen=True)
class RealConfig:
    """One published config: its Hub id, file, model type and where the copy came from."""

    hub_id: str
    file: Path
    model_type: str
    repo: str = ""
    path: str = ""
    commit: str = ""
    index_id: str = ""  # archive id of a public copy whose repository was not recorded
    note: str = ""
    #: The transformers releases that can read this config (a PEP 440 set; "" every release with
    #: the model type), and what the others lack.
    transformers: str = ""
    transformers_reason: str = ""

    def load(self) -> dict[str, Any]:
        return read_config_file(self.file)


def read_config_file(path: Path | str) -> dict[str, Any]:
    """Parse a ``config.json``; raises :class:`TinyCheckpointError` naming the file on bad JSON."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TinyCheckpointError(f"{path}: no such config file") from None
    except UnicodeDecodeError as exc:
        raise TinyCheckpointError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise TinyCheckpointError(f"{path}: cannot be read ({exc.strerror})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TinyCheckpointError(f"{path}: malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    if not isinstance(data, dict):
        raise TinyCheckpointError(f"{path}: a config.json holds a JSON object, not a {type(data).__name__}")
    if not isinstance(data.get("model_type"), str):
        raise TinyCheckpointError(f"{path}: no \"model_type\" key; is it a HuggingFace config.json?")
    return data


def _release_range(hub_id: str, entry: dict[str, Any]) -> str:
    """The entry's ``transformers`` range, checked: a PEP 440 set, stated with a reason."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    where = f"{CONFIG_DIR / 'SOURCES.toml'} [{hub_id!r}]"
    specifier, reason = entry.get("transformers", ""), entry.get("transformers_reason", "")
    if not specifier:
        if reason:
            raise TinyCheckpointError(f"{where}: transformers_reason without a transformers range")
        return ""
    try:
        SpecifierSet(specifier)
    except InvalidSpecifier:
        raise TinyCheckpointError(f"{where}: transformers = {specifier!r} is not a version specifier like '>=4.48'") from None
    if not reason.strip():
        raise TinyCheckpointError(f"{where}: transformers = {specifier!r} needs transformers_reason (what older releases lack)")
    return str(specifier)


@lru_cache(maxsize=1)
def corpus() -> dict[str, RealConfig]:
    """Every config of the corpus, by Hub id, in the order ``SOURCES.toml`` lists them."""
    index = tomllib.loads((CONFIG_DIR / "SOURCES.toml").read_text(encoding="utf-8"))
    found = {}
    for hub_id, entry in index.items():
        file = CONFIG_DIR / entry["file"]
        found[hub_id] = RealConfig(
            hub_id=hub_id,
            file=file,
            model_type=read_config_file(file)["model_type"],
            repo=entry.get("repo", ""),
            path=entry.get("path", ""),
            commit=entry.get("commit", ""),
            index_id=entry.get("index_id", ""),
            note=entry.get("note", ""),
            transformers=_release_range(hub_id, entry),
            transformers_reason=entry.get("transformers_reason", ""),
        )
    return found


def by_model_type() -> dict[str, list[RealConfig]]:
    """The corpus grouped by ``model_type``."""
    groups: dict[str, list[RealConfig]] = {}
    for real in corpus().values():
        groups.setdefault(real.model_type, []).append(real)
    return groups


#: Keys that leave the tiny checkpoint's behaviour as it is (names, dtype of the published
#: weights, which class names the config lists, random-init scale): two configs that differ only
#: in these, once shrunk, give the same tiny checkpoint.
NOT_BEHAVIOUR = (
    "_name_or_path", "name_or_path", "transformers_version", "torch_dtype", "dtype", "architectures", "auto_map",
    "_commit_hash", "use_cache", "initializer_range", "model_name",
)


def fingerprint(real: RealConfig) -> str:
    """What a real config's tiny checkpoint is made of: its shrunk config without
    :data:`NOT_BEHAVIOUR` keys. Llama-3-8B and Llama-3-70B shrink to the same thing."""
    import hashlib

    from .shrink import shrink_config

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in NOT_BEHAVIOUR}
        return value

    shrunk = shrink_config(real.load(), 384, {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}).config
    return hashlib.sha256(json.dumps(strip(shrunk), sort_keys=True, default=str).encode()).hexdigest()


def distinct(reals: list[RealConfig]) -> dict[str, list[str]]:
    """One representative Hub id per distinct tiny checkpoint (the first listed), with every Hub
    id it stands for (itself first): the matrix runs one row per representative."""
    groups: dict[str, list[str]] = {}
    for real in reals:
        groups.setdefault(fingerprint(real), []).append(real.hub_id)
    return {ids[0]: ids for ids in groups.values()}


def get(hub_id: str) -> RealConfig:
    """The corpus entry of ``hub_id``; raises :class:`TinyCheckpointError` with the closest ids."""
    entries = corpus()
    if hub_id not in entries:
        raise TinyCheckpointError(f"no config for {hub_id!r} in the corpus{did_you_mean(hub_id, entries)}")
    return entries[hub_id]


def resolve(source: str) -> tuple[str, dict[str, Any]]:
    """A config from ``source``: a ``config.json`` file, a checkpoint directory, a Hub id of the
    corpus, or any Hub id (read through ``huggingface_hub``, so its cache and offline mode apply).

    Returns the name to record (the Hub id or the file) and the parsed config.
    """
    path = Path(source)
    if path.is_dir():
        path = path / "config.json"
        if not path.is_file():
            raise TinyCheckpointError(f"{source}: the directory holds no config.json")
    if path.is_file():
        return str(path), read_config_file(path)
    if source.endswith(".json"):
        raise TinyCheckpointError(f"{source}: no such config file")
    if source in corpus():
        return source, corpus()[source].load()
    return source, read_config_file(_hub_config(source))


def _hub_config(hub_id: str) -> Path:
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import HFValidationError
    except ImportError:  # pragma: no cover - transformers depends on huggingface_hub
        raise TinyCheckpointError(f"{hub_id!r} is not a file, and huggingface_hub is not installed to fetch it") from None
    try:
        return Path(hf_hub_download(hub_id, "config.json"))
    except HFValidationError:
        raise TinyCheckpointError(
            f"{hub_id!r} is neither a config file, a checkpoint directory, nor a Hub id"
            f"{did_you_mean(hub_id, corpus())}"
        ) from None
    except Exception as exc:  # noqa: BLE001 - network, auth and cache misses all end here
        raise TinyCheckpointError(
            f"cannot read config.json of {hub_id!r} from the Hub or its cache ({type(exc).__name__}); "
            f"pass a config.json file instead{did_you_mean(hub_id, corpus())}"
        ) from None


def row_name(hub_id: str) -> str:
    """The matrix variant slot of a real config's row."""
    return f"{REAL_PREFIX}{hub_id}"


def real_id(variant: Optional[str]) -> Optional[str]:
    """The Hub id of a real config's row, or ``None`` for a spec variant."""
    if variant is not None and variant.startswith(REAL_PREFIX):
        return variant[len(REAL_PREFIX):]
    return None
