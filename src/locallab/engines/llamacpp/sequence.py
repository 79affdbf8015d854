"""One generation in flight on the llama.cpp engine: its KV-cache slot, sampler chain and output stream."""

from __future__ import annotations

import asyncio
import ctypes
import time
from typing import Any

import llama_cpp

from locallab.engines.base import FinishReason, GenerationChunk, GenerationRequest, TokenLogprob
from locallab.engines.outbox import Outbox
from locallab.engines.text import StopMatcher, Utf8Stream


class Slot:
    """One KV-cache sequence of the context. Its cache outlives the request as a prompt cache."""

    def __init__(self, seq_id: int) -> None:
        self.seq_id = seq_id
        self.tokens: list[int] = []  # the tokens whose keys and values the cache holds, by position
        self.seq: Sequence | None = None

    def common_prefix(self, prompt: list[int]) -> int:
        n = 0
        for cached, wanted in zip(self.tokens, prompt, strict=False):
            if cached != wanted:
                break
            n += 1
        return n

    def truncate(self, keep: int, memory: Any) -> bool:
        """Drops cached positions from `keep` on; False (and an empty cache) when that is impossible."""
        if keep < len(self.tokens) and not llama_cpp.llama_memory_seq_rm(memory, self.seq_id, keep, -1):
            self.forget(memory)
            return False
        del self.tokens[keep:]
        return True

    def forget(self, memory: Any) -> None:
        llama_cpp.llama_memory_seq_rm(memory, self.seq_id, -1, -1)
        self.tokens.clear()

    def release(self) -> None:
        self.seq = None


class Sequence:
    """State of one request inside the engine thread. Only `cancelled` is touched from other threads."""

    def __init__(
        self,
        request: GenerationRequest,
        loop: asyncio.AbstractEventLoop,
        out: asyncio.Queue[Any],
        outbox: Outbox,
        grammar: str | None = None,
    ) -> None:
        self.request = request
        self.grammar = grammar
        self.loop = loop
        self.out = out
        self._outbox = outbox
        self.cancelled = False
        self.slot: Slot = _NO_SLOT
        self.cached_tokens = 0
        self.sampler: Any = None
        self.prompt_pos = 0  # prompt tokens already decoded into the KV cache
        self.n_past = 0  # positions filled in this sequence's KV cache
        self.next_token = -1  # sampled, not yet decoded
        self.completion_tokens = 0
        self.started = time.monotonic()
        self._utf8 = Utf8Stream()
        self._stops = StopMatcher(request.sampling.stop)
        self._logprobs: list[TokenLogprob] = []  # of tokens whose text has not been emitted yet

    def cancel(self) -> None:
        self.cancelled = True

    @property
    def prompt_tokens(self) -> list[int]:
        return self.request.prompt_tokens

    @property
    def prefilling(self) -> bool:
        return self.prompt_pos < len(self.request.prompt_tokens)

    def emit(self, item: GenerationChunk | BaseException) -> None:
        self._outbox.put(self.loop, self.out, item)

    def _chunk(self, text: str, finish: FinishReason | None = None) -> GenerationChunk:
        logprobs, self._logprobs = tuple(self._logprobs), []
        return GenerationChunk(
            text, len(self.prompt_tokens), self.completion_tokens, finish, self.cached_tokens, logprobs
        )

    def accept(self, piece: bytes, *, eog: bool, n_ctx_seq: int, logprob: TokenLogprob | None = None) -> bool:
        """Takes one sampled token's bytes; emits text; returns True when the sequence is finished."""
        params = self.request.sampling
        if eog:
            self.emit(self._chunk(self._stops.flush() + self._utf8.flush(), "stop"))
            return True
        self.completion_tokens += 1
        if logprob is not None:
            self._logprobs.append(logprob)
        text, stopped = self._stops.feed(self._utf8.feed(piece))
        if stopped:
            self.emit(self._chunk(text, "stop"))
            return True
        finish: FinishReason | None = None
        if self.completion_tokens >= params.max_tokens or self.n_past >= n_ctx_seq:
            finish = "length"
        elif params.max_time is not None and time.monotonic() - self.started >= params.max_time:
            finish = "time"
        if finish is not None:
            self.emit(self._chunk(text + self._stops.flush() + self._utf8.flush(), finish))
            return True
        if text:
            self.emit(self._chunk(text))
        return False

    def free_sampler(self) -> None:
        if self.sampler is not None:
            llama_cpp.llama_sampler_free(self.sampler)
            self.sampler = None


_NO_SLOT = Slot(-1)


def make_piece_buffer() -> ctypes.Array[ctypes.c_char]:
    return ctypes.create_string_buffer(256)
