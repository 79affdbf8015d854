"""OpenAI's Responses API: POST /v1/responses, GET and DELETE /v1/responses/{id}, and
GET /v1/responses/{id}/input_items. Stored responses live in SQLite (`ResponseStore`); with API keys
on, a key sees only the responses it created. The field mapping is in `responses_wire.py`."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from locallab.api.cancellation import cancel_on_disconnect
from locallab.api.openai import responses_wire as wire
from locallab.api.openai.responses_schemas import ResponsesRequest
from locallab.api.openai.responses_stream import OutputItems
from locallab.api.routes.docs import errors, sse_ok
from locallab.api.sse import NamedEvent, named_sse_response
from locallab.api.state import Services, get_services
from locallab.services.generation import PreparedGeneration, Usage
from locallab.services.response_store import StoredResponse

router = APIRouter(prefix="/v1", tags=["openai"])


def _owner(request: Request) -> str | None:
    """The short hash of the caller's API key (set by the auth middleware), None without keys."""
    return getattr(request.state, "api_key_id", None)


async def _store(
    services: Services,
    body: ResponsesRequest,
    response: dict[str, Any],
    items: list[dict[str, Any]],
    owner: str | None,
) -> None:
    if body.store:
        await services.responses.save(response, items, owner, body.previous_response_id)


def _events(
    services: Services,
    prepared: PreparedGeneration,
    body: ResponsesRequest,
    stored_items: list[dict[str, Any]],
    owner: str | None,
) -> tuple[AsyncIterator[NamedEvent], wire.EventNumbering]:
    chunks = services.generation.start(prepared)  # admitted now: a full queue is a 503 before the stream
    event = wire.EventNumbering()
    response_id, created = wire.new_id("resp"), wire.now()
    model_id = prepared.model.id
    tools = prepared.tool_output()  # with tools, items open as the answer shows what they are

    async def events() -> AsyncIterator[NamedEvent]:
        start = wire.response_object(response_id, body, model_id, created_at=created)
        yield event("response.created", response=start)
        yield event("response.in_progress", response=start)
        items = OutputItems(event)
        if tools is None:
            for opened in items.start_message():
                yield opened
        async with contextlib.aclosing(chunks):
            async for chunk in chunks:
                pieces = tools.feed(chunk) if tools is not None else [chunk.text] if chunk.text else []
                for piece in items.feed(pieces):
                    yield piece
                if chunk.finish_reason is None:
                    continue
                for closed in items.finish():
                    yield closed
                status, incomplete = wire.status_of(chunk.finish_reason)
                final = wire.response_object(
                    response_id, body, model_id, created_at=created, status=status,
                    output=items.output, incomplete=incomplete, used=Usage.of(chunk),
                )  # fmt: skip
                await _store(services, body, final, stored_items, owner)
                # Always response.completed, its status saying "incomplete" when cut: the openai package's
                # stream helper and the Agents SDK wait for that event alone.
                yield event("response.completed", response=final)

    return events(), event


@router.post(
    "/responses",
    response_model=None,
    responses={
        **sse_ok(None, "A response object, or with stream=true its semantic events."),
        **errors(404, 503, openai=True),
    },
    summary="OpenAI Responses API: create a response",
)
async def create_response(
    body: ResponsesRequest, request: Request, response: Response
) -> Response | dict[str, Any]:
    services = get_services(request)
    body.refuse_unsupported()
    owner = _owner(request)
    items = wire.input_items(body)
    history: list[StoredResponse] = []
    if body.previous_response_id is not None:
        history = await services.responses.chain(body.previous_response_id, owner)
    sampling = wire.sampling(body)
    model = await services.registry.acquire(body.model)
    tool_use = wire.tool_use_of(body)
    messages = wire.conversation(body, history, items)
    prompt = await services.generation.prompt_for_chat(model, messages, tool_use)
    prepared = await services.generation.prepare(
        model, prompt, sampling, max_tokens=body.max_output_tokens, tools=tool_use
    )
    if body.stream:
        events, numbering = _events(services, prepared, body, items, owner)
        return named_sse_response(events, numbering.error, prepared.headers())
    response.headers.update(prepared.headers())
    created = wire.now()
    completion = await cancel_on_disconnect(request, services.generation.complete(prepared))
    status, incomplete = wire.status_of(completion.finish_reason)
    output = [wire.output_message(wire.new_id("msg"), completion.text)]
    tools = prepared.tool_output()
    if tools is not None:
        tools.feed_whole(completion.text, completion.tool_calls)
        output = [wire.output_message(wire.new_id("msg"), tools.content)] if tools.content else []
        output += wire.function_call_items(tools.calls)
    result = wire.response_object(
        wire.new_id("resp"), body, model.id, created_at=created, status=status,
        output=output, incomplete=incomplete, used=completion.usage,
    )  # fmt: skip
    await _store(services, body, result, items, owner)
    return result


@router.get(
    "/responses/{response_id}",
    responses=errors(404, openai=True),
    summary="OpenAI Responses API: retrieve a stored response",
)
async def get_response(response_id: str, request: Request) -> dict[str, Any]:
    stored = await get_services(request).responses.get(response_id, _owner(request))
    return stored.body


@router.delete(
    "/responses/{response_id}",
    responses=errors(404, openai=True),
    summary="OpenAI Responses API: delete a stored response",
)
async def delete_response(response_id: str, request: Request) -> dict[str, Any]:
    await get_services(request).responses.delete(response_id, _owner(request))
    return {"id": response_id, "object": "response.deleted", "deleted": True}


@router.get(
    "/responses/{response_id}/input_items",
    responses=errors(404, openai=True),
    summary="OpenAI Responses API: the input items of a stored response",
)
async def list_input_items(
    response_id: str,
    request: Request,
    limit: int = Query(20, ge=1, le=100),
    order: Literal["asc", "desc"] = Query("desc"),
    after: str | None = Query(None, description="An item id: list the items after it."),
) -> dict[str, Any]:
    stored = await get_services(request).responses.get(response_id, _owner(request))
    items = stored.input_items if order == "asc" else stored.input_items[::-1]
    if after is not None:
        ids = [item["id"] for item in items]
        items = items[ids.index(after) + 1 :] if after in ids else []
    page = items[:limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": len(items) > limit,
    }
