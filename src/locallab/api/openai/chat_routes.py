"""OpenAI-compatible routes under /v1: chat completions, completions and models.

Errors here use OpenAI's envelope (see `locallab.api.errors.error_payload`), so the `openai` package
raises its typed exceptions. `finish_reason` "time" (LocalLab's max_time) is reported as "length",
the only OpenAI value for an answer cut short by a limit.
"""

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
from locallab.api.openai.chat_schemas import ChatCompletionRequest, CompletionRequest
from locallab.api.openai.tools import delta_calls, finish_reason, message_calls, neutral_messages, tool_use_of
from locallab.api.sse import sse_response
from locallab.api.state import Services, get_services
from locallab.engines.base import GenerationChunk, TokenLogprob
from locallab.errors import InvalidRequestError, ModelNotFoundError
from locallab.services.generation import Completion, PreparedGeneration, Usage

router = APIRouter(prefix="/v1", tags=["openai"])


def _finish(reason: str | None) -> str | None:
    return "length" if reason == "time" else reason


def _usage(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
    }


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _chat_logprobs(entries: tuple[TokenLogprob, ...] | list[TokenLogprob]) -> dict[str, Any]:
    def token(text: bytes, logprob: float) -> dict[str, Any]:
        return {"token": _text(text), "logprob": logprob, "bytes": list(text)}

    return {
        "content": [
            {**token(e.text, e.logprob), "top_logprobs": [token(t, lp) for t, lp in e.top]} for e in entries
        ]
    }


def _completion_logprobs(entries: list[TokenLogprob], with_top: bool) -> dict[str, Any]:
    offsets, position = [], 0
    for entry in entries:
        offsets.append(position)
        position += len(_text(entry.text))
    return {
        "tokens": [_text(e.text) for e in entries],
        "token_logprobs": [e.logprob for e in entries],
        "top_logprobs": [{_text(t): lp for t, lp in e.top} for e in entries] if with_top else None,
        "text_offset": offsets,
    }


async def _run(request: Request, services: Services, prepared: PreparedGeneration) -> Completion:
    return await cancel_on_disconnect(request, services.generation.complete(prepared))


def _stream(
    services: Services,
    prepared: PreparedGeneration,
    frame: Any,
    last_frame: Any,
    include_usage: bool,
    usage_frame: Any,
) -> AsyncIterator[dict[str, Any]]:
    chunks = services.generation.start(prepared)

    async def events() -> AsyncIterator[dict[str, Any]]:
        async with contextlib.aclosing(chunks):
            async for chunk in chunks:
                if chunk.finish_reason is None:
                    yield frame(chunk)
                    continue
                yield last_frame(chunk)
                if include_usage:
                    yield usage_frame(Usage.of(chunk))

    return events()


@router.post(
    "/chat/completions",
    response_model=None,
    responses={
        **sse_ok(None, "A chat.completion, or chat.completion.chunk events."),
        **errors(404, 503, openai=True),
    },
    summary="OpenAI-compatible chat completion",
)
async def chat_completions(
    body: ChatCompletionRequest, request: Request, response: Response
) -> Response | dict[str, Any]:
    services = get_services(request)
    body.refuse_unsupported()
    tool_use = tool_use_of(body)
    legacy = body.functions is not None  # answer in the legacy function_call shape
    params = body.sampling(**body.output_constraint(), logprobs=body.logprob_count())
    model = await services.registry.acquire(body.model)
    prompt = await services.generation.prompt_for_chat(model, neutral_messages(body.messages), tool_use)
    prepared = await services.generation.prepare(
        model, prompt, params, max_tokens=body.token_limit(), tools=tool_use
    )
    tools = prepared.tool_output()
    completion_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    base = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model.id}

    def choice(delta: dict[str, Any], chunk: GenerationChunk | None, finish: str | None) -> dict[str, Any]:
        entry: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish}
        if params.logprobs is not None:
            entry["logprobs"] = _chat_logprobs(chunk.logprobs) if chunk and chunk.logprobs else None
        return entry

    def frame(delta: dict[str, Any], chunk: GenerationChunk | None, finish: str | None) -> dict[str, Any]:
        return {**base, "choices": [choice(delta, chunk, finish)]}

    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        chunks = services.generation.start(prepared)

        async def events() -> AsyncIterator[dict[str, Any]]:
            yield frame({"role": "assistant", "content": ""}, None, None)
            async with contextlib.aclosing(chunks):
                async for chunk in chunks:
                    if tools is None:
                        if chunk.text or chunk.finish_reason is None:
                            yield frame({"content": chunk.text}, chunk, None)
                    else:
                        owner: GenerationChunk | None = chunk  # its logprobs go with its first frame
                        for event in tools.feed(chunk):
                            delta = (
                                {"content": event} if isinstance(event, str) else delta_calls(event, legacy)
                            )
                            if delta is not None:
                                yield frame(delta, owner, None)
                                owner = None
                    if chunk.finish_reason is not None:
                        reason = _finish(chunk.finish_reason)
                        has_calls = tools is not None and bool(tools.calls)
                        yield frame({}, None, finish_reason(reason, has_calls, legacy))
                        if include_usage:
                            yield {**base, "choices": [], "usage": _usage(Usage.of(chunk))}

        return sse_response(events(), request.url.path, prepared.headers())
    response.headers.update(prepared.headers())
    completion = await _run(request, services, prepared)
    message: dict[str, Any] = {"role": "assistant", "content": completion.text}
    reason = _finish(completion.finish_reason)
    if tools is not None:
        tools.feed_whole(completion.text, completion.tool_calls)
        message = {"role": "assistant", "content": tools.content, **message_calls(tools.calls, legacy)}
        reason = finish_reason(reason, bool(tools.calls), legacy)
    message_choice: dict[str, Any] = {
        "index": 0,
        "message": message,
        "logprobs": _chat_logprobs(completion.logprobs) if params.logprobs is not None else None,
        "finish_reason": reason,
    }
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model.id,
        "choices": [message_choice],
        "usage": _usage(completion.usage),
    }


