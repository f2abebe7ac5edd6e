"""Every error nnspec raises on bad input.

Each message names the file, key or argument at fault and, where a name was wrong, the closest
valid names, so that the fix is visible from the message alone.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest(name: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """The candidates most similar to ``name`` (difflib ratio), best first."""
    pool = sorted({str(c) for c in candidates})
    found = difflib.get_close_matches(name, pool, n=n, cutoff=0.5)
    if not found:
        # A dotted path: compare its last component too ("h.0.atn" vs "h.0.attn").
        tail = name.rsplit(".", 1)[-1]
        found = [c for c in pool if c.rsplit(".", 1)[-1] in difflib.get_close_matches(
            tail, [p.rsplit(".", 1)[-1] for p in pool], n=n, cutoff=0.6)][:n]
    return found


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'a', 'b'?)`` or an empty string when nothing is close."""
    found = closest(name, candidates)
    if not found:
        return ""
    return " (did you mean " + ", ".join(repr(f) for f in found) + "?)"


class NnspecError(Exception):
    """Base class of every nnspec error."""


class SpecError(NnspecError):
    """A spec file is malformed or invalid.

    Attributes:
        file: the spec file (or ``<name>`` for an in-memory spec).
        key: the dotted key path at fault, or ``None`` for the whole file.
        problems: one line per problem found (a file may have several).
    """

    def __init__(self, file: str, problems: list[str], key: str | None = None) -> None:
        self.file = file
        self.key = key
        self.problems = problems
        where = f"{file}" + (f": {key}" if key else "")
        if len(problems) == 1:
            message = f"{where}: {problems[0]}"
        else:
            message = f"{where}: {len(problems)} problems\n" + "\n".join(f"  - {p}" for p in problems)
        super().__init__(message)


class SpecNotFoundError(SpecError, FileNotFoundError):
    """The spec file does not exist or cannot be read."""


class SpecSyntaxError(SpecError):
    """The file is not valid TOML."""


class SpecValidationError(SpecError):
    """The TOML parses but does not describe a valid spec (unknown key, wrong type, missing field)."""


class SpecInheritanceError(SpecError):
    """``extends`` names an unknown spec or forms a cycle."""


class CompileDriftError(NnspecError):
    """The committed generated adapters differ from what the specs compile to."""


class UnsupportedArchitectureError(NnspecError):
    """No spec serves this model's ``config.model_type``."""


class ModelStructureError(NnspecError):
    """A spec path or config key does not exist in the loaded model."""


class LayerIndexError(NnspecError, IndexError):
    """A layer index outside ``[-num_layers, num_layers)``."""


class ShapeMismatchError(NnspecError, ValueError):
    """A tensor given to a setter or helper has the wrong shape."""


class CapabilityUnavailableError(NnspecError):
    """The spec declares that this model cannot keep a promise (with the reason)."""


class ConformanceError(NnspecError, AssertionError):
    """A conformance check found the standard interface disagreeing with plain transformers.

    Attributes:
        cause: what structurally failed, one of ``nnspec.verification.conformance.FAILURE_CAUSES``.
        layer: the layer the failure was found on (``None`` when it is not about one layer).
        max_error: the measured largest difference (``None`` where nothing was measured).
    """

    def __init__(
        self, message: str, cause: str = "mismatch", layer: int | None = None, max_error: float | None = None
    ) -> None:
        super().__init__(message)
        self.cause = cause
        self.layer = layer
        self.max_error = max_error


class TinyCheckpointError(NnspecError):
    """A tiny offline checkpoint could not be built from a spec's ``[tiny]`` section."""


class OutOfOrderReadError(NnspecError, RuntimeError):
    """A standard value was requested inside a trace after the model had computed it."""


class InputError(NnspecError, ValueError):
    """An argument or prompt given to the model or a helper cannot be used (named in the message)."""


class SpecFolderError(NnspecError):
    """A spec folder given to ``nnspec compile`` does not exist or holds no ``*.toml`` spec."""


class CompileOutputError(NnspecError):
    """The compiler's output folder holds files the compiler did not write, or is not a folder."""


class UsageError(NnspecError):
    """A command-line argument names a file, folder, model or option that cannot be used."""


class InputTypeError(NnspecError, TypeError):
    """An argument has a type nnspec cannot use (named in the message)."""


class UnknownNameError(NnspecError, KeyError):
    """A name (standard value, cache key, category, hook name) that does not exist; the message
    gives the closest valid ones."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class PositionError(NnspecError, IndexError):
    """A token position outside a prompt."""


class RenamingError(ModelStructureError):
    """A module or config key a renaming names does not exist in the model (or the renamed model
    fails its structural check)."""


class TokenizationError(InputError):
    """A target word has no token of its own (it is empty or only whitespace)."""


class ScaffoldError(NnspecError):
    """The model's structure could not be established (the message says what is missing)."""


class CompatibilityDataError(NnspecError):
    """A results or compatibility file has a layout this version cannot read."""


class VersionFailureError(NnspecError):
    """The installed transformers and NNsight versions were verified as failing for this spec, or the
    installed transformers is outside the releases the spec serves (pass ``allow_unverified=True``
    to load anyway)."""


class NnspecWarning(UserWarning):
    """Base class of the warnings nnspec issues itself (filter them with
    ``warnings.filterwarnings("ignore", category=nnspec.errors.NnspecWarning)``)."""
