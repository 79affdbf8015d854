"""One generation in flight on the llama.cpp engine: its KV-pool lane, sampler chain and output stream."""

from __future__ import annotations

import asyncio
import ctypes
from typing import Any

from locallab.engines.base import FinishReason, GenerationChunk, GenerationRequest, TokenLogprob
from locallab.engines.llamacpp.kv_pool import Lane
from locallab.engines.outbox import Outbox
from locallab.engines.text import Utf8Stream
from locallab.engines.threaded import ThreadedSequence


class Sequence(ThreadedSequence):
    """One request on the llama.cpp engine: its KV-pool lane, sampler chain, grammar and logprobs.

    `tokens` is what its lane must hold: the prompt, then every sampled token. A preempted sequence
    loses its lane and later reads `tokens` again as its prompt (`prompt_pos` back to the cached
    prefix); its sampler chain, text decoder and stop matcher are kept, so its stream goes on as if
    nothing happened.
    """

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
        self.lane: Lane = _NO_LANE
        self.cached_tokens = 0
        self.sampler: Any = None
        self.tokens = list(request.prompt_tokens)
        self.prompt_pos = 0  # of `tokens`, already decoded into the KV cache (or shared from the pool)
        self.has_next_token = False  # sampled (last of `tokens`), to be decoded in the next step
        self.preemptions = 0
        self.order = 0  # arrival number: the newest running sequence is preempted first
        self.fresh = False  # deterministic mode: its prompt is read alone from an idle server's pool
        self.answer: Any = None  # logits kept for its whole prompt: its first token comes from them
        self._utf8 = Utf8Stream()
        self._logprobs: list[TokenLogprob] = []  # of tokens whose text has not been emitted yet

    @property
    def prefilling(self) -> bool:
        return not self.has_next_token

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


_NO_LANE = Lane(-1, [])


def make_piece_buffer() -> ctypes.Array[ctypes.c_char]:
    return ctypes.create_string_buffer(256)
