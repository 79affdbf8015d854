"""ResponseStore on a real SQLite file: WAL, versioned schema, chains, owners, retention, concurrency."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from locallab.errors import ResponseNotFoundError
from locallab.services.response_store import MIGRATIONS, ResponseStore, StoreVersionError
from tests.conftest import FakeClock
from tests.real_model import run


def body(response_id: str) -> dict[str, Any]:
    return {"id": response_id, "object": "response", "output": []}


ITEM = {"id": "msg_1", "type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}


def test_schema_is_versioned_and_the_file_is_in_wal_mode(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = ResponseStore(tmp_path / "deep" / "responses.db")
        await store.open()
        await store.close()

    run(scenario())
    db = sqlite3.connect(tmp_path / "deep" / "responses.db")
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "responses.db"
    sqlite3.connect(path).execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(StoreVersionError, match="newer than this LocalLab knows"):
        run(ResponseStore(path).open())


def test_responses_and_chains_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "responses.db"

    async def write() -> None:
        store = ResponseStore(path)
        await store.open()
        await store.save(body("resp_a"), [ITEM], None, None)
        await store.save(body("resp_b"), [ITEM], None, "resp_a")
        await store.close()

    async def read() -> list[str]:
        store = ResponseStore(path)
        await store.open()
        chain = await store.chain("resp_b", None)
        assert (await store.get("resp_a", None)).input_items == [ITEM]
        await store.close()
        return [r.id for r in chain]

    run(write())
    assert run(read()) == ["resp_a", "resp_b"]


def test_owners_see_only_their_responses_and_delete_removes(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = ResponseStore(tmp_path / "responses.db")
        await store.open()
        await store.save(body("resp_a"), [ITEM], "key-a", None)
        with pytest.raises(ResponseNotFoundError):
            await store.get("resp_a", "key-b")
        with pytest.raises(ResponseNotFoundError):
            await store.get("resp_a", None)
        await store.delete("resp_a", "key-a")
        with pytest.raises(ResponseNotFoundError):
            await store.get("resp_a", "key-a")
        with pytest.raises(ResponseNotFoundError):
            await store.delete("resp_a", "key-a")
        await store.close()

    run(scenario())


def test_retention_prunes_old_responses_and_zero_keeps_them(tmp_path: Path) -> None:
    clock = FakeClock()

    async def scenario() -> None:
        store = ResponseStore(tmp_path / "responses.db", retention_days=1, clock=clock)
        await store.open()
        await store.save(body("resp_old"), [ITEM], None, None)
        clock.advance(2 * 86400)
        await store.save(body("resp_new"), [ITEM], None, None)
        assert await store.prune() == 1
        await store.get("resp_new", None)
        with pytest.raises(ResponseNotFoundError):
            await store.get("resp_old", None)
        store.retention_days = 0
        clock.advance(10 * 86400)
        assert await store.prune() == 0
        await store.close()

    run(scenario())


def test_concurrent_writers_are_safe(tmp_path: Path) -> None:
    async def scenario() -> None:
        stores = [ResponseStore(tmp_path / "responses.db") for _ in range(2)]  # two connections, one file
        for store in stores:
            await store.open()
        await asyncio.gather(
            *(stores[i % 2].save(body(f"resp_{i}"), [ITEM, ITEM], None, None) for i in range(40))
        )
        for i in range(40):
            assert len((await stores[(i + 1) % 2].get(f"resp_{i}", None)).input_items) == 2
        for store in stores:
            await store.close()

    run(scenario())
