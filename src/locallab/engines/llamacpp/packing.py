"""Which waiting embedding inputs share the next llama.cpp pass, and in what order.

llama.cpp's CPU flash attention reads a pass in tiles of 64 queries by 64 keys and skips a tile only
when the mask hides all of it. Inputs packed back to back straddle tile boundaries, so each tile of
queries meets two or three tiles of keys; inputs laid out so that every tile of 64 tokens holds whole
inputs meet one. Measured here on all-MiniLM-L6-v2 (one thread, CPU time per token of a pass of
256-512 tokens): 261-267 us laid out in whole tiles against 277-283 us packed back to back. A
partly filled last tile also costs about as much as a full one.

So a pass is planned tile by tile: the oldest waiting input first (nothing waits behind newer inputs
for more than one pass), then the newer inputs, of those waiting, that fill the tile exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

TILE = 64  # GGML_FA_TILE_Q and GGML_FA_TILE_KV in llama.cpp's CPU backend
LOOKAHEAD = 64  # waiting inputs considered for filling a tile: bounds the planning cost


def plan_pass(lengths: Sequence[int], *, max_tokens: int, max_sequences: int) -> list[int]:
    """Indices into `lengths` (waiting inputs, oldest first) that go into the next pass, in pass order.

    At most `max_sequences` inputs of at most `max_tokens` tokens together; the oldest input is always
    first. Every length must be at least 1 and the oldest must fit `max_tokens` on its own."""
    placed: list[int] = []
    taken: set[int] = set()
    position = 0
    oldest = 0  # no input before this index is still waiting
    while len(placed) < max_sequences:
        while oldest < len(lengths) and oldest in taken:
            oldest += 1
        if oldest == len(lengths):
            break
        room = TILE - position % TILE
        if position % TILE and lengths[oldest] > room:
            # The oldest would straddle into the next tile: close this one with others if they fit it.
            fill = _exact_fill(lengths, taken, oldest + 1, room, max_sequences - len(placed))
            if fill and position + room <= max_tokens:
                placed += fill
                taken.update(fill)
                position += room
                continue
        if position + lengths[oldest] > max_tokens:
            break
        placed.append(oldest)
        taken.add(oldest)
        position += lengths[oldest]
        room = (TILE - position % TILE) % TILE
        if room and len(placed) < max_sequences and position + room <= max_tokens:
            fill = _exact_fill(lengths, taken, oldest + 1, room, max_sequences - len(placed))
            placed += fill
            taken.update(fill)
            position += sum(lengths[i] for i in fill)
    return placed


def _exact_fill(lengths: Sequence[int], taken: set[int], start: int, room: int, max_count: int) -> list[int]:
    """Waiting inputs from `start` on whose lengths add up to exactly `room` (older ones preferred,
    at most `max_count` of them), or [] when none do within the lookahead."""
    # way[s]: the inputs first found to add up to s (a subset-sum over the lookahead, oldest first)
    way: dict[int, list[int]] = {0: []}
    seen = 0
    for index in range(start, len(lengths)):
        if index in taken:
            continue
        seen += 1
        if seen > LOOKAHEAD:
            break
        length = lengths[index]
        for total in sorted(way, reverse=True):
            reached = total + length
            if reached <= room and reached not in way and len(way[total]) < max_count:
                way[reached] = [*way[total], index]
        if room in way:
            return way[room]
    return []
