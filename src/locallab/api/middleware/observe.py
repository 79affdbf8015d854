"""Request ids and request metrics, as pure ASGI middleware (the outermost one).

Every response carries `X-Request-ID` (the client's own when it sent a sane one, else a new one); log
lines and error bodies of the request carry it too. Each request is counted by route, method and status.
"""

from __future__ import annotations

import logging
import re
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from locallab.api.errors import INTERNAL_ERROR, send_error
from locallab.logs import request_id_var
from locallab.services.metrics import Metrics
from locallab.services.stats import Stats

logger = logging.getLogger(__name__)
_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def _incoming_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            return text if _SANE_ID.match(text) else None
    return None


class ObserveMiddleware:
    def __init__(self, app: ASGIApp, stats: Stats, metrics: Metrics) -> None:
        self.app = app
        self.stats = stats
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_id(scope) or uuid.uuid4().hex
        token = request_id_var.set(request_id)
        self.stats.request_received()
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            # A bug: answered here, inside the request's context, so the 500 carries its request id.
            logger.exception("unexpected error on %s %s", scope["method"], scope["path"])
            if status == 0:
                await send_error(scope, send_with_id, 500, INTERNAL_ERROR)
        finally:
            route = scope.get("route")
            label = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(label, scope["method"], str(status)).inc()
            request_id_var.reset(token)
