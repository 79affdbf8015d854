"""API keys: `Authorization: Bearer <key>` or `X-API-Key: <key>` on every route but the probes (/health,
/health/ready: load balancers send no key; they tell only the default model's id and load state).

Keys come from LOCALLAB_API_KEYS and LOCALLAB_API_KEYS_FILE (re-read when the file changes). They are
compared in constant time and never logged; a request's key is known downstream only by a short hash.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

from locallab.api.errors import send_error

logger = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/health", "/health/ready", "/"})
OPEN_PREFIXES = ("/ui/",)  # the chat page's static files


class KeyStore:
    def __init__(self, keys: list[str], path: Path | None) -> None:
        self._static = [k.encode() for k in keys]
        self._path = path
        self._file_keys: list[bytes] = []
        self._stamp: tuple[int, int] | None = None

    @property
    def enabled(self) -> bool:
        return bool(self._static) or self._path is not None

    def _file(self) -> list[bytes]:
        if self._path is None:
            return []
        try:
            stat = self._path.stat()
        except OSError:
            logger.error("API keys file %s cannot be read; only LOCALLAB_API_KEYS apply", self._path)
            return []
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            lines = self._path.read_text(encoding="utf-8").splitlines()
            self._file_keys = [
                line.strip().encode() for line in lines if line.strip() and not line.startswith("#")
            ]
            self._stamp = stamp
        return self._file_keys

    def match(self, candidate: str) -> bool:
        given = candidate.encode()
        found = False
        for key in self._static + self._file():
            found |= hmac.compare_digest(given, key)  # no early exit: timing says nothing about which key
        return found


def presented_key(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return str(token.strip())
        elif name == b"x-api-key" and value.strip():
            return str(value.decode("latin-1").strip())
    return None


class AuthMiddleware:
    def __init__(self, app: ASGIApp, keys: KeyStore) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if (
            scope["type"] != "http"
            or path in OPEN_PATHS
            or path.startswith(OPEN_PREFIXES)
            or scope["method"] == "OPTIONS"
        ):
            await self.app(scope, receive, send)
            return
        key = presented_key(scope)
        if key is None or not self.keys.match(key):
            detail = (
                "Missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'."
                if key is None
                else "Invalid API key."
            )
            await send_error(scope, send, 401, detail, {"WWW-Authenticate": 'Bearer realm="locallab"'})
            return
        scope.setdefault("state", {})["api_key_id"] = hashlib.sha256(key.encode()).hexdigest()[:16]
        await self.app(scope, receive, send)
