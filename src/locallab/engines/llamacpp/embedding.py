"""LlamaCppEmbedder: an embedding model (BERT and the like) on llama.cpp contexts in embeddings mode.

Workers, one thread and one context each on the same weights, read passes side by side: each pass
packs waiting inputs, of one request and of every request that arrived meanwhile, into one batch of
up to `batch_tokens` tokens and `max_sequences` sequences, the oldest first and the rest laid out in
whole attention tiles (packing.py); llama.cpp pools each sequence into a vector (the model's own
pooling, from its GGUF), which is L2-normalised here. The `threads` are shared out as cores: passes
side by side take one share each (two one-thread passes on two cores read 14% more sentences a second
than one two-thread pass: a small model's operations are too short to split well), and a pass with
nothing beside it and nothing waiting takes them all (the lowest latency for one short request). A
non-causal model reads a batch in one pass, so a single input must fit one batch: the batch is never
smaller than the model's context.
"""

from __future__ import annotations

import asyncio
import logging
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
MAX_WORKERS = 4  # contexts side by side; each holds its own compute buffer


class _Job:
    """One request's inputs; `vectors` fills in as its inputs are read, in whatever order the passes
    take them. Touched under the engine's lock only; `cancelled` is set by a caller that went away, or
    by a worker when a pass failed: a cancelled job's inputs leave the queue before the next pass.
    """

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

    def __init__(
        self, native: NativeModel, *, batch_tokens: int, max_sequences: int, max_queue: int, threads: int = 1
    ) -> None:
        self._native = native
        self.info = native.info
        n_embd_out = getattr(llama_cpp, "llama_model_n_embd_out", llama_cpp.llama_model_n_embd)
        self.dimensions = int(n_embd_out(native.model))
        self._batch_tokens = max(batch_tokens, native.n_ctx_seq)
        self._max_sequences = max_sequences
        self._max_queue = max_queue
        self._add_sep = bool(llama_cpp.llama_vocab_get_add_sep(native.vocab))
        self._state = threading.Condition()  # guards everything below up to `passes`
        self._pending: list[_Job] = []  # admitted requests not yet answered, oldest first
        self._waiting: list[tuple[_Job, int]] = []  # their inputs not in a pass yet, oldest first
        self._in_flight = 0
        self._closing = False
        self.passes = 0  # llama_decode calls so far
        self._threads = max(1, threads)
        self._free_cores = self._threads
        self._busy = 0  # workers reading a pass
        contexts = [native.ctx]
        while len(contexts) < min(self._threads, MAX_WORKERS):
            ctx = native.new_context()
            if ctx is None:
                logger.warning("llama.cpp made no further embedding context; %d worker(s)", len(contexts))
                break
            contexts.append(ctx)
        self._share = max(1, self._threads // len(contexts))  # cores of a pass beside others
        self._live = len(contexts)
        self._workers = [
            threading.Thread(
                target=self._run,
                args=(ctx, index),
                name=f"llama.cpp-embed:{self.info.name}:{index}",
                daemon=True,
            )
            for index, ctx in enumerate(contexts)
        ]
        for worker in self._workers:
            worker.start()

    @property
    def workers(self) -> int:
        return len(self._workers)

    @property
    def context_length(self) -> int:
        return self._native.n_ctx_seq

    @property
    def load(self) -> EngineLoad:
        active = len(self._pending)
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
        with self._state:
            if self._closing:
                raise EngineError("The model was unloaded while the request was waiting; send it again.")
            if self._in_flight >= 1 + self._max_queue:
                raise ServerBusyError(
                    f"The server is busy: {self._in_flight} embedding requests are waiting. Retry shortly."
                )
            self._in_flight += 1
            job = _Job(inputs, self.dimensions, asyncio.get_running_loop())
            self._pending.append(job)
            self._waiting.extend((job, index) for index in range(len(inputs)))
            self._state.notify_all()
        try:
            return await job.future
        finally:
            with self._state:
                job.cancelled = True  # a caller that went away frees the batch places of its inputs
                self._in_flight -= 1

    async def close(self) -> None:
        """Finish the requests already admitted, then free the model."""
        with self._state:
            self._closing = True
            self._state.notify_all()
        for worker in self._workers:
            await asyncio.to_thread(worker.join)

    # --- worker threads --------------------------------------------------------------------------

    def _run(self, ctx: Any, index: int) -> None:
        batch = llama_cpp.llama_batch_init(self._batch_tokens, 0, 1)
        state = self._state
        threads = 0  # the context's thread count, set before its first pass
        try:
            while True:
                with state:
                    placed, cores = self._next_pass(batch, index)
                if not placed:
                    return
                if threads != cores:
                    llama_cpp.llama_set_n_threads(ctx, cores, cores)
                    threads = cores
                rc = llama_cpp.llama_decode(ctx, batch)
                vectors = self._read_vectors(ctx, len(placed)) if rc == 0 else None
                with state:
                    self.passes += 1
                    self._free_cores += cores
                    self._busy -= 1
                    self._deliver(placed, vectors, rc)
                    state.notify_all()
        except BaseException as exc:  # never leave a waiting client hanging
            logger.exception("llama.cpp embedding worker crashed")
            error = EngineError(f"The llama.cpp embedding engine stopped: {exc}")
            with state:
                self._closing = True
                for job in self._pending:
                    job.settle(error)
                self._pending.clear()
                self._waiting.clear()
                state.notify_all()
        finally:
            llama_cpp.llama_batch_free(batch)
            with state:
                self._live -= 1
                last = self._live == 0
            if ctx is not self._native.ctx:
                llama_cpp.llama_free(ctx)
            if last:
                self._native.free()

    def _next_pass(self, batch: Any, index: int) -> tuple[list[tuple[_Job, int]], int]:
        """Under the lock: waits for inputs and a share of the cores, then fills `batch`. Returns the
        pass's inputs (sequence `k` of the batch is `placed[k]`) and its cores; ([], 0) to stop.

        Worker 0 takes a pass alone; the others join only beside a running pass. Were lone passes to
        go to whichever worker woke first, the OpenMP threads another worker's last pass left spinning
        would take cores from it: a one-sentence pass took 8.8 ms instead of 4.4."""
        while True:
            if any(job.cancelled for job in self._pending):
                self._pending[:] = [j for j in self._pending if not j.cancelled]
                self._waiting[:] = [w for w in self._waiting if not w[0].cancelled]
            if self._waiting and self._free_cores >= self._share and (index == 0 or self._busy):
                break
            if self._closing and not self._pending:
                return [], 0
            self._state.wait()
        placed = self._fill(batch, self._waiting)
        if self._waiting:
            self._state.notify()  # the rest for another worker
        alone = self._busy == 0 and not self._waiting
        cores = self._free_cores if alone else self._share
        self._free_cores -= cores
        self._busy += 1
        return placed, cores

    def _read_vectors(self, ctx: Any, count: int) -> Vectors:
        """The pass's pooled vectors, L2-normalised, in batch order."""
        out = np.empty((count, self.dimensions), dtype=np.float32)
        for seq_id in range(count):
            pointer = llama_cpp.llama_get_embeddings_seq(ctx, seq_id)
            if not pointer:
                raise EngineError("llama.cpp returned no pooled embedding; is this an embedding model?")
            out[seq_id] = np.ctypeslib.as_array(pointer, shape=(self.dimensions,))
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norms, out=out, where=norms > 0)
        return out

    def _deliver(self, placed: list[tuple[_Job, int]], vectors: Vectors | None, rc: int) -> None:
        """Under the lock: puts a pass's vectors into their requests and answers the complete ones."""
        if vectors is None:
            error = EngineError(f"llama.cpp failed to embed (code {rc}); the request was stopped.")
            for job in {id(j): j for j, _ in placed}.values():
                job.settle(error)
                job.cancelled = True  # its other inputs leave the queue at the next pass
            return
        for row, (job, index) in enumerate(placed):
            job.vectors[index] = vectors[row]
            job.done += 1
            if job.done == len(job.inputs):
                job.settle(job.vectors)
                if job in self._pending:
                    self._pending.remove(job)

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
        native, batch_tokens=batch_tokens, max_sequences=max_sequences, max_queue=max_queue, threads=threads
    )
