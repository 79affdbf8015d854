"""What both local engines share: one engine thread that owns the model, admission of requests from the
event loop (a bounded queue, 503 beyond it), the stream of a sequence's chunks back to its request, and
the per-sequence bookkeeping of stop sequences and limits.

An engine subclasses `ThreadedEngine`, implements `_run` (the engine thread's loop) and calls
`_start_thread` at the end of its `__init__`; its sequences subclass `ThreadedSequence`.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import AsyncGenerator
from dataclasses import replace
from typing import Any, Generic, TypeVar

from locallab.engines.base import (
    EngineLoad,
    FinishReason,
    GenerationChunk,
    GenerationRequest,
    GenerationStream,
)
from locallab.engines.outbox import Outbox
from locallab.engines.text import StopMatcher
from locallab.errors import EngineError, ServerBusyError


class ThreadedSequence:
    """State of one request inside the engine thread. Only `cancelled` is touched from other threads."""

    def __init__(
        self,
        request: GenerationRequest,
        loop: asyncio.AbstractEventLoop,
        out: asyncio.Queue[Any],
        outbox: Outbox,
    ) -> None:
        self.request = request
        self.loop = loop
        self.out = out
        self._outbox = outbox
        self.cancelled = False
        self.n_past = 0  # positions filled in this sequence's KV cache
        self.next_token = -1  # sampled, not yet decoded
        self.completion_tokens = 0
        self.started = time.monotonic()
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

    def _flush_text(self) -> str:
        """Text the engine's decoder still holds back (an unfinished character)."""
        raise NotImplementedError

    def _end_of_turn(self) -> bool:
        """The model ended its turn: whatever text is held back goes out with finish_reason stop."""
        self.emit(self._chunk(self._stops.flush() + self._flush_text(), "stop"))
        return True

    def _settle(self, text: str, stopped: bool, *, context_full: bool) -> bool:
        """Emits the text of one accepted token, ending the sequence at a stop sequence, its token
        limit, a full context or its time limit. Returns True when the sequence is finished."""
        if stopped:
            self.emit(replace(self._chunk(text, "stop"), stop_sequence=self._stops.matched))
            return True
        params = self.request.sampling
        finish: FinishReason | None = None
        if self.completion_tokens >= params.max_tokens or context_full:
            finish = "length"
        elif params.max_time is not None and time.monotonic() - self.started >= params.max_time:
            finish = "time"
        if finish is not None:
            self.emit(self._chunk(text + self._stops.flush() + self._flush_text(), finish))
            return True
        if text:
            self.emit(self._chunk(text))
        return False


SequenceT = TypeVar("SequenceT", bound=ThreadedSequence)


class ThreadedEngine(Generic[SequenceT]):
    def __init__(self, *, parallel: int, max_queue: int) -> None:
        self._parallel = parallel
        self._max_queue = max_queue
        self._incoming: queue.Queue[SequenceT | None] = queue.Queue()
        self._admission = threading.Lock()
        self._in_flight = 0  # admitted and not yet released: generating or waiting
        self._active = 0  # generating now (written by the engine thread only)
        self._closing = False
        self._outbox = Outbox()  # written by the engine thread only
        self._thread: threading.Thread | None = None

    def _start_thread(self, name: str) -> None:
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        raise NotImplementedError

    @property
    def load(self) -> EngineLoad:
        active = self._active
        return EngineLoad(active=active, queued=max(0, self._in_flight - active), parallel=self._parallel)

    def _count_in(self) -> None:
        """Counts a new request in, or refuses it: the engine is closing, or every place is taken."""
        with self._admission:
            if self._closing:
                raise EngineError("The model was unloaded while the request was waiting; send it again.")
            if self._in_flight >= self._parallel + self._max_queue:
                raise ServerBusyError(
                    f"The server is busy: {self._parallel} requests are generating and {self._max_queue} "
                    "are waiting. Retry shortly."
                )
            self._in_flight += 1

    def _submit(self, seq: SequenceT) -> GenerationStream:
        """Hands an admitted sequence to the engine thread; its chunks come back through the stream."""
        self._incoming.put(seq)
        return GenerationStream(self._stream(seq), seq.cancel)

    async def _stream(self, seq: SequenceT) -> AsyncGenerator[GenerationChunk, None]:
        try:
            while True:
                item = await seq.out.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if item.finish_reason is not None:
                    return
        finally:
            seq.cancel()  # leaves the engine at the next step when the consumer went away early

    async def close(self) -> None:
        """Finish running generations, then stop the engine thread."""
        with self._admission:
            self._closing = True
        self._incoming.put(None)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)

    # --- engine thread ---------------------------------------------------------------------------

    def _drain_incoming(self, waiting: list[SequenceT], *, block: bool) -> None:
        try:
            item = self._incoming.get(block=block)
            while True:
                if item is not None:
                    waiting.append(item)
                item = self._incoming.get_nowait()
        except queue.Empty:
            pass

    def _finished(self, seq: SequenceT) -> None:
        with self._admission:
            self._in_flight -= 1
