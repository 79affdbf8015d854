"""AsyncClient: the asyncio LocalLab client (same methods as Client, awaited)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from types import TracebackType
from typing import Any

import httpx

from locallab.client.base import (
    DEFAULT_EMBEDDING_MODEL,
    ClientOptions,
    chat_body,
    embed_body,
    event_text,
    generate_body,
    parse_event,
    raise_for_error,
    unavailable,
)


class AsyncClient:
    """Every route of the LocalLab API. Options such as `max_length` or `temperature` pass through as
    keyword arguments; answers are the server's JSON as dicts."""

    def __init__(
        self,
        url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float = 600.0,
        retries: int = 0,
        max_retry_wait: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.options = ClientOptions(url, api_key, timeout, retries, max_retry_wait)
        self._http = httpx.AsyncClient(
            base_url=self.options.url, headers=self.options.headers(), timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object | TracebackType) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, path: str, body: Any = None) -> Any:
        attempt = 0
        while True:
            try:
                response = await self._http.request(method, path, json=body)
            except httpx.TransportError as exc:
                raise unavailable(self.options.url, exc) from exc
            wait = self.options.retry_wait(response, attempt)
            if wait is None:
                raise_for_error(response)
                return response.json()
            attempt += 1
            await asyncio.sleep(wait)

    async def _stream(self, path: str, body: dict[str, Any]) -> AsyncIterator[str]:
        attempt = 0
        while True:
            try:
                async with self._http.stream("POST", path, json=body) as response:
                    wait = self.options.retry_wait(response, attempt)
                    if wait is None:
                        if response.status_code >= 400:
                            await response.aread()
                            raise_for_error(response)
                        async for line in response.aiter_lines():
                            event = parse_event(line)
                            if event is not None and (text := event_text(event)):
                                yield text
                        return
            except httpx.TransportError as exc:
                raise unavailable(self.options.url, exc) from exc
            attempt += 1
            await asyncio.sleep(wait)

    async def generate(self, prompt: str, **options: Any) -> dict[str, Any]:
        result: dict[str, Any] = await self._request(
            "POST", "/generate", generate_body(prompt, options, False)
        )
        return result

    def stream_generate(self, prompt: str, **options: Any) -> AsyncIterator[str]:
        return self._stream("/generate", generate_body(prompt, options, True))

    async def generate_batch(self, prompts: Sequence[str], **options: Any) -> dict[str, Any]:
        result: dict[str, Any] = await self._request(
            "POST", "/generate/batch", {"prompts": list(prompts), **options}
        )
        return result

    async def chat(self, messages: Sequence[Mapping[str, Any]], **options: Any) -> dict[str, Any]:
        result: dict[str, Any] = await self._request("POST", "/chat", chat_body(messages, options, False))
        return result

    def stream_chat(self, messages: Sequence[Mapping[str, Any]], **options: Any) -> AsyncIterator[str]:
        return self._stream("/chat", chat_body(messages, options, True))

    async def embed(
        self, texts: str | Sequence[str], *, model: str = DEFAULT_EMBEDDING_MODEL, truncate: bool = False
    ) -> dict[str, Any]:
        """Embeddings of a text or a list of texts (POST /v1/embeddings): OpenAI's response, whose
        `data[i]["embedding"]` is the L2-normalised vector of `texts[i]`."""
        result: dict[str, Any] = await self._request(
            "POST", "/v1/embeddings", embed_body(texts, model, truncate)
        )
        return result

    async def models(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._request("GET", "/models/available")
        return result

    async def current_model(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._request("GET", "/models/current")
        return result

    async def load_model(self, model_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._request("POST", "/models/load", {"model_id": model_id})
        return result

    async def model_info(self, model_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._request("GET", f"/models/{model_id}")
        return result

    async def delete_model(self, model_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._request("DELETE", f"/models/{model_id}")
        return result

    async def system_info(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._request("GET", "/system/info")
        return result

    async def health(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._request("GET", "/health")
        return result

    async def ready(self) -> dict[str, Any]:
        """`{"status": "ready", "model"}`; a server that is not ready raises ServiceUnavailableError
        whose detail says why (loading, failed, unloaded, draining)."""
        result: dict[str, Any] = await self._request("GET", "/health/ready")
        return result
