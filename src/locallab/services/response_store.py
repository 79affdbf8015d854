"""Stored responses of OpenAI's Responses API, in SQLite: `previous_response_id` chains and retrieval
survive a restart.

One connection in WAL mode (readers never wait for the writer) behind a lock, used from worker threads
so the event loop never blocks on the disk; `busy_timeout` covers another process on the same file.
The schema is versioned with `PRAGMA user_version` and migrated on open. With API keys on, each
response belongs to the key that created it (its short hash) and other keys cannot see it.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from locallab.errors import ResponseNotFoundError

T = TypeVar("T")

# Each entry moves the schema one version up; never edit one that has shipped, append a new one.
MIGRATIONS = (
    """
    CREATE TABLE responses (
        id TEXT PRIMARY KEY,
        created_at REAL NOT NULL,
        owner TEXT,
        previous_id TEXT,
        body TEXT NOT NULL
    );
    CREATE INDEX responses_created_at ON responses (created_at);
    CREATE TABLE input_items (
        response_id TEXT NOT NULL REFERENCES responses (id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        item TEXT NOT NULL,
        PRIMARY KEY (response_id, position)
    );
    """,
)
MAX_CHAIN = 1000  # previous_response_id hops followed at most (a loop cannot form, but stay bounded)


class StoreVersionError(RuntimeError):
    """The database was written by a newer LocalLab: refuse to start rather than damage it."""


@dataclass(frozen=True)
class StoredResponse:
    id: str
    created_at: float
    previous_id: str | None
    body: dict[str, Any]
    input_items: list[dict[str, Any]]


def _not_found(response_id: str) -> ResponseNotFoundError:
    return ResponseNotFoundError(
        f"response_id: no stored response '{response_id}' (never stored, deleted, past the retention "
        "period, or created with another API key)."
    )


def store_problem(path: Path) -> str | None:
    """Why the database cannot be used (checked before the server starts), or None. Opening it creates
    or migrates it."""
    store = ResponseStore(path)
    try:
        store._open()
    except StoreVersionError as exc:
        return str(exc)
    except (OSError, sqlite3.Error) as exc:
        return f"{path}: {exc}. Set LOCALLAB_DATA_DIR to a directory LocalLab can write."
    finally:
        if store._db is not None:
            store._db.close()
    return None


class ResponseStore:
    def __init__(self, path: Path, retention_days: float = 0.0, clock: Callable[[], float] = time.time):
        self.path = path
        self.retention_days = retention_days
        self._clock = clock
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    async def open(self) -> None:
        await asyncio.to_thread(self._open)

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA foreign_keys=ON")
        db.execute("PRAGMA busy_timeout=10000")
        self._migrate(db)
        self._db = db
        self._prune()

    def _migrate(self, db: sqlite3.Connection) -> None:
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        if version > len(MIGRATIONS):
            raise StoreVersionError(
                f"{self.path} has schema version {version}, newer than this LocalLab knows "
                f"({len(MIGRATIONS)}); upgrade LocalLab or set LOCALLAB_DATA_DIR to another directory."
            )
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            db.executescript(f"BEGIN IMMEDIATE; {script}; PRAGMA user_version = {number}; COMMIT;")

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        def locked() -> T:
            if self._db is None:
                raise RuntimeError("the response store is not open")
            with self._lock:
                return work(self._db)

        return await asyncio.to_thread(locked)

    async def save(
        self,
        body: dict[str, Any],
        input_items: list[dict[str, Any]],
        owner: str | None,
        previous_id: str | None,
    ) -> None:
        def save(db: sqlite3.Connection) -> None:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(
                    "INSERT INTO responses (id, created_at, owner, previous_id, body) VALUES (?, ?, ?, ?, ?)",
                    (body["id"], self._clock(), owner, previous_id, json.dumps(body)),
                )
                db.executemany(
                    "INSERT INTO input_items (response_id, position, item) VALUES (?, ?, ?)",
                    [(body["id"], i, json.dumps(item)) for i, item in enumerate(input_items)],
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

        await self._run(save)

    @staticmethod
    def _load(db: sqlite3.Connection, response_id: str, owner: str | None) -> StoredResponse | None:
        row = db.execute(
            "SELECT created_at, previous_id, body FROM responses WHERE id = ? AND owner IS ?",
            (response_id, owner),
        ).fetchone()
        if row is None:
            return None
        items = db.execute(
            "SELECT item FROM input_items WHERE response_id = ? ORDER BY position", (response_id,)
        ).fetchall()
        return StoredResponse(
            response_id, row[0], row[1], json.loads(row[2]), [json.loads(i[0]) for i in items]
        )

    async def get(self, response_id: str, owner: str | None) -> StoredResponse:
        found = await self._run(lambda db: self._load(db, response_id, owner))
        if found is None:
            raise _not_found(response_id)
        return found

    async def chain(self, response_id: str, owner: str | None) -> list[StoredResponse]:
        """The response and those before it (previous_response_id), oldest first. The chain ends early
        where an earlier response was deleted or pruned."""

        def walk(db: sqlite3.Connection) -> list[StoredResponse]:
            found: list[StoredResponse] = []
            next_id: str | None = response_id
            while next_id is not None and len(found) < MAX_CHAIN:
                stored = self._load(db, next_id, owner)
                if stored is None:
                    break
                found.append(stored)
                next_id = stored.previous_id
            return found[::-1]

        responses = await self._run(walk)
        if not responses:
            raise _not_found(response_id)
        return responses

    async def delete(self, response_id: str, owner: str | None) -> None:
        def delete(db: sqlite3.Connection) -> int:
            return db.execute(
                "DELETE FROM responses WHERE id = ? AND owner IS ?", (response_id, owner)
            ).rowcount

        if await self._run(delete) == 0:
            raise _not_found(response_id)

    def _prune(self) -> int:
        if self.retention_days <= 0 or self._db is None:
            return 0
        cutoff = self._clock() - self.retention_days * 86400
        with self._lock:
            return self._db.execute("DELETE FROM responses WHERE created_at < ?", (cutoff,)).rowcount

    async def prune(self) -> int:
        """Deletes responses older than the retention period; returns how many."""
        return await asyncio.to_thread(self._prune)

    async def close(self) -> None:
        def close() -> None:
            with self._lock:
                if self._db is not None:
                    self._db.close()
                    self._db = None

        await asyncio.to_thread(close)
