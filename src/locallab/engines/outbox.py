"""Outbox: hands items from an engine thread to asyncio queues, one event-loop wake-up per step."""

from __future__ import annotations

import asyncio
from typing import Any


class Outbox:
    """Items for asyncio queues, handed to their event loops once per engine step.

    One wake-up per loop and step instead of one per token: on a machine where the engine's threads
    use every core, each wake-up of the event loop takes time from the decode.
    """

    def __init__(self) -> None:
        self._items: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Queue[Any], object]]] = {}

    def put(self, loop: asyncio.AbstractEventLoop, out: asyncio.Queue[Any], item: object) -> None:
        self._items.setdefault(loop, []).append((out, item))

    def flush(self) -> None:
        items, self._items = self._items, {}
        for loop, batch in items.items():
            try:
                loop.call_soon_threadsafe(_deliver, batch)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                pass


def _deliver(batch: list[tuple[asyncio.Queue[Any], object]]) -> None:
    for out, item in batch:
        out.put_nowait(item)
