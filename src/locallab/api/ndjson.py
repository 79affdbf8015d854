"""NDJSON streams (Ollama's framing): one JSON object a line; once the stream has started, an error
travels as a last line `{"error": ...}` (the status line is already sent)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.responses import StreamingResponse

from locallab.api.errors import INTERNAL_ERROR
from locallab.errors import LocalLabError

logger = logging.getLogger(__name__)

MEDIA_TYPE = "application/x-ndjson"


def encode_line(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


async def with_error_line(lines: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    try:
        async for line in lines:
            yield encode_line(line)
    except LocalLabError as exc:
        yield encode_line({"error": exc.detail})
    except Exception:
        logger.exception("stream failed")
        yield encode_line({"error": INTERNAL_ERROR})


def ndjson_response(
    lines: AsyncIterator[dict[str, Any]], headers: dict[str, str] | None = None
) -> StreamingResponse:
    return StreamingResponse(
        with_error_line(lines),
        media_type=MEDIA_TYPE,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **(headers or {})},
    )
