"""TransformersEngine: one thread owns the model and decodes every running sequence together.

Each step reads at most one newcomer's prompt (prefill, alone), lets it join the batch, then decodes
one token for every running sequence in a single forward pass over the left-padded batch cache
(`KVBatch`). Every sequence samples with its own `RowSampler`; text goes to the request's asyncio
queue through the Outbox, once per step.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import torch

from locallab.engines.base import GenerationChunk, GenerationRequest, GenerationStream, ModelInfo
from locallab.engines.threaded import ThreadedEngine
from locallab.engines.transformers.batch import KVBatch
from locallab.engines.transformers.sequence import Sequence
from locallab.errors import EngineError, InvalidRequestError

logger = logging.getLogger(__name__)


class HFModel:
    """A loaded model and tokenizer with what the engine needs to know about them."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        info: ModelInfo,
        *,
        device: torch.device,
        eos_ids: frozenset[int],
        context_length: int,
        stackable: bool,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.info = info
        self.device = device
        self.eos_ids = eos_ids
        self.context_length = context_length
        self.stackable = stackable
        self._lock = threading.Lock()  # a Rust tokenizer may refuse use from two threads at once

    def encode(self, text: str) -> list[int]:
        with self._lock:
            ids: list[int] = self.tokenizer(text, add_special_tokens=True)["input_ids"]
        return ids

    def decode(self, ids: Any) -> str:
        with self._lock:
            text: str = self.tokenizer.decode(list(ids), skip_special_tokens=True)
        return text


def refuse_unsupported(request: GenerationRequest) -> None:
    """Structured output, tool calls and log-probabilities are llama.cpp features; asking for them here
    is a 400."""
    params = request.sampling
    if params.call_grammar is not None:
        raise InvalidRequestError(
            "tools: the transformers engine cannot constrain decoding, so it cannot guarantee valid tool "
            "calls; use a GGUF model (llama.cpp engine) for tools, or send tool_choice 'none'."
        )
    if params.json_schema is not None or params.json_output:
        raise InvalidRequestError(
            "format / response_format: the transformers engine cannot constrain answers to JSON; "
            "use a GGUF model (llama.cpp engine) for structured output."
        )
    if params.logprobs is not None:
        raise InvalidRequestError(
            "logprobs: the transformers engine does not report log-probabilities; use a GGUF model."
        )


class TransformersEngine(ThreadedEngine[Sequence]):
    engine_name = "transformers"
    constrains_decoding = False

    def __init__(self, model: HFModel, *, parallel: int, max_queue: int) -> None:
        super().__init__(parallel=parallel, max_queue=max_queue)
        self._model = model
        self.info: ModelInfo = model.info
        # Models whose cache holds more than plain keys and values run one sequence at a time.
        self._slots = parallel if model.stackable else 1
        self._start_thread(f"transformers:{model.info.name}")

    @property
    def context_length(self) -> int:
        return self._model.context_length

    async def tokenize(self, text: str) -> list[int]:
        return await asyncio.to_thread(self._model.encode, text)

    def generate(self, request: GenerationRequest) -> GenerationStream:
        refuse_unsupported(request)
        self._count_in()
        out: asyncio.Queue[GenerationChunk | BaseException] = asyncio.Queue()
        seq = Sequence(
            request, asyncio.get_running_loop(), out, self._outbox, self._model.decode, self._model.device
        )
        return self._submit(seq)

    # --- engine thread ---------------------------------------------------------------------------

    @torch.inference_mode()
    def _run(self) -> None:
        batch = KVBatch(self._model.model, self._model.device)
        waiting: list[Sequence] = []
        active: list[Sequence] = []  # in batch row order
        try:
            while True:
                idle = not active and not waiting
                if idle and self._closing and self._incoming.empty():
                    return
                self._drain_incoming(waiting, block=idle)
                for seq in [s for s in waiting if s.cancelled]:
                    waiting.remove(seq)
                    self._finished(seq)
                self._drop(batch, active, [s for s in active if s.cancelled])
                if waiting and len(active) < self._slots:
                    self._prefill(batch, active, waiting)
                self._active = len(active)
                if active:
                    self._decode(batch, active)
                self._outbox.flush()
                self._active = len(active)
        except BaseException as exc:  # never leave a waiting client hanging
            logger.exception("transformers engine thread crashed")
            error = EngineError(f"The transformers engine stopped: {exc}")
            for seq in active + waiting:
                seq.emit(error)
            self._outbox.flush()
            with self._admission:
                self._closing = True
        finally:
            batch.keep([])
            if self._model.device.type == "cuda":
                torch.cuda.empty_cache()

    def _prefill(self, batch: KVBatch, active: list[Sequence], waiting: list[Sequence]) -> None:
        """Reads the first waiting prompt and samples its first token; it joins the batch if it goes on.

        The sequence leaves `waiting` only once it is settled, so a crash on the way still reaches it.
        """
        seq = waiting[0]
        model = self._model
        try:
            logits, cache = batch.prefill(seq.prompt_tokens)
        except (RuntimeError, ValueError, IndexError) as exc:  # this request cannot run; the others go on
            waiting.pop(0)
            logger.warning("prefill failed: %s", exc)
            seq.emit(EngineError(f"The model failed to read the prompt: {exc}"))
            self._finished(seq)
            return
        seq.n_past = len(seq.prompt_tokens)
        token = seq.sampler.sample(logits)
        done = seq.accept(token, eos=token in model.eos_ids, context_length=model.context_length)
        if not done:
            batch.join(cache, seq.n_past)
        waiting.pop(0)
        if done:
            self._finished(seq)
        else:
            active.append(seq)

    def _decode(self, batch: KVBatch, active: list[Sequence]) -> None:
        """One token for every running sequence, in one forward pass."""
        model = self._model
        logits = batch.step([s.next_token for s in active], [s.n_past for s in active])
        done: list[Sequence] = []
        for row, seq in enumerate(active):
            seq.n_past += 1
            token = seq.sampler.sample(logits[row])
            if seq.accept(token, eos=token in model.eos_ids, context_length=model.context_length):
                done.append(seq)
        self._drop(batch, active, done)

    def _drop(self, batch: KVBatch, active: list[Sequence], leaving: list[Sequence]) -> None:
        if not leaving:
            return
        batch.keep([row for row, seq in enumerate(active) if seq not in leaving])
        for seq in leaving:
            active.remove(seq)
            self._finished(seq)
