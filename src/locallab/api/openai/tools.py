"""OpenAI's wire format for tool calling (the seed /chat takes it too, as an extension), mapped onto
the tools core (`locallab.services.tools`): `tools`/`tool_choice`/`parallel_tool_calls` (and the legacy
`functions`/`function_call`) to a ToolUse, history messages to neutral ones, and calls back to
`message.tool_calls` and streamed `delta.tool_calls`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from locallab.api.openai.chat_schemas import (
    ChatCompletionRequest,
    ChatMessage,
    FunctionDefinition,
    NamedToolChoice,
    ToolDefinitionItem,
)
from locallab.api.seed.request_schemas import ChatMessage as SeedChatMessage
from locallab.engines.tools import ToolCall, ToolCallDelta, ToolChoice, ToolDefinition, ToolUse
from locallab.errors import InvalidRequestError
from locallab.services.tools import history_arguments

_NO_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}


def _definition(function: FunctionDefinition) -> ToolDefinition:
    parameters = _NO_PARAMETERS if function.parameters is None else function.parameters
    return ToolDefinition(function.name, function.description or "", parameters)


def tool_use_of(body: ChatCompletionRequest) -> ToolUse | None:
    """The request's tools and tool choice; None when it has none. Checked by the tools core later."""
    if body.functions is not None or body.function_call is not None:
        if body.tools is not None or body.tool_choice is not None:
            raise InvalidRequestError("functions: send tools or the legacy functions, not both.")
        if not body.functions:
            raise InvalidRequestError("function_call: set without any functions; add functions or remove it.")
        call = body.function_call
        if call is None:
            legacy = ToolChoice("auto")
        else:
            legacy = ToolChoice(call) if isinstance(call, str) else ToolChoice("named", call.name)
        return ToolUse(tuple(_definition(f) for f in body.functions), legacy, parallel=False)
    return tool_use_from(body.tools, body.tool_choice, body.parallel_tool_calls)


def tool_use_from(
    tools: list[ToolDefinitionItem] | None,
    choice: Literal["none", "auto", "required"] | NamedToolChoice | None,
    parallel_tool_calls: bool | None,
) -> ToolUse | None:
    """`tools`, `tool_choice` and `parallel_tool_calls` in OpenAI's shapes (also the seed /chat's)."""
    if tools is None:
        if choice is not None:
            raise InvalidRequestError("tool_choice: set without any tools; add tools or remove tool_choice.")
        return None
    if not tools:
        raise InvalidRequestError("tools: the list is empty; add a tool or remove tools.")
    if choice is None:
        tool_choice = ToolChoice("auto")
    else:
        tool_choice = (
            ToolChoice(choice) if isinstance(choice, str) else ToolChoice("named", choice.function.name)
        )
    parallel = True if parallel_tool_calls is None else parallel_tool_calls
    return ToolUse(tuple(_definition(t.function) for t in tools), tool_choice, parallel)


def neutral_messages(messages: Sequence[ChatMessage | SeedChatMessage]) -> list[dict[str, Any]]:
    """The history in the tools core's neutral shape; malformed call arguments are a 400 naming them."""
    out: list[dict[str, Any]] = []
    legacy_call = ""  # id given to the latest legacy function_call, for the `function` turn after it
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        role = {"developer": "system", "function": "tool"}.get(m.role, m.role)
        item: dict[str, Any] = {"role": role, "content": m.text()}
        function_call = getattr(m, "function_call", None)  # legacy, OpenAI's route only
        if (m.tool_calls or function_call) and m.role != "assistant":
            raise InvalidRequestError(f"{where}: only assistant messages carry tool calls.")
        if m.tool_calls:
            item["tool_calls"] = [
                {
                    "id": c.id,
                    "name": c.function.name,
                    "arguments": history_arguments(c.function.arguments, f"{where}.tool_calls[{j}].function"),
                }
                for j, c in enumerate(m.tool_calls)
            ]
        elif function_call:
            legacy_call = f"call_legacy_{i}"
            arguments = history_arguments(function_call.arguments, f"{where}.function_call")
            item["tool_calls"] = [{"id": legacy_call, "name": function_call.name, "arguments": arguments}]
        if m.role == "tool":
            if not m.tool_call_id:
                raise InvalidRequestError(f"{where}.tool_call_id: required on a tool message.")
            item["tool_call_id"] = m.tool_call_id
        elif m.role == "function":
            name = getattr(m, "name", None)
            if not name:
                raise InvalidRequestError(f"{where}.name: required on a function message.")
            item["tool_call_id"], item["name"] = legacy_call, name
        elif m.tool_call_id is not None:
            raise InvalidRequestError(f"{where}.tool_call_id: only tool messages carry one.")
        out.append(item)
    return out


def message_calls(calls: list[ToolCall], legacy: bool) -> dict[str, Any]:
    """The calls of a whole answer, as fields of its message."""
    if not calls:
        return {}
    if legacy:
        return {"function_call": {"name": calls[0].name, "arguments": calls[0].arguments}}
    return {
        "tool_calls": [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in calls
        ]
    }


def delta_calls(delta: ToolCallDelta, legacy: bool) -> dict[str, Any] | None:
    """A streamed piece of a call as the fields of a `delta`; None for nothing to send."""
    function: dict[str, Any] = {"arguments": delta.arguments}
    if delta.name is not None:
        function = {"name": delta.name, "arguments": delta.arguments}
    if legacy:
        return {"function_call": function} if delta.index == 0 else None
    item: dict[str, Any] = {"index": delta.index}
    if delta.id is not None:
        item.update(id=delta.id, type="function")
    item["function"] = function
    return {"tool_calls": [item]}


def finish_reason(reason: str | None, has_calls: bool, legacy: bool) -> str | None:
    if reason == "stop" and has_calls:
        return "function_call" if legacy else "tool_calls"
    return reason
