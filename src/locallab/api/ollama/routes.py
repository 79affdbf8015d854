"""POST /api/generate and /api/chat: Ollama's generation routes over the generation service.

The model is resolved and loaded, the prompt built and the generation admitted before the response
starts, so those failures get their status (400, 404, 503); after that an error is a last NDJSON line.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from locallab.api.cancellation import cancel_on_disconnect
from locallab.api.ndjson import ndjson_response
from locallab.api.ollama import wire
from locallab.api.ollama.docs import errors, ndjson_ok
from locallab.api.ollama.schemas import ChatRequest, GenerateRequest, Options
from locallab.api.ollama.tools import neutral_messages, tool_use_of, wire_calls
from locallab.api.state import Services, get_services
from locallab.engines.tools import ToolUse
from locallab.errors import ContextOverflowError, InvalidRequestError, ModelNotFoundError
from locallab.services.generation import PreparedGeneration, Prompt
from locallab.services.registry import LoadedModel

router = APIRouter(prefix="/api", tags=["ollama"])

NO_IMAGES = "images: LocalLab has no vision model yet; send text only."


def refuse_unsupported(body: GenerateRequest | ChatRequest) -> None:
    """Fields Ollama knows that LocalLab cannot honour: a 400 naming each, never a silent drop."""
    if body.think not in (None, False):
        raise InvalidRequestError(
            "think: this model does not think (no reasoning trace); remove `think` or set it to false."
        )
    if body.logprobs or body.top_logprobs is not None:
        raise InvalidRequestError(
            "logprobs: not available on LocalLab's Ollama API; POST /v1/chat/completions has them."
        )
    if isinstance(body, GenerateRequest):
        if body.images:
            raise InvalidRequestError(NO_IMAGES)
        if body.suffix:
            raise InvalidRequestError(
                "suffix: this model cannot fill in the middle; send the prompt without a suffix."
            )
        if body.template:
            raise InvalidRequestError("template: LocalLab uses the model's own chat template; remove it.")
        if body.context:
            raise InvalidRequestError(
                "context: token contexts from earlier answers are not supported; send the conversation "
                "to POST /api/chat instead."
            )
        if body.width is not None or body.height is not None or body.steps is not None:
            raise InvalidRequestError("width/height/steps: LocalLab generates no images.")
        return
    for i, message in enumerate(body.messages):
        if message.images:
            raise InvalidRequestError(f"messages[{i}].{NO_IMAGES}")


async def acquire(services: Services, name: str, keep_alive: float | None) -> LoadedModel:
    """The model an Ollama name means, loaded; 404 in Ollama's words for a name we do not know."""
    try:
        return await services.registry.acquire(wire.model_id(name), keep_alive)
    except ModelNotFoundError as exc:
        raise ModelNotFoundError(f"model '{name}' not found. {exc.detail}") from exc


async def _unload(services: Services, model: LoadedModel) -> None:
    if services.registry.is_loaded(model.id):
        await services.registry.unload(model.id)


async def _load_only(services: Services, name: str, keep_alive: float | None, chat: bool) -> Response:
    """An empty prompt or conversation: load the model (or, with keep_alive 0, unload it)."""
    timings = wire.Timings()
    base: dict[str, Any] = {"model": name, "created_at": wire.now_rfc3339()}
    base.update({"message": {"role": "assistant", "content": ""}} if chat else {"response": ""})
    if keep_alive == 0:
        model_id = wire.model_id(name)
        if services.registry.is_loaded(model_id):
            await services.registry.unload(model_id)
        else:
            services.registry.resolve(model_id)  # still a 404 for an unknown name
        return JSONResponse({**base, "done": True, "done_reason": "unload"})
    await acquire(services, name, keep_alive)
    timings.mark_loaded()
    return JSONResponse({**base, "done": True, "done_reason": "load", **timings.final(0, 0)})


async def _prepare(
    services: Services,
    model: LoadedModel,
    prompt: Prompt,
    body: GenerateRequest | ChatRequest,
    tool_use: ToolUse | None = None,
) -> PreparedGeneration:
    options: Options | None = body.options
    params = wire.sampling(options, body.format)
    limit = wire.max_tokens(options, services.generation.limits.max_tokens_cap)
    prepared = await services.generation.prepare(model, prompt, params, max_tokens=limit, tools=tool_use)
    num_ctx = wire.check_num_ctx(options, model.engine.context_length)
    prompt_len = len(prepared.request.prompt_tokens)
    if num_ctx is not None and prompt_len:
        if prompt_len >= num_ctx:
            raise ContextOverflowError(
                f"The prompt is {prompt_len} tokens long, more than options.num_ctx ({num_ctx}) holds "
                "with an answer; shorten the prompt or raise num_ctx."
            )
        sampling = prepared.request.sampling
        room = replace(sampling, max_tokens=min(sampling.max_tokens, num_ctx - prompt_len))
        prepared = replace(prepared, request=replace(prepared.request, sampling=room))
    return prepared


