"""OpenAI's Responses API <-> LocalLab's core: input items become chat messages, a generation becomes
a response object and its semantic stream events.

- `instructions` is a system message first in the conversation (for this response only, as in
  OpenAI's API: a later response in a chain does not inherit it); `developer` messages are system ones.
- `previous_response_id`: the stored input items and output of every earlier response in the chain
  come before this request's input.
- `max_output_tokens` is the token limit; `text.format` the JSON grammar (`json_object`, `json_schema`).
- finish "length" and "time" (LocalLab's time cap) are `status: "incomplete"` with
  `incomplete_details.reason: "max_output_tokens"` (also when the limit cut a function call short: its
  arguments are unfinished); "stop" is `completed`.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from locallab.api.openai.responses_schemas import ResponsesRequest
from locallab.api.sse import NamedEvent
from locallab.engines.base import FinishReason, SamplingParams
from locallab.engines.tools import ToolCall, ToolChoice, ToolDefinition, ToolUse
from locallab.errors import InvalidRequestError
from locallab.services.generation import Usage
from locallab.services.response_store import StoredResponse
from locallab.services.tools import history_arguments

_TEXT_PARTS = ("input_text", "output_text", "text")
_MEDIA_PARTS = ("input_image", "input_file", "input_audio")


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def sampling(body: ResponsesRequest) -> SamplingParams:
    return SamplingParams(
        max_tokens=1,  # the generation service sets the real limit
        temperature=body.temperature,
        top_p=body.top_p,
        top_k=0,
        repetition_penalty=1.0,
        do_sample=body.temperature > 0,
        **body.output_constraint(),
    )


def _message_item(index: int, item: dict[str, Any]) -> dict[str, Any]:
    where = f"input[{index}]"
    role = item.get("role")
    if role not in ("user", "assistant", "system", "developer"):
        raise InvalidRequestError(
            f"{where}.role: must be user, assistant, system or developer (got {role!r})."
        )
    content = item.get("content")
    part_type = "output_text" if role == "assistant" else "input_text"
    if isinstance(content, str):
        parts = [{"type": part_type, "text": content}]
    elif isinstance(content, list):
        parts = []
        for j, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind in _MEDIA_PARTS:
                raise InvalidRequestError(
                    f"{where}.content[{j}]: {kind} parts are not supported (no LocalLab model reads images, "
                    "files or audio yet); send text."
                )
            if not isinstance(part, dict) or kind not in _TEXT_PARTS or not isinstance(part.get("text"), str):
                raise InvalidRequestError(
                    f"{where}.content[{j}]: expected a text part {{'type': 'input_text', 'text': ...}}."
                )
            parts.append({"type": part_type, "text": part["text"]})
    else:
        raise InvalidRequestError(f"{where}.content: must be text or a list of text parts.")
    entry: dict[str, Any] = {"id": new_id("msg"), "type": "message", "role": role, "content": parts}
    entry["status"] = "completed"
    return entry


def input_items(body: ResponsesRequest) -> list[dict[str, Any]]:
    """This request's input as stored items, each with an id (what GET .../input_items lists)."""
    if isinstance(body.input, str):
        return [_message_item(0, {"role": "user", "content": body.input})]
    items = []
    for i, item in enumerate(body.input):
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            items.append(_message_item(i, item))
        elif kind == "function_call":
            for key in ("call_id", "name", "arguments"):
                if not isinstance(item.get(key), str):
                    raise InvalidRequestError(
                        f"input[{i}].{key}: required (a string) on a function_call item."
                    )
            history_arguments(item["arguments"], f"input[{i}].arguments")
            items.append(
                {"type": "function_call", "id": item.get("id") or new_id("fc"), "call_id": item["call_id"],
                 "name": item["name"], "arguments": item["arguments"], "status": "completed"}
            )  # fmt: skip
        elif kind == "function_call_output":
            if not isinstance(item.get("call_id"), str) or not isinstance(item.get("output"), str):
                raise InvalidRequestError(
                    f"input[{i}]: a function_call_output item needs call_id and output (strings)."
                )
            items.append(
                {"type": "function_call_output", "id": item.get("id") or new_id("fco"),
                 "call_id": item["call_id"], "output": item["output"], "status": "completed"}
            )  # fmt: skip
        else:
            raise InvalidRequestError(
                f"input[{i}].type: {kind!r} items are not supported; send message items "
                "({'role': 'user', 'content': ...})."
            )
    return items


