"""Reading tool calls out of a model's output, piece by piece as it streams.

`ToolCallParser` takes the output text as it comes and gives back content text and call pieces
(`ToolCallDelta`): the text before the first call marker is content; from the marker on, every JSON
object at the top level is a call, and nothing else there (tags, brackets, commas) is ever shown. A
piece of text that may be the start of a marker is held back until it is known not to be one. The
non-streamed answer is the same parser fed all at once, so both always agree.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field

from locallab.engines.tools import ToolCall, ToolCallDelta
from locallab.services.tools.formats import ToolFormat

ToolEvent = str | ToolCallDelta  # content text, or a piece of a call
_CALL_HEAD = re.compile(r'\{\s*"name"\s*:\s*("(?:[^"\\]|\\.)*")\s*,\s*"(?:arguments|parameters)"\s*:\s*')


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def json_value_end(text: str, start: int) -> int | None:
    """Where the JSON value starting at `start` ends (exclusive), or None while it is unfinished."""
    if start >= len(text):
        return None
    opening = text[start]
    if opening not in '{["':
        match = re.compile(r"[^\s,}\]]*").match(text, start)
        end = match.end() if match else start
        return end if end < len(text) else None
    depth, in_string, escaped = 0, False, False
    for i in range(start, len(text)):
        ch = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
                if depth == 0:
                    return i + 1
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth == 0:
                return i + 1
    return None


@dataclass
class _Call:
    id: str
    start: int  # of its JSON object in the output
    name: str | None = None
    arguments_start: int | None = None
    sent: int = 0  # argument characters already given out
    end: int | None = None  # of its JSON object, once complete
    arguments: str = ""


@dataclass
class ToolCallParser:
    format: ToolFormat
    _text: str = ""
    _content_sent: int = 0  # characters of content given out (leading blanks skipped)
    _region: int | None = None  # where the calls begin
    _calls: list[_Call] = field(default_factory=list)
    _scan: int = 0  # where to look for the next call object
    _skipped_blank: bool = False

    def feed(self, text: str) -> list[ToolEvent]:
        self._text += text
        return self._advance(final=False)

    def finish(self) -> list[ToolEvent]:
        return self._advance(final=True)

    @property
    def calls(self) -> list[ToolCall]:
        return [ToolCall(c.id, c.name, c.arguments) for c in self._calls if c.name is not None]

    @property
    def content(self) -> str | None:
        """Content as given out: blanks around it trimmed when calls follow; None when there is none."""
        end = self._region if self._region is not None else len(self._text)
        text = self._text[:end].lstrip()
        if self._region is not None:
            text = text.rstrip()
        return text or None

    def _advance(self, *, final: bool) -> list[ToolEvent]:
        events: list[ToolEvent] = []
        if self._region is None:
            self._find_region(final)
            content = self.content or ""
            if self._region is None and not final:
                content = content[: len(content) - self._held_back(content)]
            if len(content) > self._content_sent:
                events.append(content[self._content_sent :])
                self._content_sent = len(content)
        if self._region is not None:
            events.extend(self._advance_calls(final))
        return events

    def _find_region(self, final: bool) -> None:
        fmt = self.format
        if fmt.anchored:
            match = re.compile(rf"\s*({fmt.marker_pattern})").match(self._text)
        else:
            match = re.compile(fmt.marker_pattern).search(self._text)
        if match is not None:
            self._region = match.start(1) if fmt.anchored else match.start()
            self._scan = self._region

    def _held_back(self, content: str) -> int:
        """How many characters at the end of `content` must wait: trailing blanks (content is trimmed
        when a call follows) and whatever may still become a call marker."""
        fmt = self.format
        if fmt.anchored:  # calls count only at the start: hold back while the answer may be one
            squeezed = re.sub(r"\s", "", content)
            if squeezed and len(content) < 64 and fmt.marker.startswith(squeezed[: len(fmt.marker)]):
                return len(content)
            return len(content) - len(content.rstrip())
        for size in range(min(len(fmt.marker) - 1, len(content)), 0, -1):
            if fmt.marker.startswith(content[-size:]):
                return size + len(content[:-size]) - len(content[:-size].rstrip())
        return len(content) - len(content.rstrip())

    def _advance_calls(self, final: bool) -> list[ToolEvent]:
        events: list[ToolEvent] = []
        text = self._text
        while True:
            call = self._calls[-1] if self._calls and self._calls[-1].end is None else None
            if call is None:
                start = text.find("{", self._scan)
                if start < 0 or (self.format.anchored and self._calls):  # Llama 3: one object
                    return events
                call = _Call(new_call_id(), start)
                self._calls.append(call)
            events.extend(self._advance_call(call, final))
            if call.end is None:
                return events
            self._scan = call.end

    def _advance_call(self, call: _Call, final: bool) -> list[ToolEvent]:
        text = self._text
        events: list[ToolEvent] = []
        if call.arguments_start is None:
            head = _CALL_HEAD.match(text, call.start)
            if head is not None and head.end() < len(text):  # blanks before the value may go on
                call.name = json.loads(head.group(1))
                call.arguments_start = head.end()
                events.append(ToolCallDelta(self._index(call), call.id, call.name, ""))
        end = json_value_end(text, call.start)
        if call.arguments_start is not None and call.arguments_start < len(text):
            value_end = json_value_end(text, call.arguments_start)
            upto = value_end if value_end is not None else len(text)
            if value_end is None and text[call.arguments_start] not in '{["':
                upto = call.arguments_start  # a bare value may still grow: wait for its end
            if upto > call.arguments_start + call.sent:
                piece = text[call.arguments_start + call.sent : upto]
                call.sent += len(piece)
                call.arguments += piece
                events.append(ToolCallDelta(self._index(call), arguments=piece))
        if end is not None:
            call.end = end
            if call.name is None:  # not in the usual key order: read it whole
                events.extend(self._whole_call(call, text[call.start : end]))
        elif final and call.name is not None and call.arguments_start is not None:
            tail = text[call.arguments_start + call.sent :]  # cut off (length): keep what there is
            if tail:
                call.arguments += tail
                events.append(ToolCallDelta(self._index(call), arguments=tail))
            call.end = len(text)
        elif final:
            call.end = len(text)
        return events

    def _whole_call(self, call: _Call, source: str) -> list[ToolEvent]:
        try:
            data = json.loads(source)
        except ValueError:
            return []
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            return []
        arguments = data.get(self.format.arguments_key, data.get("arguments", data.get("parameters", {})))
        call.name = data["name"]
        call.arguments = arguments if isinstance(arguments, str) else json.dumps(arguments)
        index = self._index(call)
        events: list[ToolEvent] = [ToolCallDelta(index, call.id, call.name, "")]
        events.append(ToolCallDelta(index, arguments=call.arguments))
        return events

    def _index(self, call: _Call) -> int:
        """The call's position among calls that have a name (objects that are not calls get none)."""
        return sum(1 for c in self._calls[: self._calls.index(call)] if c.name is not None)


def parse_tool_output(text: str, fmt: ToolFormat) -> tuple[str | None, list[ToolCall]]:
    """(content, calls) of a whole answer: the same as streaming it through `ToolCallParser`."""
    parser = ToolCallParser(fmt)
    parser.feed(text)
    parser.finish()
    return parser.content, parser.calls
