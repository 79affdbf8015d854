"""One generation in flight on the transformers engine: its sampler, text stream and limits."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import torch

from locallab.engines.base import FinishReason, GenerationChunk, GenerationRequest
from locallab.engines.outbox import Outbox
from locallab.engines.text import StopMatcher
from locallab.engines.transformers.detokenize import Decode, IncrementalDetokenizer
from locallab.engines.transformers.sampling import RowSampler


class Sequence:
    """State of one request inside the engine thread. Only `cancelled` is touched from other threads."""

    def __init__(
        self,
        request: GenerationRequest,
        loop: asyncio.AbstractEventLoop,
        out: asyncio.Queue[Any],
        outbox: Outbox,
        decode: Decode,
        device: torch.device,
    ) -> None:
        self.request = request
        self.loop = loop
        self.out = out
        self._outbox = outbox
        self.cancelled = False
        self.sampler = RowSampler(request.sampling, request.prompt_tokens, device)
        self.n_past = 0  # tokens in this sequence's KV cache
        self.next_token = -1  # sampled, not yet decoded
        self.completion_tokens = 0
        self.started = time.monotonic()
        self._text = IncrementalDetokenizer(decode)
        self._stops = StopMatcher(request.sampling.stop)

    def cancel(self) -> None:
        self.cancelled = True

    @property
    def prompt_tokens(self) -> list[int]:
        return self.request.prompt_tokens

    def emit(self, item: GenerationChunk | BaseException) -> None:
        self._outbox.put(self.loop, self.out, item)

    def _chunk(self, text: str, finish: FinishReason | None = None) -> GenerationChunk:
        return GenerationChunk(text, len(self.prompt_tokens), self.completion_tokens, finish)

    def accept(self, token: int, *, eos: bool, context_length: int) -> bool:
        """Takes one sampled token; emits text; returns True when the sequence is finished."""
        params = self.request.sampling
        if eos:
            self.emit(self._chunk(self._stops.flush() + self._text.flush(), "stop"))
            return True
        self.completion_tokens += 1
        self.next_token = token
        self.sampler.accept(token)
        text, stopped = self._stops.feed(self._text.feed(token))
        if stopped:
            self.emit(self._chunk(text, "stop"))
            return True
        finish: FinishReason | None = None
        if self.completion_tokens >= params.max_tokens or self.n_past + 1 >= context_length:
            finish = "length"
        elif params.max_time is not None and time.monotonic() - self.started >= params.max_time:
            finish = "time"
        if finish is not None:
            self.emit(self._chunk(text + self._stops.flush() + self._text.flush(), finish))
            return True
        if text:
            self.emit(self._chunk(text))
        return False
