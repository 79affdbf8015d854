"""Token-bucket rate limiting per client, as pure ASGI middleware.

Each client (its IP address for now) has a bucket of `burst` tokens refilled at `per_minute / 60` a
second; a request takes one token, and without one it gets 429 with Retry-After. /health and
/health/ready are exempt so that monitors never eat a user's budget, and so is the chat page's static
content.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from locallab.api.errors import send_error

EXEMPT_PATHS = frozenset({"/health", "/health/ready", "/"})  # and the page's assets under /ui/
_MAX_CLIENTS = 10_000


@dataclass
class _Bucket:
    tokens: float
    updated: float


class TokenBucketLimiter:
    def __init__(self, per_minute: int, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = per_minute / 60.0
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def acquire(self, client: str) -> float:
        """Takes a token; returns 0 when allowed, else the seconds until one is available."""
        now = self._clock()
        bucket = self._buckets.get(client)
        if bucket is None:
            if len(self._buckets) >= _MAX_CLIENTS:
                self._forget_full_buckets(now)
            bucket = self._buckets[client] = _Bucket(float(self.burst), now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    def _forget_full_buckets(self, now: float) -> None:
        # A bucket that has refilled completely holds no information: drop it to bound memory.
        full = [
            key for key, b in self._buckets.items() if b.tokens + (now - b.updated) * self.rate >= self.burst
        ]
        for key in full:
            del self._buckets[key]


def client_identity(scope: Scope) -> str:
    """Whom a request counts against: its API key (set by the auth middleware), else its IP address."""
    key_id = scope.get("state", {}).get("api_key_id")
    if key_id:
        return f"key:{key_id}"
    client = scope.get("client")
    return f"ip:{client[0]}" if client else "ip:unknown"


class RateLimitMiddleware:
    def __init__(
        self, app: ASGIApp, limiter: TokenBucketLimiter, on_limited: Callable[[], None] | None = None
    ) -> None:
        self.app = app
        self.limiter = limiter
        self.on_limited = on_limited

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS or scope["path"].startswith("/ui/"):
            await self.app(scope, receive, send)
            return
        wait = self.limiter.acquire(client_identity(scope))
        if wait <= 0:
            await self.app(scope, receive, send)
            return
        if self.on_limited is not None:
            self.on_limited()
        retry_after = max(1, math.ceil(wait))
        detail = (
            f"Rate limit exceeded: {self.limiter.burst} requests at once and "
            f"{round(self.limiter.rate * 60)} per minute per client. Retry in {retry_after} s."
        )
        await send_error(scope, send, 429, detail, {"Retry-After": str(retry_after)})
