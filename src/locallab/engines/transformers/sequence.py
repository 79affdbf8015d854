"""One generation in flight on the transformers engine: its sampler, text stream and limits."""

from __future__ import annotations

import asyncio
from typing import Any

import torch

from locallab.engines.base import GenerationRequest
from locallab.engines.outbox import Outbox
from locallab.engines.threaded import ThreadedSequence
from locallab.engines.transformers.detokenize import Decode, IncrementalDetokenizer
from locallab.engines.transformers.sampling import RowSampler


class Sequence(ThreadedSequence):
    """One request on the transformers engine: its row sampler and incremental detokenizer."""

    def __init__(
        self,
        request: GenerationRequest,
        loop: asyncio.AbstractEventLoop,
        out: asyncio.Queue[Any],
        outbox: Outbox,
        decode: Decode,
        device: torch.device,
    ) -> None:
        super().__init__(request, loop, out, outbox)
        self.sampler = RowSampler(request.sampling, request.prompt_tokens, device)
        self._text = IncrementalDetokenizer(decode)

    def _flush_text(self) -> str:
        return self._text.flush()

    def accept(self, token: int, *, eos: bool, context_length: int) -> bool:
        """Takes one sampled token; emits text; returns True when the sequence is finished."""
        if eos:
            return self._end_of_turn()
        self.completion_tokens += 1
        self.next_token = token
        self.sampler.accept(token)
        text, stopped = self._stops.feed(self._text.feed(token))
        return self._settle(text, stopped, context_full=self.n_past + 1 >= context_length)
