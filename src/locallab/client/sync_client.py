"""Client: the blocking LocalLab client."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
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


class Client:
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
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.options = ClientOptions(url, api_key, timeout, retries, max_retry_wait)
        self._http = httpx.Client(
            base_url=self.options.url, headers=self.options.headers(), timeout=timeout, transport=transport
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object | TracebackType) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        attempt = 0
        while True:
            try:
                response = self._http.request(method, path, json=body)
            except httpx.TransportError as exc:
                raise unavailable(self.options.url, exc) from exc
            wait = self.options.retry_wait(response, attempt)
            if wait is None:
                raise_for_error(response)
                return response.json()
            attempt += 1
            time.sleep(wait)

    def _stream(self, path: str, body: dict[str, Any]) -> Iterator[str]:
        for event in self._events(path, body):
            if text := event_text(event):
                yield text

    def _events(self, path: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        attempt = 0
        while True:
            try:
                with self._http.stream("POST", path, json=body) as response:
                    wait = self.options.retry_wait(response, attempt)
                    if wait is None:
                        if response.status_code >= 400:
                            response.read()
                            raise_for_error(response)
                        for line in response.iter_lines():
                            event = parse_event(line)
                            if event is not None:
                                yield event
                        return
            except httpx.TransportError as exc:
                raise unavailable(self.options.url, exc) from exc
            attempt += 1
            time.sleep(wait)

    def generate(self, prompt: str, **options: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._request("POST", "/generate", generate_body(prompt, options, False))
        return result

    def stream_generate(self, prompt: str, **options: Any) -> Iterator[str]:
        return self._stream("/generate", generate_body(prompt, options, True))

    def generate_batch(self, prompts: Sequence[str], **options: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._request(
            "POST", "/generate/batch", {"prompts": list(prompts), **options}
        )
        return result

    def chat(self, messages: Sequence[Mapping[str, Any]], **options: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._request("POST", "/chat", chat_body(messages, options, False))
        return result

    def stream_chat(self, messages: Sequence[Mapping[str, Any]], **options: Any) -> Iterator[str]:
        return self._stream("/chat", chat_body(messages, options, True))

    def embed(
        self, texts: str | Sequence[str], *, model: str = DEFAULT_EMBEDDING_MODEL, truncate: bool = False
    ) -> dict[str, Any]:
        """Embeddings of a text or a list of texts (POST /v1/embeddings): OpenAI's response, whose
        `data[i]["embedding"]` is the L2-normalised vector of `texts[i]`."""
        result: dict[str, Any] = self._request("POST", "/v1/embeddings", embed_body(texts, model, truncate))
        return result

    def models(self) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", "/models/available")
        return result

    def current_model(self) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", "/models/current")
        return result

    def load_model(self, model_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("POST", "/models/load", {"model_id": model_id})
        return result

    def model_info(self, model_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", f"/models/{model_id}")
        return result

    def delete_model(self, model_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("DELETE", f"/models/{model_id}")
        return result

    def pull_model(self, model_id: str) -> Iterator[dict[str, Any]]:
        """Progress events of a download (`status`, `completed`, `total`); the last one is the outcome.
        A failed download raises StreamError with the server's detail."""
        return self._events("/models/pull", {"model_id": model_id, "stream": True})

    def system_info(self) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", "/system/info")
        return result

    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", "/health")
        return result

    def ready(self) -> dict[str, Any]:
        """`{"status": "ready", "model"}`; a server that is not ready raises ServiceUnavailableError
        whose detail says why (loading, failed, unloaded, draining)."""
        result: dict[str, Any] = self._request("GET", "/health/ready")
        return result
