"""FakeEngine: a scripted engine for tests of everything above the engine layer.

It is a real implementation of the Engine protocol — text handling, stop sequences, limits and
cancellation behave as in the llama.cpp engine — but its tokens come from a script instead of a model.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from locallab.engines.base import (
    EngineLoad,
    FinishReason,
    GenerationChunk,
    GenerationRequest,
    GenerationStream,
    ModelInfo,
    Vectors,
)
from locallab.engines.text import StopMatcher, Utf8Stream
from locallab.errors import EngineError, InvalidRequestError, ServerBusyError

CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def fake_model_info(name: str = "fake", *, chat_template: str | None = CHATML_TEMPLATE) -> ModelInfo:
    return ModelInfo(
        path=Path(f"/models/{name}.gguf"),
        architecture="fake",
        name=name,
        context_length=2048,
        parameters=1000,
        quantization="F32",
        size_bytes=1234,
        chat_template=chat_template,
        eos_token="<|im_end|>",
    )


@dataclass
class _Request:
    finished: bool = False
    released: bool = False


class FakeEngine:
    """Yields `pieces` (bytes per token) in order; prompt tokens are the prompt's characters.

    With `pieces=None` it echoes the prompt, one character a token, so that tests can tell concurrent
    streams apart. `parallel` requests run at once; past `parallel + max_queue` it answers busy.
    """

    engine_name = "fake"

    def __init__(
        self,
        pieces: Sequence[bytes] | None = (b"Hello", b",", b" world", b"!"),
        *,
        info: ModelInfo | None = None,
        context_length: int = 2048,
        delay: float = 0.0,
        fail_after: int | None = None,
        parallel: int = 4,
        max_queue: int = 4,
    ) -> None:
        self.info = info or fake_model_info()
        self.pieces = None if pieces is None else list(pieces)
        self.delay = delay
        self.fail_after = fail_after
        self.parallel = parallel
        self.max_queue = max_queue
        self.in_flight = 0
        self.cancelled = 0
        self.requests: list[GenerationRequest] = []
        self.prompts: list[str] = []
        self.active = 0
        self.closed = False
        self._context_length = context_length

    @property
    def context_length(self) -> int:
        return self._context_length

    async def tokenize(self, text: str) -> list[int]:
        self.prompts.append(text)
        return [ord(c) for c in text]

    @property
    def load(self) -> EngineLoad:
        return EngineLoad(self.active, self.in_flight - self.active, self.parallel)

    def generate(self, request: GenerationRequest) -> GenerationStream:
        if self.in_flight >= self.parallel + self.max_queue:
            raise ServerBusyError("The fake engine is busy.")
        self.in_flight += 1
        self.requests.append(request)
        state = _Request()

        def cancel() -> None:
            if not state.released:
                state.released = True
                self.in_flight -= 1
                if not state.finished:
                    self.cancelled += 1

        return GenerationStream(self._stream(request, state, cancel), cancel)

    async def _stream(
        self, request: GenerationRequest, state: _Request, release: Callable[[], None]
    ) -> AsyncGenerator[GenerationChunk, None]:
        params = request.sampling
        utf8, stops = Utf8Stream(), StopMatcher(params.stop)
        n_prompt, started = len(request.prompt_tokens), time.monotonic()
        pieces = self.pieces
        if pieces is None:
            pieces = [chr(t).encode() for t in request.prompt_tokens]
        running = False
        try:
            while self.active >= self.parallel:  # waits in the queue for a free slot
                await asyncio.sleep(0.001)
            self.active += 1
            running = True
            for i, piece in enumerate(pieces):
                if self.fail_after is not None and i >= self.fail_after:
                    raise EngineError("The fake engine failed as scripted.")
                if self.delay:
                    await asyncio.sleep(self.delay)
                n = i + 1
                text, stopped = stops.feed(utf8.feed(piece))
                finish: FinishReason | None = None
                if stopped:
                    finish = "stop"
                elif n >= params.max_tokens or n_prompt + n >= self._context_length:
                    finish = "length"
                elif params.max_time is not None and time.monotonic() - started >= params.max_time:
                    finish = "time"
                if finish is not None:
                    tail = "" if stopped else stops.flush() + utf8.flush()
                    state.finished = True
                    yield GenerationChunk(text + tail, n_prompt, n, finish, stop_sequence=stops.matched)
                    return
                if text:
                    yield GenerationChunk(text, n_prompt, n)
            state.finished = True
            yield GenerationChunk(stops.flush() + utf8.flush(), n_prompt, len(pieces), "stop")
        finally:
            if running:
                self.active -= 1
            release()

    async def close(self) -> None:
        self.closed = True


class FakeEmbedder:
    """An embedding engine for tests above the engine layer: a text's tokens are its words (plus a
    start and an end token) and its vector is a normalised bag of hashed words, so equal texts get
    equal vectors and texts sharing words lie close together."""

    engine_name = "fake"
    embeds = True

    def __init__(self, name: str = "fake-embed", *, dimensions: int = 8, context_length: int = 16) -> None:
        self.info = fake_model_info(name, chat_template=None)
        self.dimensions = dimensions
        self._context_length = context_length
        self._words: dict[str, int] = {}
        self.calls: list[int] = []  # inputs per embed() call
        self.closed = False

    @property
    def context_length(self) -> int:
        return self._context_length

    @property
    def load(self) -> EngineLoad:
        return EngineLoad(active=0, queued=0, parallel=1)

    async def tokenize(self, text: str) -> list[int]:
        return [1, *(self._words.setdefault(w, len(self._words) + 3) for w in text.lower().split()), 2]

    async def tokenize_many(self, texts: list[str]) -> list[list[int]]:
        return [await self.tokenize(t) for t in texts]

    def truncate(self, tokens: list[int], limit: int) -> list[int]:
        return tokens if len(tokens) <= limit else tokens[: limit - 1] + tokens[-1:]

    def generate(self, request: GenerationRequest) -> GenerationStream:
        raise InvalidRequestError(f"model: '{self.info.name}' is an embedding model; it makes no text.")

    async def embed(self, inputs: list[list[int]]) -> Vectors:
        self.calls.append(len(inputs))
        vectors = np.zeros((len(inputs), self.dimensions), dtype=np.float32)
        for row, tokens in enumerate(inputs):
            for token in tokens[1:-1] or tokens:
                vectors[row, token % self.dimensions] += 1.0
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors

    async def close(self) -> None:
        self.closed = True
