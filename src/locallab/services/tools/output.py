"""A generation's chunks as content and tool calls, whether the calls come as text to parse (local
engines) or already parsed by an upstream (the remote engine relays `GenerationChunk.tool_calls`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from locallab.engines.base import GenerationChunk
from locallab.engines.tools import ToolCall, ToolCallDelta
from locallab.services.tools.formats import ToolFormat
from locallab.services.tools.parsing import ToolCallParser, ToolEvent


@dataclass
class _Relayed:
    id: str
    name: str
    arguments: str = ""


@dataclass
class ToolOutput:
    """Feed it every chunk in order; it gives back each chunk's events and, at the end, the calls."""

    format: ToolFormat
    relay: bool = False  # the engine's upstream parses calls itself (an engine that takes text prompts)
    _parser: ToolCallParser = field(init=False)
    _relayed: dict[int, _Relayed] = field(default_factory=dict)
    _relayed_text: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._parser = ToolCallParser(self.format)

    def feed(self, chunk: GenerationChunk) -> list[ToolEvent]:
        if self.relay:
            events: list[ToolEvent] = [chunk.text] if chunk.text else []
            self._relayed_text.append(chunk.text)
            for delta in chunk.tool_calls:
                self._relay(delta)
            events.extend(chunk.tool_calls)
            return events
        events = self._parser.feed(chunk.text)
        if chunk.finish_reason is not None:
            events.extend(self._parser.finish())
        return events

    def feed_whole(self, text: str, calls: tuple[ToolCallDelta, ...]) -> None:
        """A whole answer at once (its relayed calls, if any)."""
        self.feed(GenerationChunk(text, 0, 0, "stop", tool_calls=calls))

    def _relay(self, delta: ToolCallDelta) -> None:
        call = self._relayed.get(delta.index)
        if call is None:
            call = self._relayed[delta.index] = _Relayed(delta.id or "", delta.name or "")
        call.arguments += delta.arguments

    @property
    def calls(self) -> list[ToolCall]:
        if self.relay:
            return [ToolCall(c.id, c.name, c.arguments) for _, c in sorted(self._relayed.items())]
        return self._parser.calls

    @property
    def content(self) -> str | None:
        if self.relay:
            return "".join(self._relayed_text) or None
        return self._parser.content
