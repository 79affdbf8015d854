"""The Responses API's streamed output items: text and tool calls, as the tools core gives them out,
become the semantic events that open, fill and close each item, numbered by `EventNumbering`.

Text goes into a `message` item (`response.output_item.added`, `response.content_part.added`,
`response.output_text.delta`s, then `.output_text.done`, `.content_part.done`, `.output_item.done`);
each call is a `function_call` item (added with `arguments: ""`, then
`response.function_call_arguments.delta`s, `.function_call_arguments.done` and `.output_item.done`).
The items, in order, are the final response's `output`, as in a whole answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from locallab.api.openai import responses_wire as wire
from locallab.api.sse import NamedEvent
from locallab.engines.tools import ToolCallDelta
from locallab.services.tools import ToolEvent, new_call_id


class OutputItems:
    def __init__(self, event: wire.EventNumbering) -> None:
        self.event = event
        self.output: list[dict[str, Any]] = []  # items done, in order
        self._item: dict[str, Any] | None = None  # the open item while it takes deltas
        self._call_index: int | None = None  # the tools core's index of the call in the open item
        self._text: list[str] = []

    def start_message(self) -> list[NamedEvent]:
        events = self._close()
        self._item, self._text = wire.output_message(wire.new_id("msg"), None, "in_progress"), []
        events.append(self.event("response.output_item.added", output_index=self._index, item=self._item))
        part = wire.text_part("")
        events.append(self.event("response.content_part.added", **self._place(), part=part))
        return events

    def text(self, text: str) -> list[NamedEvent]:
        events = self.start_message() if self._kind != "message" else []
        self._text.append(text)
        events.append(self.event("response.output_text.delta", **self._place(), delta=text, logprobs=[]))
        return events

    def call(self, delta: ToolCallDelta) -> list[NamedEvent]:
        events: list[NamedEvent] = []
        item = self._item
        if item is None or item["type"] != "function_call" or self._call_index != delta.index:
            events = self._close()  # a call's first piece
            call_id, name = delta.id or new_call_id(), delta.name or ""
            item = self._item = wire.function_call_item(wire.new_id("fc"), call_id, name, "", "in_progress")
            self._call_index = delta.index
            added = dict(item)  # a copy: the open item takes the arguments before the event is sent
            events.append(self.event("response.output_item.added", output_index=self._index, item=added))
        if delta.arguments:
            item["arguments"] += delta.arguments
            place = {"item_id": item["id"], "output_index": self._index}
            events.append(
                self.event("response.function_call_arguments.delta", **place, delta=delta.arguments)
            )
        return events

    def feed(self, events: Sequence[ToolEvent]) -> list[NamedEvent]:
        out: list[NamedEvent] = []
        for event in events:
            out += self.text(event) if isinstance(event, str) else self.call(event)
        return out

    def finish(self) -> list[NamedEvent]:
        return self._close()

    @property
    def _kind(self) -> str | None:
        return None if self._item is None else str(self._item["type"])

    @property
    def _index(self) -> int:
        """The output index of the open item (the next one when none is open)."""
        return len(self.output)

    def _place(self) -> dict[str, Any]:
        assert self._item is not None
        return {"item_id": self._item["id"], "output_index": self._index, "content_index": 0}

    def _close(self) -> list[NamedEvent]:
        item, index = self._item, self._index
        if item is None:
            return []
        events: list[NamedEvent] = []
        if item["type"] == "message":
            text = "".join(self._text)
            events.append(self.event("response.output_text.done", **self._place(), text=text, logprobs=[]))
            events.append(
                self.event("response.content_part.done", **self._place(), part=wire.text_part(text))
            )
            done = wire.output_message(item["id"], text)
        else:
            arguments = item["arguments"] or "{}"  # as in a whole answer
            done = wire.function_call_item(item["id"], item["call_id"], item["name"], arguments)
            events.append(
                self.event(
                    "response.function_call_arguments.done",
                    item_id=item["id"],
                    output_index=index,
                    name=item["name"],
                    arguments=done["arguments"],
                )
            )
        events.append(self.event("response.output_item.done", output_index=index, item=done))
        self.output.append(done)
        self._item, self._call_index = None, None
        return events
