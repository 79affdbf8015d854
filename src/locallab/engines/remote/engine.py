"""RemoteEngine: a model served by a pool of OpenAI-compatible upstream servers.

It takes text prompts (`takes_text_prompts`): conversations go upstream as messages, plain prompts as
text, and token counts come from the upstream's usage. Answers are always streamed from the upstream
and passed on event by event. A failure before the first token is retried on another upstream; after
it, the stream ends with UpstreamError (an error event for a streaming client).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import httpx

from locallab.config.remote import RemoteModelConfig
from locallab.engines.base import EngineLoad, GenerationChunk, GenerationRequest, GenerationStream, ModelInfo
from locallab.engines.remote.pool import Outcome, Upstream, UpstreamObserver, UpstreamPool
from locallab.engines.remote.wire import ErrorKind, StreamFailure, StreamReader, error_detail, request_body
from locallab.errors import EngineError, InvalidRequestError, UpstreamError, UpstreamUnavailableError
from locallab.logs import request_id_var

logger = logging.getLogger(__name__)
_REFUSED = {400, 413, 422}  # the request itself is wrong: another upstream would say the same


class RemoteEngine:
    engine_name = "remote"
    takes_text_prompts = True

    def __init__(self, config: RemoteModelConfig, observer: UpstreamObserver | None = None) -> None:
        self.config = config
        self._headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        # One connection pool for every request to this model's upstreams. Upstream URLs are internal
        # addresses from the configuration: no proxy from the environment.
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(config.read_timeout, connect=config.connect_timeout),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=128),
            trust_env=False,
        )
        self.pool = UpstreamPool(config, self._client, self._headers, observer)
        self.info = ModelInfo(
            path=Path(),
            architecture="remote",
            name=config.upstream_model,
            context_length=config.context_length,
            parameters=0,
            quantization="",
            size_bytes=0,
            chat_template=None,
            metadata={"upstreams": ", ".join(config.upstreams)},
        )

    @property
    def context_length(self) -> int:
        return self.config.context_length

    async def tokenize(self, text: str) -> list[int]:
        raise EngineError("The remote engine has no tokenizer here; its upstream counts tokens.")

    @property
    def load(self) -> EngineLoad:
        return EngineLoad(self.pool.outstanding, 0, len(self.pool.upstreams))

    def generate(self, request: GenerationRequest) -> GenerationStream:
        if not request.is_text:
            raise EngineError("The remote engine needs the prompt as text or messages.")
        if request.sampling.logprobs is not None:
            raise InvalidRequestError(
                f"logprobs: not available for '{self.config.id}', a remote model; ask without logprobs."
            )
        self.pool.start_health_checks()
        path, body = request_body(self.config, request)
        deadline = None if request.sampling.max_time is None else time.monotonic() + request.sampling.max_time
        # Closing the stream closes the upstream connection, which cancels the upstream's generation.
        return GenerationStream(self._stream(path, body, deadline), lambda: None)

    async def _stream(
        self, path: str, body: dict[str, Any], deadline: float | None
    ) -> AsyncGenerator[GenerationChunk, None]:
        tried: set[Upstream] = set()
        reasons: list[str] = []
        while True:
            upstream = self.pool.pick(tried)
            if upstream is None:
                raise UpstreamUnavailableError(self._unavailable(reasons))
            tried.add(upstream)
            try:
                async with contextlib.aclosing(self._attempt(upstream, path, body, deadline)) as chunks:
                    async for chunk in chunks:
                        yield chunk
                return
            except StreamFailure as failure:  # only raised before the first token: try the next one
                logger.warning(
                    "%s: upstream %s failed before its first token: %s", *self._who(upstream), failure.reason
                )
                reasons.append(f"{upstream.name}: {failure.reason}")

    def _unavailable(self, reasons: list[str]) -> str:
        if not reasons:
            return (
                f"No upstream of '{self.config.id}' is available (all are down or failing); "
                "retry in a few seconds."
            )
        return f"Every upstream of '{self.config.id}' failed: {'; '.join(reasons)}. Retry in a few seconds."

    async def _attempt(
        self, upstream: Upstream, path: str, body: dict[str, Any], deadline: float | None
    ) -> AsyncGenerator[GenerationChunk, None]:
        """One try on one upstream. Raises StreamFailure while nothing was yielded, UpstreamError after."""
        self.pool.begin(upstream)
        outcome: Outcome = "cancelled"
        error: ErrorKind | None = None
        answered = False
        sent = time.monotonic()
        reader = StreamReader(chat=path == "/chat/completions")
        request_id = request_id_var.get()
        headers = {**self._headers, "X-Request-ID": request_id} if request_id != "-" else self._headers
        # A read waits at most until the deadline, so a stalled upstream cannot outlast max_time.
        read = self.config.read_timeout
        if deadline is not None:
            read = min(read, deadline - sent)
        timeout = httpx.Timeout(max(0.001, read), connect=self.config.connect_timeout)
        try:
            try:
                async with self._client.stream(
                    "POST", upstream.url + path, json=body, headers=headers, timeout=timeout
                ) as response:
                    if response.status_code in _REFUSED:
                        outcome = "refused"
                        detail = error_detail(await response.aread())
                        raise InvalidRequestError(
                            f"The upstream server refused the request ({response.status_code}): {detail}"
                        )
                    if response.status_code != 200:
                        detail = error_detail(await response.aread())
                        raise StreamFailure("status", f"HTTP {response.status_code}: {detail}")
                    async for line in response.aiter_lines():
                        text = reader.feed(line)
                        calls = reader.take_calls()
                        if text or calls:
                            if not answered:
                                self.pool.first_token(upstream, time.monotonic() - sent)
                                answered = True
                            yield GenerationChunk(text or "", 0, reader.events, tool_calls=calls)
                        if reader.done or (deadline is not None and time.monotonic() >= deadline):
                            break
            except httpx.TimeoutException as exc:
                if deadline is None or time.monotonic() < deadline:
                    raise StreamFailure("timeout", f"no answer in time ({type(exc).__name__})") from None
            except httpx.ConnectError as exc:
                raise StreamFailure("connect", f"cannot connect ({exc})") from None
            except httpx.HTTPError as exc:
                raise StreamFailure("stream", f"the connection broke ({type(exc).__name__}: {exc})") from None
            timed_out = reader.finish is None and deadline is not None and time.monotonic() >= deadline
            if reader.finish is None and not timed_out:
                raise StreamFailure("stream", "the upstream ended the stream before the answer was complete")
            outcome = "ok"
            answered = True
            yield GenerationChunk(
                reader.tail,
                reader.count("prompt_tokens", 0),
                reader.count("completion_tokens", reader.events),
                "time" if timed_out else reader.finish_reason(),
                cached_tokens=reader.cached_tokens(),
                tool_calls=reader.take_calls(),
            )
        except StreamFailure as failure:
            error = failure.kind
            if not answered:
                outcome = "error_before_first_token"
                raise
            outcome = "error_after_first_token"
            logger.warning("%s: upstream %s failed while answering: %s", *self._who(upstream), failure.reason)
            raise UpstreamError(
                f"The {upstream.name} of '{self.config.id}' failed while answering: {failure.reason}. "
                "The answer is incomplete; send the request again."
            ) from None
        finally:
            self.pool.end(upstream, outcome, error)

    def _who(self, upstream: Upstream) -> tuple[str, str]:
        return self.config.id, upstream.url

    async def close(self) -> None:
        await self.pool.close()
        await self._client.aclose()
