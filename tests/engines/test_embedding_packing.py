"""Planning an embedding pass: the oldest input first, whole inputs per attention tile of 64 tokens,
and the pass's limits kept."""

from __future__ import annotations

import random

from locallab.engines.llamacpp.packing import TILE, plan_pass


def straddles(lengths: list[int], order: list[int]) -> int:
    """How many inputs of a pass laid out in `order` cross a tile boundary."""
    crossings, position = 0, 0
    for index in order:
        end = position + lengths[index]
        crossings += (end - 1) // TILE != position // TILE
        position = end
    return crossings


def test_inputs_are_laid_out_in_whole_tiles_when_lengths_allow() -> None:
    lengths = [20, 30, 14, 44, 20]
    order = plan_pass(lengths, max_tokens=512, max_sequences=16)
    assert order == [0, 1, 2, 3, 4]  # 20+30+14 fills the first tile, 44+20 the second
    scrambled = [20, 30, 44, 14, 20]
    order = plan_pass(scrambled, max_tokens=512, max_sequences=16)
    assert order == [0, 2, 1, 3, 4]  # 20+44, then 30+14+20
    assert straddles(scrambled, order) == 0
    assert straddles(scrambled, [0, 1, 2, 3, 4]) == 1  # what packing in arrival order would do


def test_the_oldest_input_always_goes_first() -> None:
    rng = random.Random(7)
    for _ in range(200):
        lengths = [rng.randint(1, 90) for _ in range(rng.randint(1, 60))]
        order = plan_pass(lengths, max_tokens=512, max_sequences=16)
        assert order[0] == 0


def test_a_pass_keeps_its_token_and_sequence_limits() -> None:
    rng = random.Random(11)
    for _ in range(200):
        lengths = [rng.randint(1, 70) for _ in range(rng.randint(1, 80))]
        max_tokens, max_sequences = rng.choice([128, 256, 512]), rng.randint(1, 32)
        order = plan_pass(lengths, max_tokens=max_tokens, max_sequences=max_sequences)
        assert len(order) == len(set(order)) <= max_sequences
        assert sum(lengths[i] for i in order) <= max_tokens


def test_every_input_is_placed_within_as_many_passes_as_inputs_ahead_of_it() -> None:
    rng = random.Random(3)
    waiting = list(enumerate(rng.randint(5, 40) for _ in range(300)))
    passes_waited = {}
    passes = 0
    while waiting:
        order = plan_pass([length for _, length in waiting], max_tokens=256, max_sequences=16)
        passes += 1
        taken = set(order)
        for i in order:
            passes_waited[waiting[i][0]] = passes
        waiting = [w for i, w in enumerate(waiting) if i not in taken]
    assert sorted(passes_waited) == list(range(300))
    assert all(passes_waited[k] <= k + 1 for k in passes_waited)  # the oldest is never passed over


def test_short_sentences_straddle_far_less_than_in_arrival_order() -> None:
    rng = random.Random(5)
    lengths = [rng.randint(12, 18) for _ in range(64)]  # a batch of short sentences, with their markers
    planned = arrival = 0
    waiting = list(range(64))
    while waiting:
        order = plan_pass([lengths[i] for i in waiting], max_tokens=512, max_sequences=16)
        chosen = [waiting[i] for i in order]
        planned += straddles(lengths, chosen)
        arrival += straddles(lengths, sorted(chosen))
        waiting = [w for w in waiting if w not in chosen]
    assert planned * 3 <= arrival


def test_an_input_longer_than_a_tile_starts_on_a_tile_boundary_and_others_close_its_last_tile() -> None:
    lengths = [100, 10, 20, 8]
    order = plan_pass(lengths, max_tokens=512, max_sequences=16)
    assert order[0] == 0 and sorted(order) == [0, 1, 2, 3]
    assert straddles(lengths, order) == 1  # only the long one, which cannot help it
