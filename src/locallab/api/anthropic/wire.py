"""Anthropic's Messages API <-> LocalLab's core: what each field becomes, and the shapes sent back.

- `system` (text or text blocks) becomes the conversation's first message, role "system".
- `output_config.format` (a JSON schema) is enforced with the JSON grammar; `output_config.effort` is
  accepted and unused (no model here thinks).
- `max_tokens` is the token limit; `stop_sequences`, `temperature`, `top_p`, `top_k` the sampling fields
  of the same names (temperature 0 is greedy).
- A finish "stop" is `tool_use` when the answer called a tool, else `end_turn`, or `stop_sequence`
  (with the sequence) when a stop sequence ended it; "length" and "time" (LocalLab's time cap) are
  `max_tokens`, the only reason Anthropic has for an answer cut short by a limit (also when it cut a
  call short: that call's `input` is {} in a whole message, what the fragments give in a stream).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from locallab.api.anthropic.schemas import (
    ConversationBody,
    Message,
    MessagesRequest,
    TextBlock,
    ToolResultBlock,
    ToolUseBlock,
)
from locallab.api.errors import anthropic_error
from locallab.api.sse import NamedEvent
from locallab.engines.base import FinishReason, SamplingParams
from locallab.engines.tools import ToolCall, ToolChoice, ToolDefinition, ToolUse
from locallab.errors import InvalidRequestError
from locallab.services.generation import Usage


def _text(content: str | list[Any]) -> str:
    if isinstance(content, str):
        return content
    return "".join(block.text for block in content if isinstance(block, TextBlock))


def chat_messages(body: ConversationBody) -> list[dict[str, Any]]:
    """The conversation in the tools core's neutral shape, the system prompt first: an assistant's
    `tool_use` blocks become its `tool_calls`, a user's `tool_result` blocks `tool` turns before it."""
    messages: list[dict[str, Any]] = (
        [{"role": "system", "content": _text(body.system)}] if body.system else []
    )
    for m in body.messages:
        if isinstance(m.content, str):
            messages.append({"role": m.role, "content": m.content})
            continue
        for block in m.content:
            if isinstance(block, ToolResultBlock):
                result = block.content if isinstance(block.content, str) else _text(block.content or [])
                messages.append({"role": "tool", "tool_call_id": block.tool_use_id, "content": result})
        calls = [
            {"id": b.id, "name": b.name, "arguments": b.input}
            for b in m.content
            if isinstance(b, ToolUseBlock)
        ]
        text = _text(m.content)
        if calls:
            messages.append({"role": m.role, "content": text, "tool_calls": calls})
        elif text or not any(isinstance(b, ToolResultBlock) for b in m.content):
            messages.append({"role": m.role, "content": text})
    return messages


def tool_use_of(body: ConversationBody) -> ToolUse | None:
    """`tools` and `tool_choice`: auto, any (at least one call), tool (that one), none."""
    if not body.tools:
        if body.tool_choice is not None and body.tool_choice.type != "none":
            raise InvalidRequestError("tool_choice: set without any tools; add tools or remove tool_choice.")
        return None
    choice = body.tool_choice
    if choice is None or choice.type == "auto":
        mode = ToolChoice("auto")
    elif choice.type == "any":
        mode = ToolChoice("required")
    elif choice.type == "none":
        mode = ToolChoice("none")
    else:
        if not choice.name:
            raise InvalidRequestError("tool_choice.name: required when type is 'tool'.")
        mode = ToolChoice("named", choice.name)
    tools = tuple(ToolDefinition(t.name, t.description or "", t.input_schema) for t in body.tools)
    return ToolUse(tools, mode, parallel=not (choice is not None and choice.disable_parallel_tool_use))


def tool_input(arguments: str) -> Any:
    """A call's `input`: its arguments parsed; {} for none, or for arguments a token limit cut off."""
    try:
        return json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        return {}


def content_blocks(text: str | None, calls: list[ToolCall]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [{"type": "text", "text": text or ""}] if text or not calls else []
    for call in calls:
        blocks.append(
            {"type": "tool_use", "id": call.id, "name": call.name, "input": tool_input(call.arguments)}
        )
    return blocks


def prefill(messages: list[Message]) -> str | None:
    """The text of a final assistant message: Anthropic continues it instead of starting a new turn."""
    last = messages[-1]
    return _text(last.content) if last.role == "assistant" else None


def sampling(body: MessagesRequest) -> SamplingParams:
    return SamplingParams(
        max_tokens=1,  # the generation service sets the real limit
        temperature=body.temperature,
        top_p=body.top_p,
        top_k=body.top_k,
        repetition_penalty=1.0,
        do_sample=body.temperature > 0,
        stop=tuple(body.stop_sequences or ()),
        **body.output_constraint(),
    )


def stop_reason(
    finish: FinishReason | None, stop_sequence: str | None, called: bool = False
) -> tuple[str, str | None]:
    if finish in ("length", "time"):  # a call cut off by the limit too: its input is unfinished
        return "max_tokens", None
    if called:
        return "tool_use", None
    if stop_sequence is not None:
        return "stop_sequence", stop_sequence
    return "end_turn", None


def message_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


def message(
    message_id: str,
    model: str,
    content: list[dict[str, Any]],
    finish: FinishReason | None,
    stop_sequence: str | None,
    usage: Usage,
) -> dict[str, Any]:
    called = any(block["type"] == "tool_use" for block in content)
    reason, sequence = stop_reason(finish, stop_sequence, called)
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": sequence,
        "usage": _usage(usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens),
    }


def _usage(input_tokens: int, output_tokens: int, cached: int = 0) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
    }


def message_start(message_id: str, model: str, input_tokens: int) -> NamedEvent:
    """`input_tokens` is 0 when the engine's upstream counts them: message_delta brings the count."""
    return "message_start", {
        "type": "message_start",
        "message": {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": _usage(input_tokens, 0),
        },
    }


def message_delta(
    finish: FinishReason | None, stop_sequence: str | None, usage: Usage, called: bool = False
) -> NamedEvent:
    reason, sequence = stop_reason(finish, stop_sequence, called)
    return "message_delta", {
        "type": "message_delta",
        "delta": {"stop_reason": reason, "stop_sequence": sequence},
        "usage": _usage(usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens),
    }


def message_stop() -> NamedEvent:
    return "message_stop", {"type": "message_stop"}


def ping() -> NamedEvent:
    return "ping", {"type": "ping"}


def error_event(status: int, detail: str) -> NamedEvent:
    return "error", anthropic_error(status, detail)
