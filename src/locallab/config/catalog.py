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
    """A model file shipped inside an installed Python package, or (`assemble = true`) put together by
    the package's `assemble(output_path)` from chunk packages, into the models directory."""

    package: str
    file: str
    pip: str
    assemble: bool = False

    def installed(self) -> bool:
        return importlib.util.find_spec(self.package) is not None

    def materialize(self, models_dir: Path) -> Path:
        """Blocking (an assembly writes and hashes the whole file): the model file, ready to load."""
        if not self.assemble:
            path = self.locate()
            if path is None:
                raise FileNotFoundError(f"{self.file} is not in the installed package {self.package}")
            return path
        module = importlib.import_module(self.package)
        target = models_dir / self.file
        if not target.is_file():
            models_dir.mkdir(parents=True, exist_ok=True)
            partial = target.with_suffix(".partial")
            module.assemble(output_path=partial, overwrite=True)  # checks the sha256 itself
            partial.replace(target)  # a model appears only once complete
        return target

    def locate(self) -> Path | None:
        """Where a shipped file is, or None when the package is not installed (or assembles its file)."""
        if self.assemble:
            return None
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