async def _answer(
    request: Request,
    services: Services,
    prepared: PreparedGeneration,
    body: GenerateRequest | ChatRequest,
    timings: wire.Timings,
    keep_alive: float | None,
    piece: Callable[[str], dict[str, Any]],
) -> Response:
    """Streams NDJSON chunks (`piece(text)` plus model/created_at/done), or one object with stream false."""
    model = prepared.model
    tools = prepared.tool_output()  # None unless the chat offered tools

    def line(text: str, done: bool) -> dict[str, Any]:
        return {"model": body.model, "created_at": wire.now_rfc3339(), **piece(text), "done": done}

    chunks = services.generation.start(prepared)  # admitted now: a full queue is a 503, not a stream line

    async def lines() -> AsyncIterator[dict[str, Any]]:
        try:
            async with contextlib.aclosing(chunks):
                async for chunk in chunks:
                    if chunk.completion_tokens:
                        timings.mark_token()
                    if tools is not None:  # content as it comes; calls are held until they are whole
                        for event in tools.feed(chunk):
                            if isinstance(event, str) and event:
                                yield line(event, False)
                    elif chunk.text or chunk.finish_reason is None:
                        yield line(chunk.text, False)
                    if chunk.finish_reason is None:
                        continue
                    if tools is not None and tools.calls:
                        calls = {"role": "assistant", "content": "", "tool_calls": wire_calls(tools.calls)}
                        yield {**line("", False), "message": calls}
                    final = timings.final(chunk.prompt_tokens, chunk.completion_tokens)
                    yield {**line("", True), "done_reason": wire.done_reason(chunk.finish_reason), **final}
        finally:
            if keep_alive == 0:
                await _unload(services, model)

    if body.stream:
        return ndjson_response(lines(), prepared.headers())
    parts: list[str] = []
    calls: list[dict[str, Any]] = []

    async def collect() -> dict[str, Any]:
        last: dict[str, Any] = {}
        async for item in lines():
            parts.append(piece_text(item))
            calls.extend(item.get("message", {}).get("tool_calls", []))
            last = item
        return last

    last = await cancel_on_disconnect(request, collect())
    answer = {**last, **piece("".join(parts))}
    if calls:
        answer["message"]["tool_calls"] = calls
    return JSONResponse(answer, headers=prepared.headers())


def piece_text(item: dict[str, Any]) -> str:
    if "message" in item:
        return str(item["message"]["content"])
    return str(item.get("response", ""))


@router.post(
    "/generate",
    response_model=None,
    responses={**ndjson_ok("GenerateResponse chunks, the last with done: true"), **errors(404, 503)},
    summary="Ollama: generate an answer to a prompt",
)
async def generate(body: GenerateRequest, request: Request) -> Response:
    services = get_services(request)
    refuse_unsupported(body)
    keep_alive = wire.keep_alive_seconds(body.keep_alive)
    if not body.prompt and not body.system:
        return await _load_only(services, body.model, keep_alive, chat=False)
    timings = wire.Timings()
    model = await acquire(services, body.model, keep_alive)
    timings.mark_loaded()
    prompt = await services.generation.prompt_for_generate(
        model, body.prompt or "", system_prompt=body.system, raw=body.raw
    )
    prepared = await _prepare(services, model, prompt, body)
    return await _answer(
        request, services, prepared, body, timings, keep_alive, lambda text: {"response": text}
    )


@router.post(
    "/chat",
    response_model=None,
    responses={**ndjson_ok("ChatResponse chunks, the last with done: true"), **errors(404, 503)},
    summary="Ollama: the next message of a conversation",
)
async def chat(body: ChatRequest, request: Request) -> Response:
    services = get_services(request)
    refuse_unsupported(body)
    keep_alive = wire.keep_alive_seconds(body.keep_alive)
    if not body.messages:
        return await _load_only(services, body.model, keep_alive, chat=True)
    timings = wire.Timings()
    model = await acquire(services, body.model, keep_alive)
    timings.mark_loaded()
    tool_use = tool_use_of(body.tools)
    prompt = await services.generation.prompt_for_chat(model, neutral_messages(body.messages), tool_use)
    prepared = await _prepare(services, model, prompt, body, tool_use)
    return await _answer(
        request,
        services,
        prepared,
        body,
        timings,
        keep_alive,
        lambda text: {"message": {"role": "assistant", "content": text}},
    )
