"""Server-sent events: `data: <json>` frames, errors inside the stream, and `data: [DONE]` at the end;
or, for Anthropic's and OpenAI's Responses streams, named events (`event: <name>`) without [DONE]."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.responses import StreamingResponse

from locallab.api.errors import INTERNAL_ERROR, error_payload, status_for
from locallab.errors import LocalLabError

logger = logging.getLogger(__name__)

DONE = b"data: [DONE]\n\n"


def encode_event(payload: dict[str, Any]) -> bytes:
    return (
        b"data: " + json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n\n"
    )


async def with_errors_and_done(events: AsyncIterator[dict[str, Any]], path: str) -> AsyncIterator[bytes]:
    """Once a stream has started its status is sent: an error travels as an event, then [DONE]."""
    try:
        async for event in events:
            yield encode_event(event)
    except LocalLabError as exc:
        yield encode_event(error_payload(path, status_for(exc), exc.detail))
    except Exception:
        logger.exception("stream failed")
        yield encode_event(error_payload(path, 500, INTERNAL_ERROR))
    yield DONE


def sse_response(
    events: AsyncIterator[dict[str, Any]], path: str = "/", headers: dict[str, str] | None = None
) -> StreamingResponse:
    """`path` picks the error shape: `{"detail"}`, or OpenAI's envelope under /v1."""
    return StreamingResponse(
        with_errors_and_done(events, path),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **(headers or {})},
    )


NamedEvent = tuple[str, dict[str, Any]]
# Builds the error event of a dialect from a status and a message.
ErrorEvent = Callable[[int, str], NamedEvent]


def encode_named_event(name: str, payload: dict[str, Any]) -> bytes:
    data = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"


async def with_named_errors(events: AsyncIterator[NamedEvent], on_error: ErrorEvent) -> AsyncIterator[bytes]:
    try:
        async for name, payload in events:
            yield encode_named_event(name, payload)
    except LocalLabError as exc:
        yield encode_named_event(*on_error(status_for(exc), exc.detail))
    except Exception:
        logger.exception("stream failed")
        yield encode_named_event(*on_error(500, INTERNAL_ERROR))


def named_sse_response(
    events: AsyncIterator[NamedEvent], on_error: ErrorEvent, headers: dict[str, str] | None = None
) -> StreamingResponse:
    """A stream of named events; an error after the stream began is the dialect's error event."""
    return StreamingResponse(
        with_named_errors(events, on_error),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **(headers or {})},
    )
