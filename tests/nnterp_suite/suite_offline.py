"""pytest plugin for nnterp's suite run offline (loaded by the harness with ``-p suite_offline``).

The suite's helpers (its ``tests/utils.py``) keep two files: a list of tiny models fetched from a
Hub collection, and a loading status written next to the installed package. This plugin answers
both from the harness's work folder before the suite collects anything, so nothing is fetched and
nothing is written inside the installed package under test.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
from pathlib import Path


def _provide_data_package() -> None:
    # The suite locates its status file with importlib.resources in `<package>.data`; a package
    # installed from its wheel may have no such subpackage, so give it one in the work folder.
    import importlib

    package = importlib.import_module(os.environ["NNTERP_SUITE_PACKAGE"])
    try:
        importlib.import_module(package.__name__ + ".data")
    except ModuleNotFoundError:
        extra = Path(os.environ["NNTERP_SUITE_WORKDIR"]) / "package" / "data"
        extra.mkdir(parents=True, exist_ok=True)
        (extra / "__init__.py").write_text("")
        package.__path__.append(str(extra.parent))


_provide_data_package()


def _load_tokenizers_explicitly() -> None:
    # The suite builds its plain-NNsight reference models with `LanguageModel(hub_id)`. NNsight 0.8.1
    # cannot build one by name with transformers 5 (its pipeline gets no tokenizer source), so the
    # plain models are given their tokenizer explicitly, as nnspec.nnsight_utils.load_model does.
    # Only the suite's reference models are touched: nnspec's own loading never goes through here.
    # They also get NNsight 0.7's name for the wrapped model, which the suite reads.
    from nnsight import LanguageModel

    from nnspec.runtime.loading import load_tokenizer

    original = LanguageModel.__init__

    def init(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if args and isinstance(args[0], str) and kwargs.get("tokenizer") is None and type(self) is LanguageModel:
            kwargs["tokenizer"] = load_tokenizer(args[0], kwargs.get("trust_remote_code", False), kwargs.get("revision"))
        original(self, *args, **kwargs)

    LanguageModel.__init__ = init
    # NNsight 0.8 calls the wrapped model `_module`; the suite reads it under 0.7's name `_model`.
    if not hasattr(LanguageModel, "_model"):
        LanguageModel._model = property(lambda self: self._module)


def pytest_configure(config: object) -> None:
    if os.environ.get("NNTERP_SUITE_PACKAGE") == "nnspec":
        _load_tokenizers_explicitly()
    utils = sys.modules.get("tests.utils")
    if utils is None:  # the suite's conftest imports it; nothing to redirect without it
        return
    work = Path(os.environ["NNTERP_SUITE_WORKDIR"])
    ids = json.loads(os.environ["NNTERP_SUITE_MODELS"])
    toy = Path(utils.__file__).parent.parent / "data" / "toy_models_cache.json"
    toy.parent.mkdir(parents=True, exist_ok=True)
    # The Hub collection's tiny models are unreachable: the suite's fixed list stands alone.
    toy.write_text(json.dumps({"timestamp": datetime.datetime.now().isoformat(), "models": []}))
    status = work / "test_loading_status.json"
    versions = {
        "available_hf_models": ids,
        "unavailable_hf_models": [],
        utils.NNSIGHT_VERSION: {"available_nn_models": ids, "unavailable_nn_models": []},
    }
    status.write_text(json.dumps({utils.TRANSFORMERS_VERSION: versions}))
    utils.test_loading_status_path = status
    utils.test_loading_status_lock = str(status) + ".lock"
