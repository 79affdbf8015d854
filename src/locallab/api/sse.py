"""Server-sent events: `data: <json>` frames, errors inside the stream, and `data: [DONE]` at the end."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.responses import StreamingResponse

from locallab.errors import LocalLabError

logger = logging.getLogger(__name__)

DONE = b"data: [DONE]\n\n"


def encode_event(payload: dict[str, Any]) -> bytes:
    return (
        b"data: " + json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n\n"
    )


async def with_errors_and_done(events: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    """Once a stream has started its status is sent: an error travels as an event, then [DONE]."""
    try:
        async for event in events:
            yield encode_event(event)
    except LocalLabError as exc:
        yield encode_event({"detail": exc.detail})
    except Exception:
        logger.exception("stream failed")
        yield encode_event(
            {"detail": "Internal server error during generation; the server log has the details."}
        )
    yield DONE


def sse_response(events: AsyncIterator[dict[str, Any]]) -> StreamingResponse:
    return StreamingResponse(
        with_errors_and_done(events),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
