"""The OpenAI wire format, as the remote engine speaks it to an upstream: request bodies, and the
server-sent events of a streamed answer read back into text, a finish reason and usage."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from locallab.config.remote import RemoteModelConfig
from locallab.engines.base import FinishReason, GenerationRequest
from locallab.engines.tools import ToolCallDelta, ToolUse

ErrorKind = Literal["connect", "timeout", "status", "stream", "health"]


class StreamFailure(Exception):
    """The upstream's stream broke, or said it failed; `kind` labels it in the metrics."""

    def __init__(self, kind: ErrorKind, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


def request_body(config: RemoteModelConfig, request: GenerationRequest) -> tuple[str, dict[str, Any]]:
    """(path under the upstream's /v1, JSON body): a conversation goes to /chat/completions as
    messages, a plain prompt to /completions as text. Always streamed, with usage asked for."""
    s = request.sampling
    body: dict[str, Any] = {
        "model": config.upstream_model,
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": s.max_tokens,
        "temperature": 0.0 if s.greedy else s.temperature,
        "top_p": s.top_p,
    }
    if request.messages is not None:
        path = "/chat/completions"
        body["messages"] = [_wire_message(m) for m in request.messages]
        if request.tools is not None:
            body.update(_wire_tools(request.tools))
    else:
        path = "/completions"
        body["prompt"] = request.prompt or ""
    if s.stop:
        body["stop"] = list(s.stop)
    if s.seed is not None:
        body["seed"] = s.seed
    if s.presence_penalty:
        body["presence_penalty"] = s.presence_penalty
    if s.frequency_penalty:
        body["frequency_penalty"] = s.frequency_penalty
    if config.sampling_extensions:
        if s.top_k > 0:
            body["top_k"] = s.top_k
        body["repetition_penalty"] = s.repetition_penalty
        if s.min_p > 0.0:
            body["min_p"] = s.min_p
    if s.json_schema is not None:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": s.json_schema},
        }
    elif s.json_output:
        body["response_format"] = {"type": "json_object"}
    return path, body


def _wire_message(message: Mapping[str, Any]) -> dict[str, Any]:
    """A neutral message (see locallab.services.tools.prompting) in OpenAI's shape."""
    out: dict[str, Any] = {"role": message["role"], "content": message.get("content") or ""}
    if message.get("tool_calls"):
        out["content"] = message.get("content") or None
        out["tool_calls"] = [
            {
                "id": c["id"],
                "type": "function",
                "function": {"name": c["name"], "arguments": json.dumps(c["arguments"])},
            }
            for c in message["tool_calls"]
        ]
    if message["role"] == "tool":
        out["tool_call_id"] = message.get("tool_call_id", "")
    return out


def _wire_tools(tool_use: ToolUse) -> dict[str, Any]:
    choice: Any = tool_use.choice.mode
    if choice == "named":
        choice = {"type": "function", "function": {"name": tool_use.choice.name}}
    tools = [
        {
            "type": "function",
            "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
        }
        for t in tool_use.tools
    ]
    return {"tools": tools, "tool_choice": choice, "parallel_tool_calls": tool_use.parallel}


def error_detail(body: bytes) -> str:
    """The message of an upstream's error body: OpenAI's envelope, LocalLab's `detail`, or the text."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.decode("utf-8", errors="replace").strip()[:300] or "(empty body)"
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])[:300]
        for key in ("detail", "message", "error"):
            if isinstance(data.get(key), str):
                return str(data[key])[:300]
    return json.dumps(data)[:300]


@dataclass
class StreamReader:
    """Reads one streamed answer, event by event."""

    chat: bool
    events: int = 0  # content events: the completion tokens, until the upstream reports usage
    finish: str | None = None
    tail: str = ""  # text that came with the finish reason
    usage: dict[str, Any] = field(default_factory=dict)
    stop_sequence: str | None = None
    done: bool = False  # [DONE] seen
    calls: list[ToolCallDelta] = field(default_factory=list)  # tool-call pieces not yet taken
    _started_calls: set[int] = field(default_factory=set)

    def take_calls(self) -> tuple[ToolCallDelta, ...]:
        calls, self.calls = tuple(self.calls), []
        return calls

    def _read_calls(self, delta: Any) -> None:
        """The upstream's `delta.tool_calls`: id and name kept on a call's first piece only."""
        items = delta.get("tool_calls") if isinstance(delta, dict) else None
        for item in items if isinstance(items, list) else []:
            if not isinstance(item, dict) or not isinstance(item.get("index", 0), int):
                continue
            index = item.get("index", 0)
            function: dict[str, Any] = item["function"] if isinstance(item.get("function"), dict) else {}
            arguments = function.get("arguments")
            arguments = arguments if isinstance(arguments, str) else ""
            if index not in self._started_calls:
                self._started_calls.add(index)
                call_id, name = str(item.get("id") or f"call_{index}"), str(function.get("name") or "")
                self.calls.append(ToolCallDelta(index, call_id, name, ""))
            if arguments:
                self.calls.append(ToolCallDelta(index, arguments=arguments))

    def feed(self, line: str) -> str | None:
        """New text of one SSE line, or None (comments, role-only deltas, the end, usage)."""
        if not line.startswith("data:"):
            return None
        data = line[5:].strip()
        if data == "[DONE]":
            self.done = True
            return None
        try:
            event = json.loads(data)
        except ValueError:
            raise StreamFailure("stream", f"the upstream sent a non-JSON event: {data[:80]!r}") from None
        if not isinstance(event, dict):
            raise StreamFailure("stream", "the upstream sent an event that is not a JSON object")
        if "error" in event:
            raise StreamFailure("stream", f"the upstream reported an error: {error_detail(data.encode())}")
        if isinstance(event.get("usage"), dict):
            self.usage = event["usage"]
        choices = event.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return None
        choice = choices[0]
        if self.chat:
            delta = choice.get("delta")
            text = delta.get("content") if isinstance(delta, dict) else None
            self._read_calls(delta)
        else:
            text = choice.get("text")
        text = text if isinstance(text, str) else ""
        if text:
            self.events += 1
        if choice.get("finish_reason"):
            self.finish = str(choice["finish_reason"])
            # vLLM and llama.cpp's server name the stop sequence that ended the answer
            matched = choice.get("stop_reason", choice.get("stopping_word"))
            self.stop_sequence = matched if isinstance(matched, str) and matched else None
            self.tail += text
            return None
        return text or None

    def finish_reason(self) -> FinishReason:
        return "length" if self.finish == "length" else "stop"

    def count(self, key: str, default: int) -> int:
        value = self.usage.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else default

    def cached_tokens(self) -> int:
        details = self.usage.get("prompt_tokens_details")
        value = details.get("cached_tokens") if isinstance(details, dict) else None
        return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
