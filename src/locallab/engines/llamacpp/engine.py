"""LlamaCppEngine: one thread owns the llama.cpp context and decodes every running sequence together.

Each step puts one token per decoding sequence and a chunk of prompt for newly admitted ones into a
single batch (continuous batching with chunked prefill), samples each sequence with its own chain, and
hands text to the request's asyncio queue thread-safely. A finished sequence frees its slot at once;
the slot's KV cache stays as a prompt cache until another request takes the slot.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import llama_cpp

from locallab.engines.base import (
    GenerationChunk,
    GenerationRequest,
    GenerationStream,
    ModelInfo,
)
from locallab.engines.llamacpp.native import NativeModel, load_native_model, token_bytes, tokenize
from locallab.engines.llamacpp.sampling import build_sampler, grammar_for, token_logprob
from locallab.engines.llamacpp.sequence import Sequence, Slot, make_piece_buffer
from locallab.engines.threaded import ThreadedEngine
from locallab.errors import EngineError

logger = logging.getLogger(__name__)


class LlamaCppEngine(ThreadedEngine[Sequence]):
    engine_name = "llama.cpp"

    def __init__(self, native: NativeModel, *, parallel: int, batch_size: int, max_queue: int) -> None:
        super().__init__(parallel=parallel, max_queue=max_queue)
        self._native = native
        self.info: ModelInfo = native.info
        self._batch_size = batch_size
        self._start_thread(f"llama.cpp:{native.info.name}")

    @property
    def context_length(self) -> int:
        return self._native.n_ctx_seq

    async def tokenize(self, text: str) -> list[int]:
        return await asyncio.to_thread(tokenize, self._native.vocab, text, add_special=True)

    def generate(self, request: GenerationRequest) -> GenerationStream:
        grammar = grammar_for(request.sampling)  # a schema it cannot enforce fails here, before admission
        self._count_in()
        out: asyncio.Queue[GenerationChunk | BaseException] = asyncio.Queue()
        return self._submit(Sequence(request, asyncio.get_running_loop(), out, self._outbox, grammar))

    # --- engine thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        native = self._native
        batch = llama_cpp.llama_batch_init(self._batch_size + self._parallel, 0, 1)
        memory = llama_cpp.llama_get_memory(native.ctx)
        piece_buf = make_piece_buffer()
        slots = [Slot(i) for i in range(self._parallel)]
        waiting: list[Sequence] = []
        active: list[Sequence] = []
        try:
            while True:
                idle = not active and not waiting
                if idle and self._closing and self._incoming.empty():
                    return
                self._drain_incoming(waiting, block=idle)
                for seq in [s for s in waiting if s.cancelled]:
                    waiting.remove(seq)
                    self._finished(seq)
                while waiting and any(slot.seq is None for slot in slots):
                    seq = waiting.pop(0)
                    try:
                        self._admit(seq, slots, memory)
                    except EngineError as exc:  # this request cannot run; the others go on
                        seq.emit(exc)
                        self._outbox.flush()
                        self._finished(seq)
                        continue
                    active.append(seq)
                for seq in [s for s in active if s.cancelled]:
                    self._release(seq, active)
                self._active = len(active)
                if not active:
                    continue
                outputs = self._fill_batch(batch, active)
                rc = llama_cpp.llama_decode(native.ctx, batch)
                if rc != 0:
                    error = EngineError(f"llama.cpp failed to decode (code {rc}); the request was stopped.")
                    for seq in list(active):
                        seq.emit(error)
                        seq.slot.forget(memory)  # its cache no longer matches its token list
                        self._release(seq, active)
                    self._outbox.flush()
                    continue
                for seq, index in outputs:
                    token = seq.sampler.sample(native.ctx, index)
                    eog = bool(llama_cpp.llama_vocab_is_eog(native.vocab, token))
                    piece = b"" if eog else token_bytes(native.vocab, token, piece_buf)
                    seq.next_token = token
                    logprob = None
                    if seq.request.sampling.logprobs is not None and not eog:
                        logprob = token_logprob(
                            native.ctx, index, native.n_vocab, token, piece, seq.request.sampling.logprobs,
                            lambda t: token_bytes(native.vocab, t, piece_buf),
                        )  # fmt: skip
                    if seq.accept(piece, eog=eog, n_ctx_seq=native.n_ctx_seq, logprob=logprob):
                        self._release(seq, active)
                self._outbox.flush()
                self._active = len(active)
        except BaseException as exc:  # never leave a waiting client hanging
            logger.exception("llama.cpp engine thread crashed")
            error = EngineError(f"The llama.cpp engine stopped: {exc}")
            for seq in active + waiting:
                seq.emit(error)
            self._outbox.flush()
            with self._admission:
                self._closing = True
        finally:
            llama_cpp.llama_batch_free(batch)
            for seq in active:
                seq.free_sampler()
            native.free()

    def _admit(self, seq: Sequence, slots: list[Slot], memory: Any) -> None:
        """Gives `seq` the free slot whose cached tokens share the longest prefix with its prompt.

        Without a shared prefix it takes the lowest free slot: llama.cpp decodes a batch in one pass
        only over consecutive sequence ids (with one KV cache per sequence), so busy slots are best
        kept together.
        """
        seq.sampler = build_sampler(
            seq.request.sampling, self._native.vocab, self._native.n_vocab, seq.prompt_tokens, seq.grammar
        )
        free = [slot for slot in slots if slot.seq is None]
        slot = max(free, key=lambda s: (s.common_prefix(seq.prompt_tokens), -s.seq_id))
        reuse = slot.common_prefix(seq.prompt_tokens)
        if reuse >= len(seq.prompt_tokens):
            reuse = len(seq.prompt_tokens) - 1  # the last prompt token is decoded again for its logits
        if not slot.truncate(reuse, memory):
            reuse = 0
        slot.seq = seq
        seq.slot = slot
        seq.prompt_pos = seq.n_past = seq.cached_tokens = reuse

    def _fill_batch(self, batch: Any, active: list[Sequence]) -> list[tuple[Sequence, int]]:
        """One token per decoding sequence, and prompt chunks within the budget in arrival order.

        A small prompt budget per step keeps running streams moving while newcomers are prefilled, and
        gives newcomers their first tokens one after another instead of all at the end of one big step.
        Tokens go into the batch ordered by sequence id: llama.cpp splits a batch whose sequence ids
        are out of order into several passes, and cannot reuse its compute graph between steps.
        """
        n = 0
        outputs: list[tuple[Sequence, int]] = []

        def add(seq: Sequence, token: int, logits: bool) -> None:
            nonlocal n
            batch.token[n] = token
            batch.pos[n] = seq.n_past
            batch.n_seq_id[n] = 1
            batch.seq_id[n][0] = seq.slot.seq_id
            batch.logits[n] = logits
            if logits:
                outputs.append((seq, n))
            seq.slot.tokens.append(token)
            seq.n_past += 1
            n += 1

        plan: list[tuple[Sequence, int]] = []  # (sequence, prompt tokens to read; 0: decode one token)
        budget = self._batch_size
        for seq in active:
            if not seq.prefilling:
                plan.append((seq, 0))
            elif budget > 0:
                take = min(budget, len(seq.prompt_tokens) - seq.prompt_pos)
                plan.append((seq, take))
                budget -= take
        plan.sort(key=lambda item: item[0].slot.seq_id)
        for seq, take in plan:
            if take == 0:
                add(seq, seq.next_token, True)
                continue
            last = len(seq.prompt_tokens) - 1
            for pos in range(seq.prompt_pos, seq.prompt_pos + take):
                add(seq, seq.prompt_tokens[pos], pos == last)
            seq.prompt_pos += take
        batch.n_tokens = n
        return outputs

    def _release(self, seq: Sequence, active: list[Sequence]) -> None:
        active.remove(seq)
        seq.slot.release()
        seq.free_sampler()
        self._finished(seq)


def load_llamacpp_engine(
    path: Path,
    *,
    context_length: int,
    parallel: int,
    threads: int,
    batch_size: int,
    max_queue: int = 64,
    probe: bool = False,
    memory_limit_mb: int = 0,
) -> LlamaCppEngine:
    """Blocking: call from a worker thread. `probe`: open the file in a child process first."""
    native = load_native_model(
        path,
        context_length=context_length,
        parallel=parallel,
        threads=threads,
        batch_size=batch_size,
        probe=probe,
        memory_limit_mb=memory_limit_mb,
    )
    return LlamaCppEngine(native, parallel=parallel, batch_size=batch_size, max_queue=max_queue)
