"""How the llama.cpp engine fills a decode step (no model needed)."""

from __future__ import annotations

import asyncio
import atexit
from types import SimpleNamespace
from typing import Any

from locallab.engines.base import GenerationRequest, SamplingParams
from locallab.engines.llamacpp.engine import LlamaCppEngine
from locallab.engines.llamacpp.kv_pool import Lane
from locallab.engines.llamacpp.sequence import Outbox, Sequence

_LOOP = asyncio.new_event_loop()  # never run: sequences here only need one to exist
atexit.register(_LOOP.close)


def _sequence(slot_id: int, prompt: list[int], *, decoding: bool) -> Sequence:
    request = GenerationRequest(prompt, SamplingParams(max_tokens=10))
    seq = Sequence(request, _LOOP, asyncio.Queue(), Outbox())
    seq.lane = Lane(slot_id, [])
    if decoding:
        seq.prompt_pos = seq.n_past = len(prompt)
        seq.next_token = 1000 + slot_id
        seq.tokens.append(seq.next_token)
        seq.has_next_token = True
    return seq


def _batch(size: int) -> Any:
    return SimpleNamespace(
        token=[0] * size, pos=[0] * size, n_seq_id=[0] * size, seq_id=[[0] for _ in range(size)],
        logits=[False] * size, n_tokens=0,
    )  # fmt: skip


def _fill(active: list[Sequence], budget: int) -> tuple[Any, list[tuple[Sequence, int]]]:
    engine = LlamaCppEngine.__new__(LlamaCppEngine)  # only the batch planning is exercised
    engine._batch_size = budget
    batch = _batch(64)
    return batch, engine._fill_batch(batch, engine._plan(active))


def test_batch_is_ordered_by_sequence_id_whatever_the_arrival_order() -> None:
    # llama.cpp decodes out-of-order sequence ids in several passes: the order must be by id
    active = [
        _sequence(3, [1, 2], decoding=True),
        _sequence(0, [1], decoding=True),
        _sequence(1, [7, 8, 9], decoding=False),
    ]
    batch, outputs = _fill(active, budget=16)
    ids = [batch.seq_id[i][0] for i in range(batch.n_tokens)]
    assert ids == sorted(ids) == [0, 1, 1, 1, 3]
    assert [seq.lane.seq_id for seq, _ in outputs] == [0, 1, 3]


def test_prompt_budget_goes_to_the_earliest_arrivals() -> None:
    first, second = (
        _sequence(5, list(range(10)), decoding=False),
        _sequence(2, list(range(10)), decoding=False),
    )
    batch, outputs = _fill([first, second], budget=12)
    assert (first.prompt_pos, second.prompt_pos) == (10, 2)
    assert outputs == [(first, batch.n_tokens - 1)]  # logits only where a prompt is complete
    assert [batch.pos[i] for i in range(batch.n_tokens) if batch.seq_id[i][0] == 2] == [0, 1]


def test_decoding_sequences_always_get_their_token() -> None:
    decoding = _sequence(4, [1, 2, 3], decoding=True)
    newcomer = _sequence(0, list(range(100)), decoding=False)
    batch, outputs = _fill([newcomer, decoding], budget=8)
    assert batch.n_tokens == 9
    assert outputs == [(decoding, 8)]
    assert batch.token[8] == 1004 and batch.pos[8] == 3
