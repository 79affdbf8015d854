"""LlamaCppEngine: one thread owns the llama.cpp context and decodes every running sequence together.

Each step puts one token per decoding sequence and a chunk of prompt for newly admitted ones into a
single batch (continuous batching with chunked prefill), samples each sequence with its own chain, and
hands text to the request's asyncio queue thread-safely.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import llama_cpp

from locallab.engines.base import GenerationChunk, GenerationRequest, ModelInfo
from locallab.engines.llamacpp.native import NativeModel, load_native_model, token_bytes, tokenize
from locallab.engines.llamacpp.sequence import Sequence, build_sampler, make_piece_buffer
from locallab.errors import EngineError

logger = logging.getLogger(__name__)


class LlamaCppEngine:
    engine_name = "llama.cpp"

    def __init__(self, native: NativeModel, *, parallel: int, batch_size: int) -> None:
        self._native = native
        self.info: ModelInfo = native.info
        self._parallel = parallel
        self._batch_size = batch_size
        self._incoming: queue.Queue[Sequence | None] = queue.Queue()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name=f"llama.cpp:{native.info.name}", daemon=True)
        self._thread.start()

    @property
    def context_length(self) -> int:
        return self._native.n_ctx_seq

    @property
    def parallel(self) -> int:
        return self._parallel

    async def tokenize(self, text: str) -> list[int]:
        return await asyncio.to_thread(tokenize, self._native.vocab, text, add_special=True)

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationChunk, None]:
        if self._closing:
            raise EngineError("The model was unloaded while the request was waiting; send it again.")
        out: asyncio.Queue[GenerationChunk | BaseException] = asyncio.Queue()
        seq = Sequence(request, asyncio.get_running_loop(), out)
        self._incoming.put(seq)
        try:
            while True:
                item = await out.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if item.finish_reason is not None:
                    return
        finally:
            seq.cancelled = True  # frees the slot at the next step when the consumer went away early

    async def close(self) -> None:
        self._closing = True
        self._incoming.put(None)
        await asyncio.to_thread(self._thread.join)

    # --- engine thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        native = self._native
        batch = llama_cpp.llama_batch_init(self._batch_size + self._parallel, 0, 1)
        memory = llama_cpp.llama_get_memory(native.ctx)
        piece_buf = make_piece_buffer()
        free_ids = list(range(self._parallel))
        waiting: list[Sequence] = []
        active: list[Sequence] = []
        try:
            while True:
                block = not active and not waiting
                if block and self._closing and self._incoming.empty():
                    return
                self._drain_incoming(waiting, block=block)
                while waiting and free_ids:
                    seq = waiting.pop(0)
                    if seq.cancelled:
                        continue
                    seq.seq_id = free_ids.pop(0)
                    seq.sampler = build_sampler(seq.request.sampling, native.n_vocab, seq.prompt_tokens)
                    active.append(seq)
                for seq in [s for s in active if s.cancelled]:
                    self._release(seq, active, free_ids, memory)
                if not active:
                    continue
                outputs = self._fill_batch(batch, active)
                rc = llama_cpp.llama_decode(native.ctx, batch)
                if rc != 0:
                    error = EngineError(f"llama.cpp failed to decode (code {rc}); the request was stopped.")
                    for seq in list(active):
                        seq.emit(error)
                        self._release(seq, active, free_ids, memory)
                    continue
                for seq, index in outputs:
                    token = llama_cpp.llama_sampler_sample(seq.sampler, native.ctx, index)
                    eog = bool(llama_cpp.llama_vocab_is_eog(native.vocab, token))
                    piece = b"" if eog else token_bytes(native.vocab, token, piece_buf)
                    seq.next_token = token
                    if seq.accept(piece, eog=eog, n_ctx_seq=native.n_ctx_seq):
                        self._release(seq, active, free_ids, memory)
        except BaseException as exc:  # never leave a waiting client hanging
            logger.exception("llama.cpp engine thread crashed")
            error = EngineError(f"The llama.cpp engine stopped: {exc}")
            for seq in active + waiting:
                seq.emit(error)
            self._closing = True
        finally:
            llama_cpp.llama_batch_free(batch)
            for seq in active:
                seq.free_sampler()
            native.free()

    def _drain_incoming(self, waiting: list[Sequence], *, block: bool) -> None:
        try:
            item = self._incoming.get(block=block)
            while True:
                if item is not None:
                    waiting.append(item)
                item = self._incoming.get_nowait()
        except queue.Empty:
            pass

    def _fill_batch(self, batch: Any, active: list[Sequence]) -> list[tuple[Sequence, int]]:
        """One token per decoding sequence first, then prompt chunks within what the batch has left."""
        n = 0
        outputs: list[tuple[Sequence, int]] = []

        def add(seq: Sequence, token: int, logits: bool) -> None:
            nonlocal n
            batch.token[n] = token
            batch.pos[n] = seq.n_past
            batch.n_seq_id[n] = 1
            batch.seq_id[n][0] = seq.seq_id
            batch.logits[n] = logits
            if logits:
                outputs.append((seq, n))
            seq.n_past += 1
            n += 1

        for seq in active:
            if not seq.prefilling:
                add(seq, seq.next_token, True)
        budget = self._batch_size
        for seq in active:
            if not seq.prefilling or budget <= 0:
                continue
            take = min(budget, len(seq.prompt_tokens) - seq.prompt_pos)
            for i in range(take):
                pos = seq.prompt_pos + i
                add(seq, seq.prompt_tokens[pos], pos == len(seq.prompt_tokens) - 1)
            seq.prompt_pos += take
            budget -= take
        batch.n_tokens = n
        return outputs

    @staticmethod
    def _release(seq: Sequence, active: list[Sequence], free_ids: list[int], memory: Any) -> None:
        active.remove(seq)
        llama_cpp.llama_memory_seq_rm(memory, seq.seq_id, -1, -1)
        free_ids.append(seq.seq_id)
        seq.free_sampler()


def load_llamacpp_engine(
    path: Path, *, context_length: int, parallel: int, threads: int, batch_size: int
) -> LlamaCppEngine:
    """Blocking: call from a worker thread."""
    native = load_native_model(
        path, context_length=context_length, parallel=parallel, threads=threads, batch_size=batch_size
    )
    return LlamaCppEngine(native, parallel=parallel, batch_size=batch_size)
