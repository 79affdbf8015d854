"""Ollama's wire format for tool calling, mapped onto the tools core (`locallab.services.tools`).

- `tools` -> a ToolUse with choice "auto" (Ollama has no tool_choice) and parallel calls allowed.
- History: an assistant's `tool_calls[].function.arguments` is an object; a `tool` message names its
  tool with `tool_name` (or `tool_call_id`), and is tied to the latest call of that tool.
- Answers: each call goes out whole, in one chunk, with `arguments` as an object (never a string).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from locallab.api.ollama.schemas import Message, Tool
from locallab.engines.tools import ToolCall, ToolChoice, ToolDefinition, ToolUse
from locallab.errors import InvalidRequestError
from locallab.services.tools import history_arguments

_NO_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}


def tool_use_of(tools: list[Tool] | None) -> ToolUse | None:
    if not tools:
        return None
    definitions = tuple(
        ToolDefinition(
            t.function.name,
            t.function.description or "",
            _NO_PARAMETERS if t.function.parameters is None else t.function.parameters,
        )
        for t in tools
    )
    return ToolUse(definitions, ToolChoice("auto"), parallel=True)


def neutral_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """The conversation in the tools core's neutral shape."""
    out: list[dict[str, Any]] = []
    latest_id: dict[str, str] = {}  # tool name -> id of its latest call, for tool turns that name it
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        item: dict[str, Any] = {"role": m.role, "content": m.content or ""}
        if m.tool_calls:
            if m.role != "assistant":
                raise InvalidRequestError(f"{where}: only assistant messages carry tool calls.")
            calls = []
            for j, call in enumerate(m.tool_calls):
                call_id = call.id or f"call_{i}_{j}"
                arguments = history_arguments(call.function.arguments, f"{where}.tool_calls[{j}].function")
                calls.append({"id": call_id, "name": call.function.name, "arguments": arguments})
                latest_id[call.function.name] = call_id
            item["tool_calls"] = calls
        if m.role == "tool":
            name = m.tool_name or ""
            item["tool_call_id"] = m.tool_call_id or latest_id.get(name, f"call_{i}")
            if name:
                item["name"] = name
        out.append(item)
    return out


def wire_calls(calls: Sequence[ToolCall]) -> list[dict[str, Any]]:
    """Calls as Ollama sends them: whole, with the arguments as an object."""
    out = []
    for call in calls:
        try:
            arguments = json.loads(call.arguments) if call.arguments.strip() else {}
        except ValueError:
            arguments = {}  # the grammar makes this unreachable for local engines; never send a string
        out.append({"id": call.id, "function": {"name": call.name, "arguments": arguments}})
    return out