@router.post(
    "/completions",
    response_model=None,
    responses={
        **sse_ok(None, "A text_completion, or text_completion events."),
        **errors(404, 503, openai=True),
    },
    summary="OpenAI-compatible text completion (the prompt is sent as is, without a chat template)",
)
async def completions(
    body: CompletionRequest, request: Request, response: Response
) -> Response | dict[str, Any]:
    services = get_services(request)
    body.refuse_unsupported()
    params = body.sampling(logprobs=body.logprobs)
    model = await services.registry.acquire(body.model)
    prepared = await services.generation.prepare(model, body.text(), params, max_tokens=body.max_tokens)
    completion_id, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
    base = {"id": completion_id, "object": "text_completion", "created": created, "model": model.id}

    def choice(text: str, chunk: GenerationChunk | None, finish: str | None) -> dict[str, Any]:
        logprobs = None
        if params.logprobs is not None and chunk is not None:
            logprobs = _completion_logprobs(list(chunk.logprobs), params.logprobs > 0)
        return {"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish}

    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        events = _stream(
            services,
            prepared,
            lambda c: {**base, "choices": [choice(c.text, c, None)]},
            lambda c: {**base, "choices": [choice(c.text, c, _finish(c.finish_reason))]},
            include_usage,
            lambda u: {**base, "choices": [], "usage": _usage(u)},
        )
        return sse_response(events, request.url.path, prepared.headers())
    response.headers.update(prepared.headers())
    completion = await _run(request, services, prepared)
    logprobs = None
    if params.logprobs is not None:
        logprobs = _completion_logprobs(list(completion.logprobs), params.logprobs > 0)
    return {
        **base,
        "choices": [
            {
                "index": 0,
                "text": completion.text,
                "logprobs": logprobs,
                "finish_reason": _finish(completion.finish_reason),
            }
        ],
        "usage": _usage(completion.usage),
    }


def _model_object(model_id: str, created: int, capabilities: list[str]) -> dict[str, Any]:
    # `capabilities` is LocalLab's: "completions" (chat, completions) or "embeddings" (/v1/embeddings).
    return {
        "id": model_id,
        "object": "model",
        "created": created,
        "owned_by": "locallab",
        "capabilities": capabilities,
    }


@router.get("/models", responses=errors(openai=True), summary="OpenAI-compatible list of models")
async def list_models(request: Request) -> dict[str, Any]:
    registry = get_services(request).registry
    ids = [
        entry.id
        for entry in registry.catalog.values()
        if entry.source.path_in(registry.models_dir) is not None
    ]
    ids += [m.id for m in registry.models if m.id not in ids]
    ids += [i for i in sorted(registry.remote_ids) if i not in ids]
    created = {m.id: int(m.loaded_at.timestamp()) for m in registry.models}
    data = [_model_object(i, created.get(i, 0), list(registry.capabilities(i))) for i in ids]
    for alias in registry.live_aliases():  # Ollama's copies: the model they name, under their own id
        target = registry.resolve(alias)
        capabilities: list[str] = list(registry.capabilities(target.id, target.path))
        data.append(_model_object(alias, created.get(target.id, 0), capabilities))
    return {"object": "list", "data": data}


@router.get(
    "/models/{model_id:path}", responses=errors(404, openai=True), summary="OpenAI-compatible model lookup"
)
async def get_model(model_id: str, request: Request) -> dict[str, Any]:
    registry = get_services(request).registry
    try:
        resolved = registry.resolve(model_id)
    except InvalidRequestError as exc:  # an id that is not even well-formed is simply not a model here
        raise ModelNotFoundError(f"model: no model '{model_id}'.") from exc
    loaded = next((m for m in registry.models if m.id == resolved.id), None)
    created = int(loaded.loaded_at.timestamp()) if loaded else 0
    model = model_id if registry.aliases.target(model_id) is not None else resolved.id
    return _model_object(model, created, list(registry.capabilities(resolved.id, resolved.path)))
