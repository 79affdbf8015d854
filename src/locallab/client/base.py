"""What the blocking and asyncio clients share: settings, request bodies, and reading answers."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from locallab.client.errors import LocalLabClientError, ServerUnavailableError, StreamError, error_for

DEFAULT_URL = "http://127.0.0.1:8000"
RETRY_STATUSES = frozenset({429, 503})


class ClientOptions:
    def __init__(
        self,
        url: str | None,
        api_key: str | None,
        timeout: float,
        retries: int,
        max_retry_wait: float,
    ) -> None:
        self.url = (url or os.environ.get("LOCALLAB_URL") or DEFAULT_URL).rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("LOCALLAB_API_KEY")
        self.timeout = timeout
        self.retries = retries  # retries on 429/503, honouring Retry-After; 0: raise at once
        self.max_retry_wait = max_retry_wait

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def retry_wait(self, response: httpx.Response, attempt: int) -> float | None:
        """Seconds to wait before retrying `response`, or None to give up."""
        if response.status_code not in RETRY_STATUSES or attempt >= self.retries:
            return None
        return min(self.max_retry_wait, _retry_after(response) or 1.0)


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["retry-after"])
    except (KeyError, ValueError):
        return None


def raise_for_error(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        body = response.json()
        error = body.get("error")  # OpenAI's envelope, on the /v1 routes
        message = error.get("message") if isinstance(error, dict) else None
        detail = str(message or body.get("detail", response.text))
    except (ValueError, AttributeError):
        detail = response.text or response.reason_phrase
    raise error_for(response.status_code, detail, _retry_after(response))


def generate_body(prompt: str, options: Mapping[str, Any], stream: bool) -> dict[str, Any]:
    return {"prompt": prompt, **options, "stream": stream}


DEFAULT_EMBEDDING_MODEL = "all-minilm-l6-v2"


def embed_body(texts: str | Sequence[str], model: str, truncate: bool) -> dict[str, Any]:
    items = texts if isinstance(texts, str) else list(texts)
    return {"model": model, "input": items, "encoding_format": "float", "truncate": truncate}


def chat_body(
    messages: Sequence[Mapping[str, Any]], options: Mapping[str, Any], stream: bool
) -> dict[str, Any]:
    return {"messages": [dict(m) for m in messages], **options, "stream": stream}


def parse_event(line: str) -> dict[str, Any] | None:
    """One SSE line: its JSON payload, or None for blank lines and [DONE]. Errors raise StreamError."""
    if not line.startswith("data: ") or line == "data: [DONE]":
        return None
    try:
        event: dict[str, Any] = json.loads(line[len("data: ") :])
    except ValueError as exc:
        raise LocalLabClientError(f"The server sent an event that is not JSON: {line[:80]!r}") from exc
    if "detail" in event:
        raise StreamError(str(event["detail"]))
    return event


def event_text(event: dict[str, Any]) -> str:
    """New text in a /generate event or a /chat chunk."""
    if "response" in event:
        return str(event["response"])
    choices = event.get("choices") or [{}]
    return str(choices[0].get("delta", {}).get("content", ""))


def unavailable(url: str, exc: Exception) -> LocalLabClientError:
    return ServerUnavailableError(
        f"No LocalLab server answers at {url} ({exc.__class__.__name__}). Start one with `locallab start` "
        "or point --url / LOCALLAB_URL at it."
    )
