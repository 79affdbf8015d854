"""Host header allow-list while bound to loopback: a web page on another site cannot reach the server
through DNS rebinding (its requests carry the attacker's host name; CVE-2024-28224 in Ollama)."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from locallab.api.errors import send_error

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def host_name(value: str) -> str:
    value = value.strip().lower()
    if value.startswith("["):  # [::1]:8000
        return value[: value.find("]") + 1]
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class HostCheckMiddleware:
    def __init__(self, app: ASGIApp, allowed: list[str]) -> None:
        self.app = app
        self.any_host = "*" in allowed
        self.allowed = LOOPBACK_NAMES | {host_name(h) for h in allowed}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.any_host:
            await self.app(scope, receive, send)
            return
        host = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"host"), "")
        if host_name(host) not in self.allowed:
            detail = (
                f"Host '{host[:100]}' is not allowed. This server answers to localhost names; add others "
                "with LOCALLAB_ALLOWED_HOSTS."
            )
            await send_error(scope, send, 403, detail)
            return
        await self.app(scope, receive, send)
