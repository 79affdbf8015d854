"""One generation in flight on the llama.cpp engine: its KV-cache slot, sampler chain and output stream."""

from __future__ import annotations

import asyncio
import ctypes
from typing import Any

import llama_cpp

from locallab.engines.base import FinishReason, GenerationChunk, GenerationRequest, TokenLogprob
from locallab.engines.outbox import Outbox
from locallab.engines.text import Utf8Stream
from locallab.engines.threaded import ThreadedSequence


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


class Sequence(ThreadedSequence):
    """One request on the llama.cpp engine: its KV-cache slot, sampler chain, grammar and logprobs."""

    def __init__(
        self,
        request: GenerationRequest,
        loop: asyncio.AbstractEventLoop,
        out: asyncio.Queue[Any],
        outbox: Outbox,
        grammar: str | None = None,
    ) -> None:
        super().__init__(request, loop, out, outbox)
        self.grammar = grammar
        self.slot: Slot = _NO_SLOT
        self.cached_tokens = 0
        self.sampler: Any = None
        self.prompt_pos = 0  # prompt tokens already decoded into the KV cache
        self._utf8 = Utf8Stream()
        self._logprobs: list[TokenLogprob] = []  # of tokens whose text has not been emitted yet

    @property
    def prefilling(self) -> bool:
        return self.prompt_pos < len(self.request.prompt_tokens)

    def _chunk(self, text: str, finish: FinishReason | None = None) -> GenerationChunk:
        logprobs, self._logprobs = tuple(self._logprobs), []
        return GenerationChunk(
            text, len(self.prompt_tokens), self.completion_tokens, finish, self.cached_tokens, logprobs
        )

    def _flush_text(self) -> str:
        return self._utf8.flush()

    def accept(self, piece: bytes, *, eog: bool, n_ctx_seq: int, logprob: TokenLogprob | None = None) -> bool:
        """Takes one sampled token's bytes; emits text; returns True when the sequence is finished."""
        if eog:
            return self._end_of_turn()
        self.completion_tokens += 1
        if logprob is not None:
            self._logprobs.append(logprob)
        text, stopped = self._stops.feed(self._utf8.feed(piece))
        return self._settle(text, stopped, context_full=self.n_past >= n_ctx_seq)

    def free_sampler(self) -> None:
        if self.sampler is not None:
            self.sampler.free()
            self.sampler = None


_NO_SLOT = Slot(-1)


def make_piece_buffer() -> ctypes.Array[ctypes.c_char]:
    return ctypes.create_string_buffer(256)
