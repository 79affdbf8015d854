"""Cost of the Responses API's store: one save, one retrieve, and a 200-response previous_response_id
chain walked, on a real SQLite file in a temporary directory.

    PYTHONPATH=src .venv/bin/python bench/response_store.py
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from locallab.services.response_store import ResponseStore

RESPONSES = 200


def _body(i: int) -> dict[str, Any]:
    text = {"type": "output_text", "text": "ok " * 100}
    return {"id": f"resp_{i}", "object": "response", "output": [{"type": "message", "content": [text]}]}


async def main() -> None:
    item = {
        "id": "msg_1",
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": "hi " * 50}],
    }
    with tempfile.TemporaryDirectory() as directory:
        store = ResponseStore(Path(directory) / "responses.db")
        await store.open()
        started = time.perf_counter()
        for i in range(RESPONSES):
            await store.save(_body(i), [item], None, f"resp_{i - 1}" if i else None)
        save = (time.perf_counter() - started) / RESPONSES
        started = time.perf_counter()
        for i in range(RESPONSES):
            await store.get(f"resp_{i}", None)
        get = (time.perf_counter() - started) / RESPONSES
        started = time.perf_counter()
        chain = await store.chain(f"resp_{RESPONSES - 1}", None)
        walk = time.perf_counter() - started
        await store.close()
    print(
        f"save {save * 1000:.2f} ms, retrieve {get * 1000:.2f} ms, chain of {len(chain)}: "
        f"{walk * 1000:.1f} ms"
    )


if __name__ == "__main__":
    asyncio.run(main())
