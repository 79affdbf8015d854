"""Request bodies: JSON only, no larger than LOCALLAB_MAX_BODY_BYTES, and sent within 30 seconds.

A body sent as text/plain or as a form is what a browser sends cross-site without asking first (a
"simple request"), so such a request is refused before any route runs: no side effect. One exception:
Ollama's routes (/api/...) read such a body as JSON when no Origin header came with it, since Ollama's
own documentation sends JSON with `curl -d` (a form content type) and a browser always sends Origin
with a POST.
"""

from __future__ import annotations

import asyncio
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from locallab.api.errors import OLLAMA_PREFIX, send_error

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _ollama_without_origin(scope: Scope) -> bool:
    return str(scope.get("path", "")).startswith(OLLAMA_PREFIX) and _header(scope, b"origin") is None


def _as_json(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return [(k, v) for k, v in headers if k != b"content-type"] + [(b"content-type", b"application/json")]


class BodyGuardMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int, read_timeout: float = 30.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.read_timeout = read_timeout  # a client trickling its body in cannot hold a connection for ever

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        content_type = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
        length = _header(scope, b"content-length")
        if content_type and content_type != "application/json" and not content_type.endswith("+json"):
            if _ollama_without_origin(scope):
                scope = {**scope, "headers": _as_json(scope["headers"])}
            else:
                await send_error(
                    scope,
                    send,
                    400,
                    f"Send the body as JSON with 'Content-Type: application/json', not '{content_type}'.",
                )
                return
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await send_error(scope, send, 413, self._too_large())
            return
        # Read the whole body first (it is small by definition), so an oversized one is refused before
        # any route sees it; then hand it to the app as one message.
        chunks: list[bytes] = []
        size = 0
        deadline = time.monotonic() + self.read_timeout
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                detail = f"The request body did not arrive within {self.read_timeout:g} s."
                await send_error(scope, send, 408, detail)
                return
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await send_error(scope, send, 413, self._too_large())
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _too_large(self) -> str:
        return f"The request body is larger than {self.max_bytes} bytes (LOCALLAB_MAX_BODY_BYTES)."