def _messages_of(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Items as the tools core's neutral messages: function calls join the assistant turn before them."""
    messages: list[dict[str, Any]] = []
    for item in items:
        kind = item.get("type")
        if kind == "function_call":
            call = {
                "id": item["call_id"],
                "name": item["name"],
                "arguments": history_arguments(item["arguments"], "input"),
            }
            if messages and messages[-1]["role"] == "assistant":
                messages[-1].setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": "", "tool_calls": [call]})
            continue
        if kind == "function_call_output":
            messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": item["output"]})
            continue
        if kind != "message":
            continue
        role = "system" if item["role"] == "developer" else item["role"]
        messages.append({"role": role, "content": "".join(p.get("text", "") for p in item["content"])})
    return messages


def conversation(
    body: ResponsesRequest, history: list[StoredResponse], items: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    messages = [{"role": "system", "content": body.instructions}] if body.instructions else []
    for earlier in history:
        messages += _messages_of(earlier.input_items)
        messages += _messages_of(earlier.body.get("output", []))
    return messages + _messages_of(items)


def text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def output_message(item_id: str, text: str | None, status: str = "completed") -> dict[str, Any]:
    """The assistant's message item; `text` None while it is being written (no content yet)."""
    content = [text_part(text)] if text is not None else []
    return {"id": item_id, "type": "message", "status": status, "role": "assistant", "content": content}


def usage(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_tokens},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.total_tokens,
    }


def status_of(finish: FinishReason | None) -> tuple[str, dict[str, str] | None]:
    if finish in ("length", "time"):
        return "incomplete", {"reason": "max_output_tokens"}
    return "completed", None


def response_object(
    response_id: str,
    body: ResponsesRequest,
    model_id: str,
    *,
    created_at: int,
    status: str = "in_progress",
    output: list[dict[str, Any]] | None = None,
    incomplete: dict[str, str] | None = None,
    used: Usage | None = None,
) -> dict[str, Any]:
    fmt = body.text.format if body.text and body.text.format else None
    text_format: dict[str, Any] = {"type": "text"}
    if fmt is not None:
        text_format = fmt.model_dump(by_alias=True, exclude_none=True)
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "error": None,
        "incomplete_details": incomplete,
        "instructions": body.instructions,
        "max_output_tokens": body.max_output_tokens,
        "model": model_id,
        "output": output or [],
        "parallel_tool_calls": body.parallel_tool_calls if body.parallel_tool_calls is not None else True,
        "previous_response_id": body.previous_response_id,
        "reasoning": None,
        "store": body.store,
        "temperature": body.temperature,
        "text": {"format": text_format},
        "tool_choice": body.tool_choice or "auto",
        "tools": body.tools or [],  # as sent: function tools only get this far
        "top_p": body.top_p,
        "truncation": body.truncation or "disabled",
        "usage": usage(used) if used is not None else None,
        "user": body.user,
        "metadata": body.metadata or {},
        "background": False,
    }


def now() -> int:
    return int(time.time())


class EventNumbering:
    """Names each stream event by its type and gives it the next `sequence_number`."""

    def __init__(self) -> None:
        self.next = 0

    def __call__(self, kind: str, **fields: Any) -> NamedEvent:
        event = {"type": kind, "sequence_number": self.next, **fields}
        self.next += 1
        return kind, event

    def error(self, status: int, detail: str) -> NamedEvent:
        code = "server_error" if status >= 500 else "invalid_request_error"
        return self("error", code=code, message=detail, param=None)


def tool_use_of(body: ResponsesRequest) -> ToolUse | None:
    """Function tools (flat: type, name, description, parameters, strict) and tool_choice."""
    if not body.tools:
        if body.tool_choice not in (None, "none", "auto"):
            raise InvalidRequestError("tool_choice: set without any tools; add tools or remove tool_choice.")
        return None
    tools = []
    for i, tool in enumerate(body.tools):
        name, parameters = tool.get("name"), tool.get("parameters")
        if not isinstance(name, str) or not name:
            raise InvalidRequestError(f"tools[{i}].name: required on a function tool.")
        if parameters is not None and not isinstance(parameters, dict):
            raise InvalidRequestError(f"tools[{i}].parameters: must be a JSON schema object.")
        schema = parameters if parameters is not None else {"type": "object", "properties": {}}
        tools.append(ToolDefinition(name, str(tool.get("description") or ""), schema))
    choice = body.tool_choice
    if choice is None or choice == "auto":
        mode = ToolChoice("auto")
    elif choice in ("none", "required"):
        mode = ToolChoice(choice)  # type: ignore[arg-type]
    elif (
        isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("name"), str)
    ):
        mode = ToolChoice("named", choice["name"])
    else:
        raise InvalidRequestError(
            "tool_choice: 'none', 'auto', 'required' or {'type': 'function', 'name': ...} (built-in tool "
            "choices are not available)."
        )
    parallel = True if body.parallel_tool_calls is None else body.parallel_tool_calls
    return ToolUse(tuple(tools), mode, parallel)


def function_call_item(
    item_id: str, call_id: str, name: str, arguments: str, status: str = "completed"
) -> dict[str, Any]:
    return {"type": "function_call", "id": item_id, "call_id": call_id, "name": name, "arguments": arguments,
            "status": status}  # fmt: skip


def function_call_items(calls: list[ToolCall]) -> list[dict[str, Any]]:
    return [function_call_item(new_id("fc"), c.id, c.name, c.arguments or "{}") for c in calls]
