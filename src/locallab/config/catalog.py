"""The model catalog: models LocalLab knows by id, read from `catalog.toml` in this package."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

CATALOG_FILE = Path(__file__).with_name("catalog.toml")


@dataclass(frozen=True)
class PackageSource:
    """A model file shipped inside an installed Python package."""

    package: str
    file: str
    pip: str

    def locate(self) -> Path | None:
        """Where the file is, or None when the package is not installed."""
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            return None
        for folder in spec.submodule_search_locations:
            path = Path(folder) / self.file
            if path.is_file():
                return path
        return None


@dataclass(frozen=True)
class CatalogEntry:
    id: str
    name: str
    description: str
    engine: str
    format: str
    parameters: str
    quantization: str
    context_length: int
    license: str
    size_bytes: int
    source: PackageSource


def _entry(raw: dict[str, Any]) -> CatalogEntry:
    fields = {k: v for k, v in raw.items() if k != "source"}
    return CatalogEntry(source=PackageSource(**raw["source"]), **fields)


def load_catalog(path: Path = CATALOG_FILE) -> dict[str, CatalogEntry]:
    with path.open("rb") as f:
        data = tomllib.load(f)
    entries = [_entry(raw) for raw in data.get("models", [])]
    return {entry.id: entry for entry in entries}
