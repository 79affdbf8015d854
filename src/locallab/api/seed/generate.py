"""POST /generate, /generate/batch and /chat: answers as JSON, or a stream of server-sent events."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from locallab.api.cancellation import cancel_on_disconnect
from locallab.api.docs import errors, sse_ok
from locallab.api.openai.tools import delta_calls, finish_reason, neutral_messages, tool_use_from
from locallab.api.seed.request_schemas import BatchGenerateRequest, ChatRequest, GenerateRequest
from locallab.api.seed.response_schemas import (
    AssistantMessage,
    BatchGenerateResponse,
    ChatChoice,
    ChatResponse,
    FunctionCallBody,
    GenerateResponse,
    PromptTokensDetails,
    ToolCallBody,
    UsageBody,
)
from locallab.api.sse import sse_response
from locallab.api.state import get_services
from locallab.errors import LocalLabError
from locallab.services.generation import Usage

router = APIRouter(tags=["generation"])


def _usage(usage: Usage) -> UsageBody:
    return UsageBody(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=usage.cached_tokens),
    )


@router.post(
    "/generate",
    response_model=GenerateResponse,
    responses={
        **sse_ok(GenerateResponse, 'The answer; with stream=true, events {"response": "<new text>"}.'),
        **errors(404, 503),
    },
    summary="Generate text from a prompt",
)
async def generate(
    body: GenerateRequest, request: Request, response: Response
) -> Response | GenerateResponse:
    services = get_services(request)
    model = await services.registry.acquire(body.model_id, body.keep_alive)
    prompt = await services.generation.prompt_for_generate(
        model, body.prompt, system_prompt=body.system_prompt, raw=body.raw
    )
    prepared = await services.generation.prepare(model, prompt, body.sampling(), max_tokens=body.max_length)
    if body.stream:
        chunks = services.generation.start(prepared)

        async def events() -> AsyncIterator[dict[str, Any]]:
            async with contextlib.aclosing(chunks):
                async for chunk in chunks:
                    if chunk.finish_reason is None:
                        yield {"response": chunk.text}
                    else:
                        yield {
                            "response": chunk.text,
                            "model": model.id,
                            "finish_reason": chunk.finish_reason,
                            "usage": _usage(Usage.of(chunk)).model_dump(),
                        }

        return sse_response(events(), headers=prepared.headers())
    response.headers.update(prepared.headers())
    completion = await cancel_on_disconnect(request, services.generation.complete(prepared))
    return GenerateResponse(
        response=completion.text,
        model=model.id,
        finish_reason=completion.finish_reason,
        usage=_usage(completion.usage),
    )


@router.post(
    "/generate/batch",
    response_model=BatchGenerateResponse,
    responses=errors(404, 503),
    summary="Answer several prompts at once (they run as concurrent sequences)",
)
async def generate_batch(
    body: BatchGenerateRequest, request: Request, response: Response
) -> BatchGenerateResponse:
    services = get_services(request)
    model = await services.registry.acquire(body.model_id, body.keep_alive)
    prepared = []
    for index, text in enumerate(body.prompts):
        try:
            prompt = await services.generation.prompt_for_generate(
                model, text, system_prompt=body.system_prompt, raw=body.raw
            )
            prepared.append(
                await services.generation.prepare(model, prompt, body.sampling(), max_tokens=body.max_length)
            )
        except LocalLabError as exc:
            exc.detail = f"prompts[{index}]: {exc.detail}"
            raise

    response.headers.update(prepared[0].headers())
    completions = await cancel_on_disconnect(request, services.generation.complete_all(prepared))
    return BatchGenerateResponse(
        responses=[c.text for c in completions],
        finish_reasons=[c.finish_reason for c in completions],
        model=model.id,
        usage=_usage(
            Usage(
                sum(c.usage.prompt_tokens for c in completions),
                sum(c.usage.completion_tokens for c in completions),
                sum(c.usage.cached_tokens for c in completions),
            )
        ),
    )


@router.post(
    "/chat",
    response_model=ChatResponse,
    response_model_exclude_none=True,
    responses={
        **sse_ok(ChatResponse, "The answer; with stream=true, OpenAI chat.completion.chunk events."),
        **errors(404, 503),
    },
    summary="Answer a conversation (OpenAI-like chat completion)",
)
async def chat(body: ChatRequest, request: Request, response: Response) -> Response | ChatResponse:
    services = get_services(request)
    tool_use = tool_use_from(body.tools, body.tool_choice, body.parallel_tool_calls)
    model = await services.registry.acquire(body.model_id, body.keep_alive)
    prompt = await services.generation.prompt_for_chat(model, neutral_messages(body.messages), tool_use)
    prepared = await services.generation.prepare(
        model, prompt, body.sampling(), max_tokens=body.max_length, tools=tool_use
    )
    tools = prepared.tool_output()
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    if body.stream:
        chunks = services.generation.start(prepared)

        def frame(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model.id,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }

        async def events() -> AsyncIterator[dict[str, Any]]:
            async with contextlib.aclosing(chunks):
                yield frame({"role": "assistant", "content": ""})
                async for chunk in chunks:
                    if tools is not None:  # content and calls as OpenAI streams them
                        for event in tools.feed(chunk):
                            delta = (
                                {"content": event} if isinstance(event, str) else delta_calls(event, False)
                            )
                            if delta is not None:
                                yield frame(delta)
                        if chunk.finish_reason is not None:
                            last = frame({}, finish_reason(chunk.finish_reason, bool(tools.calls), False))
                            yield {**last, "usage": _usage(Usage.of(chunk)).model_dump()}
                    elif chunk.finish_reason is None:
                        yield frame({"content": chunk.text})
                    else:
                        last = frame({"content": chunk.text} if chunk.text else {}, chunk.finish_reason)
                        yield {**last, "usage": _usage(Usage.of(chunk)).model_dump()}

        return sse_response(events(), headers=prepared.headers())
    response.headers.update(prepared.headers())
    completion = await cancel_on_disconnect(request, services.generation.complete(prepared))
    message = AssistantMessage(content=completion.text)
    finish: Any = completion.finish_reason
    if tools is not None:
        tools.feed_whole(completion.text, completion.tool_calls)
        calls = [
            ToolCallBody(id=c.id, function=FunctionCallBody(name=c.name, arguments=c.arguments))
            for c in tools.calls
        ]
        message = AssistantMessage(content=tools.content or "", tool_calls=calls or None)
        finish = finish_reason(finish, bool(calls), False)
    return ChatResponse(
        id=completion_id,
        created=created,
        model=model.id,
        choices=[ChatChoice(message=message, finish_reason=finish)],
        usage=_usage(completion.usage),
    )
