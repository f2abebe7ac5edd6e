"""Where the package's own files live: bundled specs, shipped data, generated adapters."""

from __future__ import annotations

from pathlib import Path

#: The installed package folder.
PACKAGE_DIR = Path(__file__).resolve().parent
#: The bundled spec files.
SPECS_DIR = PACKAGE_DIR / "specs"
#: The adapters compiled from the bundled specs.
GENERATED_DIR = PACKAGE_DIR / "generated"
#: Data shipped with the package (compatibility table, published configs, unsupported types).
DATA_DIR = PACKAGE_DIR / "data"


def data_path(*parts: str) -> Path:
    """A file or folder under the package's data folder."""
    return DATA_DIR.joinpath(*parts)
