"""Anthropic's Messages API <-> LocalLab's core: what each field becomes, and the shapes sent back.

- `system` (text or text blocks) becomes the conversation's first message, role "system".
- `output_config.format` (a JSON schema) is enforced with the JSON grammar; `output_config.effort` is
  accepted and unused (no model here thinks).
- `max_tokens` is the token limit; `stop_sequences`, `temperature`, `top_p`, `top_k` the sampling fields
  of the same names (temperature 0 is greedy).
- A finish "stop" is `end_turn`, or `stop_sequence` (with the sequence) when a stop sequence ended
  it; "length" and "time" (LocalLab's time cap) are `max_tokens`, the only reason Anthropic has for an
  answer cut short by a limit.
"""

from __future__ import annotations

import uuid
from typing import Any

from locallab.api.anthropic.schemas import ConversationBody, Message, MessagesRequest, TextBlock
from locallab.api.errors import anthropic_error
from locallab.api.sse import NamedEvent
from locallab.engines.base import FinishReason, SamplingParams
from locallab.services.generation import Usage


def _text(content: str | list[Any]) -> str:
    if isinstance(content, str):
        return content
    return "".join(block.text for block in content if isinstance(block, TextBlock))


def chat_messages(body: ConversationBody) -> list[dict[str, str]]:
    """The conversation in the core's shape: role and text per message, the system prompt first."""
    messages = [{"role": "system", "content": _text(body.system)}] if body.system else []
    messages += [{"role": m.role, "content": _text(m.content)} for m in body.messages]
    return messages


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


def stop_reason(finish: FinishReason | None, stop_sequence: str | None) -> tuple[str, str | None]:
    if finish in ("length", "time"):
        return "max_tokens", None
    if stop_sequence is not None:
        return "stop_sequence", stop_sequence
    return "end_turn", None


def message_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


def message(
    message_id: str,
    model: str,
    text: str,
    finish: FinishReason | None,
    stop_sequence: str | None,
    usage: Usage,
) -> dict[str, Any]:
    reason, sequence = stop_reason(finish, stop_sequence)
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
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


def text_block_start() -> NamedEvent:
    return "content_block_start", {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }


def text_delta(text: str) -> NamedEvent:
    return "content_block_delta", {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "text_delta", "text": text},
    }


def block_stop() -> NamedEvent:
    return "content_block_stop", {"type": "content_block_stop", "index": 0}


def message_delta(finish: FinishReason | None, stop_sequence: str | None, usage: Usage) -> NamedEvent:
    reason, sequence = stop_reason(finish, stop_sequence)
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
