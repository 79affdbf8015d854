"""LlamaCppEmbedder: an embedding model (BERT and the like) on a llama.cpp context in embeddings mode.

One thread owns the context. Each pass packs waiting inputs, of one request and of every request that
arrived meanwhile, into one batch of up to `batch_tokens` tokens and `max_sequences` sequences, the
oldest first and the rest laid out in whole attention tiles (packing.py); llama.cpp pools each
sequence into a vector (the model's own pooling, from its GGUF), which is L2-normalised here. A
non-causal model reads a batch in one pass, so a single input must fit one batch: the batch is never
smaller than the model's context.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np

from locallab.engines.base import EngineLoad, GenerationRequest, GenerationStream
from locallab.engines.llamacpp.native import NativeModel, load_native_model, tokenize
from locallab.engines.llamacpp.packing import LOOKAHEAD, plan_pass
from locallab.errors import EngineError, InvalidRequestError, ServerBusyError

logger = logging.getLogger(__name__)

Vectors = np.ndarray[Any, np.dtype[np.float32]]
INLINE_TOKENIZE_CHARS = 4096  # tokenizing 1,000 short sentences (50,000 characters) took 9 ms here


class _Job:
    """One request's inputs; `vectors` fills in as its inputs are read, in whatever order the passes
    take them. Touched by the engine thread only, except `cancelled` (set by a caller that went away,
    or by the engine when a pass failed): a cancelled job's inputs leave the queue at the next pass."""

    def __init__(self, inputs: list[list[int]], dimensions: int, loop: asyncio.AbstractEventLoop) -> None:
        self.inputs = inputs
        self.vectors: Vectors = np.zeros((len(inputs), dimensions), dtype=np.float32)
        self.loop = loop
        self.future: asyncio.Future[Vectors] = loop.create_future()
        self.done = 0
        self.cancelled = False

    def settle(self, outcome: Vectors | BaseException) -> None:
        def deliver() -> None:
            if self.future.done():
                return
            if isinstance(outcome, BaseException):
                self.future.set_exception(outcome)
            else:
                self.future.set_result(outcome)

        try:
            self.loop.call_soon_threadsafe(deliver)
        except RuntimeError:  # the event loop has closed: nobody is waiting any more
            pass


