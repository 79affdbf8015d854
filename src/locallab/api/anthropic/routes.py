"""Anthropic's Messages API: POST /v1/messages and /v1/messages/count_tokens.

Errors under /v1/messages use Anthropic's envelope (`locallab.api.errors.anthropic_error`), so the
`anthropic` package raises its typed exceptions. The field mapping is in `wire.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from locallab.api.anthropic import wire
from locallab.api.anthropic.schemas import CountTokensRequest, MessagesRequest
from locallab.api.anthropic.streaming import ContentBlocks
from locallab.api.cancellation import cancel_on_disconnect
from locallab.api.routes.docs import errors, sse_ok
from locallab.api.sse import NamedEvent, named_sse_response
from locallab.api.state import Services, get_services
from locallab.engines.base import GenerationChunk, GenerationStream
from locallab.engines.tools import ToolCallDelta
from locallab.errors import EngineError, InvalidRequestError
from locallab.services.generation import Conversation, PreparedGeneration, Prompt, Usage
from locallab.services.registry import LoadedModel

router = APIRouter(prefix="/v1", tags=["anthropic"])

PING_SECONDS = 5.0  # a ping while no token has come (queued, or a long prompt): proxies keep the stream


async def _prompt(
    services: Services, model: LoadedModel, body: CountTokensRequest | MessagesRequest
) -> Prompt:
    messages = wire.chat_messages(body)
    prefill = wire.prefill(body.messages)
    tools = wire.tool_use_of(body)
    if prefill is None:
        return await services.generation.prompt_for_chat(model, messages, tools)
    prompt = await services.generation.prompt_for_chat(model, messages[:-1], tools)
    if isinstance(prompt, Conversation):
        raise InvalidRequestError(
            f"messages: a final assistant message (prefill) is not supported for the remote model "
            f"'{model.id}'; end the conversation with a user message."
        )
    return prompt + prefill


async def _with_pings(chunks: GenerationStream) -> AsyncIterator[GenerationChunk | None]:
    """The chunks, with None whenever PING_SECONDS pass without one."""
    pending: asyncio.Future[GenerationChunk] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(chunks.__anext__())
            done, _ = await asyncio.wait({pending}, timeout=PING_SECONDS)
            if not done:
                yield None
                continue
            try:
                chunk = pending.result()
            except StopAsyncIteration:
                return
            pending = None
            yield chunk
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)


async def _collect(chunks: GenerationStream) -> tuple[str, GenerationChunk, tuple[ToolCallDelta, ...]]:
    """The whole answer, its last chunk (which says why it ended, and which stop sequence) and the calls
    an upstream relayed."""
    parts: list[str] = []
    calls: list[ToolCallDelta] = []
    last: GenerationChunk | None = None
    async with contextlib.aclosing(chunks):
        async for last in chunks:
            parts.append(last.text)
            calls.extend(last.tool_calls)
    if last is None or last.finish_reason is None:
        raise EngineError("The engine ended the generation without a final result.")
    return "".join(parts), last, tuple(calls)


def _events(services: Services, prepared: PreparedGeneration, model_id: str) -> AsyncIterator[NamedEvent]:
    chunks = services.generation.start(prepared)  # admitted now: a full queue is a 503 before the stream
    message_id = wire.message_id()
    input_tokens = len(prepared.request.prompt_tokens)
    tools = prepared.tool_output()  # with tools, blocks open as the answer shows what they are

    async def events() -> AsyncIterator[NamedEvent]:
        blocks = ContentBlocks()
        async with contextlib.aclosing(chunks):
            yield wire.message_start(message_id, model_id, input_tokens)
            if tools is None:
                for event in blocks.start_text():
                    yield event
            yield wire.ping()
            async for chunk in _with_pings(chunks):
                if chunk is None:
                    yield wire.ping()
                    continue
                pieces = tools.feed(chunk) if tools is not None else [chunk.text] if chunk.text else []
                for event in blocks.feed(pieces):
                    yield event
                if chunk.finish_reason is not None:
                    for event in blocks.finish():
                        yield event
                    yield wire.message_delta(
                        chunk.finish_reason, chunk.stop_sequence, Usage.of(chunk), blocks.called
                    )
                    yield wire.message_stop()

    return events()


@router.post(
    "/messages",
    response_model=None,
    responses={
        **sse_ok(None, "An Anthropic message, or with stream=true Anthropic's named events."),
        **errors(401, 404, 503, anthropic=True),
    },
    summary="Anthropic Messages API: create a message",
)
async def create_message(
    body: MessagesRequest, request: Request, response: Response
) -> Response | dict[str, Any]:
    services = get_services(request)
    body.refuse_unsupported()
    model = await services.registry.acquire(body.model)
    prompt = await _prompt(services, model, body)
    prepared = await services.generation.prepare(
        model, prompt, wire.sampling(body), max_tokens=body.max_tokens, tools=wire.tool_use_of(body)
    )
    if body.stream:
        return named_sse_response(_events(services, prepared, model.id), wire.error_event, prepared.headers())
    response.headers.update(prepared.headers())
    text, last, relayed = await cancel_on_disconnect(request, _collect(services.generation.start(prepared)))
    content = [{"type": "text", "text": text}]
    tools = prepared.tool_output()
    if tools is not None:
        tools.feed_whole(text, relayed)
        content = wire.content_blocks(tools.content, tools.calls)
    return wire.message(
        wire.message_id(), model.id, content, last.finish_reason, last.stop_sequence, Usage.of(last)
    )


@router.post(
    "/messages/count_tokens",
    responses=errors(401, 404, anthropic=True),
    summary="Anthropic Messages API: count a conversation's input tokens",
)
async def count_tokens(body: CountTokensRequest, request: Request) -> dict[str, int]:
    services = get_services(request)
    body.refuse_unsupported()
    model = await services.registry.acquire(body.model)
    prompt = await _prompt(services, model, body)
    return {"input_tokens": await services.generation.count_tokens(model, prompt)}
