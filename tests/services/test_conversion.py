"""Pulling a packaged embedding model converts it: progress events, an all-or-nothing file, and a pull
of a model that is already converted is immediate."""

from __future__ import annotations

import asyncio
from pathlib import Path

from locallab.services.downloads import DownloadManager
from locallab.services.pull_targets import ConversionTarget, PullProgress, parse_target
from tests.embedding_model import MODEL_ID, entry


async def _pull(models_dir: Path) -> list[PullProgress]:
    manager = DownloadManager(models_dir)
    target = parse_target(MODEL_ID, {MODEL_ID: entry()})
    assert isinstance(target, ConversionTarget)
    pull = manager.start(target)
    events = [p async for p in manager.watch(pull)]
    await manager.close()
    return events


def test_pull_converts_with_progress_then_the_file_is_in_place(tmp_path: Path) -> None:
    events = asyncio.run(asyncio.wait_for(_pull(tmp_path), 120))
    statuses = [e.status for e in events]
    assert statuses[-1] == "success", events[-1]
    assert "converting" in statuses
    converting = [e for e in events if e.status == "converting" and e.total]
    assert converting and converting[-1].completed == converting[-1].total
    final = events[-1]
    assert final.path == str(tmp_path / "all-minilm-l6-v2.f32.gguf")
    assert Path(final.path).stat().st_size == entry().size_bytes
    assert final.sha256 and not final.verified
    assert list((tmp_path / ".partial").iterdir()) == []


def test_a_second_pull_finds_the_converted_file(tmp_path: Path) -> None:
    first = asyncio.run(asyncio.wait_for(_pull(tmp_path), 120))[-1]
    second = asyncio.run(asyncio.wait_for(_pull(tmp_path), 120))[-1]
    assert second.status == "success" and second.sha256 == first.sha256
