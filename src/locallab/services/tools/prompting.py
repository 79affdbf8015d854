"""Putting tools and tool turns into a prompt.

Messages here are API-neutral dicts: `role` (system, user, assistant, tool), `content` (str), and on
an assistant turn `tool_calls` (a list of {"id", "name", "arguments": dict}), on a tool turn
`tool_call_id` (and `name` when the dialect sends it). A template with a native format gets them in
the shape Hugging Face chat templates read (its `tools` variable, `tool_calls[].function`); any other
template gets plain turns: the tools described in the system prompt, calls and results as text.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from locallab.engines.tools import ToolDefinition, ToolUse
from locallab.errors import InvalidRequestError
from locallab.services.tools.formats import ToolFormat

Message = dict[str, Any]


def history_arguments(value: object, where: str) -> dict[str, Any]:
    """The arguments of a call in the history, sent as a JSON string or as an object."""
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else {}
        except ValueError as exc:
            raise InvalidRequestError(
                f"{where}: the arguments are not valid JSON ({exc}); send the arguments object as JSON text."
            ) from None
    if not isinstance(value, dict):
        raise InvalidRequestError(f"{where}: the arguments must be a JSON object.")
    return value


def template_inputs(
    messages: Sequence[Mapping[str, Any]], tool_use: ToolUse | None, fmt: ToolFormat
) -> tuple[list[Message], list[dict[str, Any]] | None]:
    """(messages, tools) for the chat template: tools is None when none are offered (or for a template
    that does not read them, whose messages then carry the tools in the system prompt)."""
    offered = tool_use if tool_use is not None and tool_use.choice.mode != "none" else None
    if fmt.native:
        tools = [_template_tool(t) for t in offered.tools] if offered else None
        return _native_messages(messages, fmt), tools
    return _generic_messages(messages, offered), None


def _template_tool(tool: ToolDefinition) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {"name": tool.name, "description": tool.description, "parameters": tool.parameters},
    }


def _mistral_id(call_id: str) -> str:
    """Mistral's template wants call ids of exactly nine letters and digits."""
    digest = hashlib.sha256(call_id.encode()).hexdigest()
    return digest[:9]


def _native_messages(messages: Sequence[Mapping[str, Any]], fmt: ToolFormat) -> list[Message]:
    def call_id(value: str) -> str:
        return _mistral_id(value) if fmt.name == "mistral" else value

    names: dict[str, str] = {}  # call id -> tool name, for tool turns that do not say it
    out: list[Message] = []
    for message in messages:
        item: Message = {"role": message["role"], "content": message.get("content") or ""}
        if message.get("tool_calls"):
            item["tool_calls"] = [
                {
                    "id": call_id(c["id"]),
                    "type": "function",
                    "function": {"name": c["name"], "arguments": c["arguments"]},
                }
                for c in message["tool_calls"]
            ]
            names.update({c["id"]: c["name"] for c in message["tool_calls"]})
        if message["role"] == "tool":
            raw_id = str(message.get("tool_call_id") or "")
            item["tool_call_id"] = call_id(raw_id)
            item["name"] = message.get("name") or names.get(raw_id, "")
        out.append(item)
    return out


def generic_system_prompt(tool_use: ToolUse) -> str:
    lines = [
        "You can call these tools (each line: a tool as JSON, with a JSON schema of its arguments):",
        *(
            json.dumps({"name": t.name, "description": t.description, "parameters": t.parameters})
            for t in tool_use.tools
        ),
        "",
        "To call a tool, answer with this and nothing else:",
        '<tool_call>\n{"name": "<tool name>", "arguments": {<arguments as JSON>}}\n</tool_call>',
    ]
    if tool_use.parallel:
        lines.append("To call several tools at once, write one <tool_call> block after the other.")
    choice = tool_use.choice
    if choice.mode == "named":
        lines.append(f"Call the tool {choice.name} now.")
    elif choice.mode == "required":
        lines.append("Call a tool now.")
    else:
        lines.append("If no tool is needed, answer normally.")
    lines.append("A tool's result comes back in <tool_response> tags.")
    return "\n".join(lines)


def _generic_messages(messages: Sequence[Mapping[str, Any]], offered: ToolUse | None) -> list[Message]:
    out: list[Message] = []
    for message in messages:
        role, content = message["role"], str(message.get("content") or "")
        if role == "assistant" and message.get("tool_calls"):
            blocks = [
                "<tool_call>\n"
                + json.dumps({"name": c["name"], "arguments": c["arguments"]})
                + "\n</tool_call>"
                for c in message["tool_calls"]
            ]
            content = "\n".join([content, *blocks] if content else blocks)
        if role == "tool":  # results go back as the user's turn, which every template has
            result = f"<tool_response>\n{content}\n</tool_response>"
            if out and out[-1].get("tool_results"):
                out[-1]["content"] += "\n" + result
                continue
            out.append({"role": "user", "content": result, "tool_results": True})
            continue
        out.append({"role": role, "content": content})
    for item in out:
        item.pop("tool_results", None)
    if offered is not None:
        instructions = generic_system_prompt(offered)
        if out and out[0]["role"] == "system":
            out[0]["content"] = f"{out[0]['content']}\n\n{instructions}"
        else:
            out.insert(0, {"role": "system", "content": instructions})
    return out
