"""Counts every HTTP request for /system/info's `request_count`."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from locallab.services.stats import Stats


class RequestCountMiddleware:
    def __init__(self, app: ASGIApp, stats: Stats) -> None:
        self.app = app
        self.stats = stats

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.stats.request_received()
        await self.app(scope, receive, send)
