"""Blocking transfers from the Hugging Face Hub (or a mirror at HF_ENDPOINT) through `huggingface_hub`:
one GGUF file (`fetch`), a transformers model folder (`fetch_folder`), and the choice of a repository's
file by quantization. DownloadManager (services/downloads.py) runs them in worker threads.

A file is written to `<models_dir>/.partial/<name>.<hash>.partial` and moved to `<models_dir>/<name>`
only once it is complete, its sha256 matches and its GGUF structure checks out, so an interrupted or
corrupt download never appears as a model. A later pull of the same file resumes where the partial file
ends (an HTTP Range request); the hash in the partial name keeps a changed upstream file from resuming
someone else's bytes.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from locallab.engines.gguf import check_gguf_header
from locallab.errors import (
    DownloadError,
    InsufficientStorageError,
    InvalidRequestError,
    ModelLoadError,
    ModelNotFoundError,
)
from locallab.services.pull_targets import Fetched, FolderTarget, PullReport, PullTarget

logger = logging.getLogger(__name__)

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
PARTIAL_DIR = ".partial"
_REPORT_EVERY = 0.1  # seconds between progress reports


class PullCancelled(Exception):
    """A pull stopped because its caller, or the server, cancelled it."""


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
                raise PullCancelled
            self.n += int(n or 0)
            now = time.monotonic()
            if now - self._last >= _REPORT_EVERY:
                self._last = now
                report(self.n, self.total)

    return Reporter


def sha256_of(path: Path, cancel: threading.Event) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            if cancel.is_set():
                raise PullCancelled
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
        except PullCancelled:
            raise
        except self.transport_errors as exc:
            raise DownloadError(
                f"The download of {where} stopped: {exc}. Pull it again to resume from "
                f"{partial.stat().st_size if partial.exists() else 0} bytes."
            ) from exc
        digest = sha256_of(partial, cancel)
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
    report: PullReport,
    cancel: threading.Event,
) -> Fetched:
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
    report: PullReport,
    cancel: threading.Event,
) -> Fetched:
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