class LlamaCppEmbedder:
    engine_name = "llama.cpp"
    embeds = True

    def __init__(self, native: NativeModel, *, batch_tokens: int, max_sequences: int, max_queue: int) -> None:
        self._native = native
        self.info = native.info
        n_embd_out = getattr(llama_cpp, "llama_model_n_embd_out", llama_cpp.llama_model_n_embd)
        self.dimensions = int(n_embd_out(native.model))
        self._batch_tokens = max(batch_tokens, native.n_ctx_seq)
        self._max_sequences = max_sequences
        self._max_queue = max_queue
        self._add_sep = bool(llama_cpp.llama_vocab_get_add_sep(native.vocab))
        self._incoming: queue.Queue[_Job | None] = queue.Queue()
        self._admission = threading.Lock()
        self._in_flight = 0
        self._active = 0  # requests with inputs in the engine thread's hands (written by it only)
        self.passes = 0  # llama_decode calls so far (written by the engine thread only)
        self._closing = False
        self._thread = threading.Thread(
            target=self._run, name=f"llama.cpp-embed:{self.info.name}", daemon=True
        )
        self._thread.start()

    @property
    def context_length(self) -> int:
        return self._native.n_ctx_seq

    @property
    def load(self) -> EngineLoad:
        active = self._active
        return EngineLoad(active=active, queued=max(0, self._in_flight - active), parallel=1)

    async def tokenize(self, text: str) -> list[int]:
        return await asyncio.to_thread(tokenize, self._native.vocab, text, add_special=True)

    async def tokenize_many(self, texts: list[str]) -> list[list[int]]:
        """The tokens of every text with the model's start and separator tokens: in a worker thread,
        unless the texts are short enough (about 0.7 ms of work here) that the thread's round trip,
        two wake-ups that a busy machine delays by milliseconds, would cost more than it saves."""
        vocab = self._native.vocab

        def tokenize_all() -> list[list[int]]:
            return [tokenize(vocab, t, add_special=True) for t in texts]

        if sum(len(t) for t in texts) <= INLINE_TOKENIZE_CHARS:
            return tokenize_all()
        return await asyncio.to_thread(tokenize_all)

    def truncate(self, tokens: list[int], limit: int) -> list[int]:
        """The first `limit` tokens, keeping a closing separator token where the model adds one."""
        if len(tokens) <= limit:
            return tokens
        return tokens[: limit - 1] + tokens[-1:] if self._add_sep else tokens[:limit]

    def generate(self, request: GenerationRequest) -> GenerationStream:
        raise InvalidRequestError(
            f"model: '{self.info.name}' is an embedding model; it makes vectors (POST /v1/embeddings), "
            "not text. Ask a chat model instead (GET /models/available lists them)."
        )

    async def embed(self, inputs: list[list[int]]) -> Vectors:
        """One L2-normalised vector per input (rows in input order). Every input must fit the context."""
        if not inputs:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        limit = self.context_length
        bad = next((i for i, t in enumerate(inputs) if not 0 < len(t) <= limit), None)
        if bad is not None:
            raise InvalidRequestError(
                f"input[{bad}]: {len(inputs[bad])} tokens; the model reads 1 to {limit}."
            )
        with self._admission:
            if self._closing:
                raise EngineError("The model was unloaded while the request was waiting; send it again.")
            if self._in_flight >= 1 + self._max_queue:
                raise ServerBusyError(
                    f"The server is busy: {self._in_flight} embedding requests are waiting. Retry shortly."
                )
            self._in_flight += 1
            job = _Job(inputs, self.dimensions, asyncio.get_running_loop())
            self._incoming.put(job)
        try:
            return await job.future
        finally:
            job.cancelled = True  # a caller that went away frees the batch places of its inputs
            with self._admission:
                self._in_flight -= 1

    async def close(self) -> None:
        """Finish the requests already admitted, then free the model."""
        with self._admission:
            self._closing = True
        self._incoming.put(None)
        await asyncio.to_thread(self._thread.join)

    # --- engine thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        native = self._native
        batch = llama_cpp.llama_batch_init(self._batch_tokens, 0, 1)
        pending: list[_Job] = []  # admitted requests not yet answered, oldest first
        waiting: list[tuple[_Job, int]] = []  # their inputs not yet read, oldest first
        try:
            while True:
                if not pending:
                    self._active = 0
                    # Jobs are queued under the admission lock, so once closing nothing more arrives.
                    if self._closing and self._incoming.empty():
                        return
                    job = self._incoming.get()
                    if job is not None:
                        self._admit(job, pending, waiting)
                self._drain(pending, waiting)
                if any(j.cancelled for j in pending):
                    pending[:] = [j for j in pending if not j.cancelled]
                    waiting[:] = [w for w in waiting if not w[0].cancelled]
                self._active = len(pending)
                if not pending:
                    continue
                placed = self._fill(batch, waiting)
                rc = llama_cpp.llama_decode(native.ctx, batch)
                self.passes += 1
                if rc != 0:
                    error = EngineError(f"llama.cpp failed to embed (code {rc}); the request was stopped.")
                    failed = {id(j) for j, _ in placed}
                    for job in [j for j in pending if id(j) in failed]:
                        job.settle(error)
                        job.cancelled = True  # its other inputs leave the queue at the next pass
                    continue
                for seq_id, (job, index) in enumerate(placed):
                    pointer = llama_cpp.llama_get_embeddings_seq(native.ctx, seq_id)
                    if not pointer:
                        raise EngineError(
                            "llama.cpp returned no pooled embedding; is this an embedding model?"
                        )
                    vector = np.ctypeslib.as_array(pointer, shape=(self.dimensions,))
                    norm = float(np.linalg.norm(vector))
                    job.vectors[index] = vector / norm if norm > 0 else vector
                    job.done += 1
                    if job.done == len(job.inputs):
                        job.settle(job.vectors)
                        pending.remove(job)
        except BaseException as exc:  # never leave a waiting client hanging
            logger.exception("llama.cpp embedding thread crashed")
            error = EngineError(f"The llama.cpp embedding engine stopped: {exc}")
            for job in pending:
                job.settle(error)
            with self._admission:
                self._closing = True
            self._fail_waiting(error)
        finally:
            llama_cpp.llama_batch_free(batch)
            native.free()

    @staticmethod
    def _admit(job: _Job, pending: list[_Job], waiting: list[tuple[_Job, int]]) -> None:
        pending.append(job)
        waiting.extend((job, index) for index in range(len(job.inputs)))

    def _drain(self, pending: list[_Job], waiting: list[tuple[_Job, int]]) -> None:
        try:
            while True:
                job = self._incoming.get_nowait()
                if job is not None:
                    self._admit(job, pending, waiting)
        except queue.Empty:
            pass

    def _fail_waiting(self, error: EngineError) -> None:
        try:
            while True:
                job = self._incoming.get_nowait()
                if job is not None:
                    job.settle(error)
        except queue.Empty:
            pass

    def _fill(self, batch: Any, waiting: list[tuple[_Job, int]]) -> list[tuple[_Job, int]]:
        """Takes the next pass's inputs out of `waiting`: sequence `k` of the batch is `placed[k]`."""
        window = waiting[: self._max_sequences + LOOKAHEAD]
        lengths = [len(job.inputs[index]) for job, index in window]
        chosen = plan_pass(lengths, max_tokens=self._batch_tokens, max_sequences=self._max_sequences)
        placed = [window[i] for i in chosen]
        n = 0
        for seq_id, (job, index) in enumerate(placed):
            for pos, token in enumerate(job.inputs[index]):
                batch.token[n] = token
                batch.pos[n] = pos
                batch.n_seq_id[n] = 1
                batch.seq_id[n][0] = seq_id
                batch.logits[n] = True
                n += 1
        batch.n_tokens = n
        taken = set(chosen)
        waiting[: len(window)] = [w for i, w in enumerate(window) if i not in taken]
        return placed


def load_llamacpp_embedder(
    path: Path,
    *,
    context_length: int,
    threads: int,
    batch_tokens: int,
    max_sequences: int,
    max_queue: int = 64,
    probe: bool = False,
    memory_limit_mb: int = 0,
) -> LlamaCppEmbedder:
    """Blocking: call from a worker thread."""
    native = load_native_model(
        path,
        context_length=context_length,
        parallel=max_sequences,
        threads=threads,
        batch_size=batch_tokens,
        probe=probe,
        memory_limit_mb=memory_limit_mb,
        embeddings=True,
    )
    return LlamaCppEmbedder(
        native, batch_tokens=batch_tokens, max_sequences=max_sequences, max_queue=max_queue
    )
