"""Anthropic's streamed content blocks: text and tool calls, as the tools core gives them out, become
`content_block_start` / `content_block_delta` / `content_block_stop` events with running indexes.

Text comes as `text_delta`s in a text block; a call opens a `tool_use` block (id, name, input {})
whose input follows as `input_json_delta` fragments (`partial_json`). The `anthropic` package joins
the fragments and parses them, so a streamed message assembles into the same content as a whole one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from locallab.api.sse import NamedEvent
from locallab.engines.tools import ToolCallDelta
from locallab.services.tools import ToolEvent, new_call_id


def _block_start(index: int, block: dict[str, Any]) -> NamedEvent:
    return "content_block_start", {"type": "content_block_start", "index": index, "content_block": block}


def _delta(index: int, delta: dict[str, Any]) -> NamedEvent:
    return "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}


class ContentBlocks:
    """Opens, fills and closes content blocks in order; `called` says whether a tool_use block came."""

    def __init__(self) -> None:
        self.index = -1  # of the latest block opened
        self.open: str | None = None  # its type while it takes deltas
        self.call_index: int | None = None  # the tools core's index of the call in the open block
        self.called = False

    def start_text(self) -> list[NamedEvent]:
        return [*self._close(), self._open("text", {"type": "text", "text": ""})]

    def text(self, text: str) -> list[NamedEvent]:
        events = self.start_text() if self.open != "text" else []
        return [*events, _delta(self.index, {"type": "text_delta", "text": text})]

    def call(self, delta: ToolCallDelta) -> list[NamedEvent]:
        events: list[NamedEvent] = []
        if self.open != "tool_use" or self.call_index != delta.index:  # the first piece of a call
            block = {
                "type": "tool_use",
                "id": delta.id or new_call_id(),
                "name": delta.name or "",
                "input": {},
            }
            events = [*self._close(), self._open("tool_use", block)]
            self.call_index, self.called = delta.index, True
        if delta.arguments:
            events.append(_delta(self.index, {"type": "input_json_delta", "partial_json": delta.arguments}))
        return events

    def feed(self, events: Sequence[ToolEvent]) -> list[NamedEvent]:
        out: list[NamedEvent] = []
        for event in events:
            out += self.text(event) if isinstance(event, str) else self.call(event)
        return out

    def finish(self) -> list[NamedEvent]:
        """Closes the last block; an answer with nothing in it still has its (empty) text block."""
        events = self.start_text() if self.index < 0 else []
        return events + self._close()

    def _open(self, kind: str, block: dict[str, Any]) -> NamedEvent:
        self.index += 1
        self.open = kind
        return _block_start(self.index, block)

    def _close(self) -> list[NamedEvent]:
        if self.open is None:
            return []
        self.open, self.call_index = None, None
        return [("content_block_stop", {"type": "content_block_stop", "index": self.index})]
