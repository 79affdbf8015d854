"""The KV pool's bookkeeping: the prefix tree mirrors which cells each sequence id holds (no model)."""

from __future__ import annotations

from locallab.engines.llamacpp.kv_pool import KvPool


def _pool(size: int = 100, lanes: int = 4) -> KvPool:
    return KvPool(None, size=size, lanes=lanes)


def _fill(pool: KvPool, lane_id: int, tokens: list[int]) -> None:
    for token in tokens:
        pool.append(pool.lanes[lane_id], token)


def test_the_longest_cached_prefix_is_found_in_any_lane() -> None:
    pool = _pool()
    _fill(pool, 0, [1, 2, 3, 4])
    _fill(pool, 1, [1, 2, 9])
    match = pool.longest_prefix([1, 2, 3, 7])
    assert match is not None and (match.source, match.length) == (0, 3)
    assert pool.longest_prefix([5]) is None


def test_a_copied_prefix_shares_cells_instead_of_taking_new_ones() -> None:
    pool = _pool()
    _fill(pool, 0, [1, 2, 3, 4])
    pool.copy_prefix(pool.lanes[0], 3, pool.lanes[1])
    _fill(pool, 1, [8, 9])
    assert pool.used == 6  # 4 + the two new cells; the three shared ones count once
    assert pool.lanes[1].tokens == [1, 2, 3, 8, 9]
    match = pool.longest_prefix([1, 2, 3, 8, 9, 10])
    assert match is not None and (match.source, match.length) == (1, 5)


def test_evicting_a_lane_frees_only_the_cells_nobody_else_holds() -> None:
    pool = _pool()
    _fill(pool, 0, [1, 2, 3, 4])
    pool.copy_prefix(pool.lanes[0], 2, pool.lanes[1])
    _fill(pool, 1, [5])
    assert pool.evict(pool.lanes[0]) == 2  # 3 and 4; 1 and 2 stay with lane 1
    assert pool.used == 3 and pool.free == 97
    match = pool.longest_prefix([1, 2, 3])
    assert match is not None and (match.source, match.length) == (1, 2)  # 3 is gone from the tree
    assert pool.evictions == 1


def test_cached_lanes_are_evicted_least_recently_used_first_and_running_ones_never() -> None:
    pool = _pool()
    for lane_id, stamp in ((0, 5), (1, 2), (2, 9)):
        _fill(pool, lane_id, [lane_id + 10])
        pool.lanes[lane_id].last_used = stamp
    pool.lanes[3].running = True
    _fill(pool, 3, [42])
    assert [lane.seq_id for lane in pool.evictable()] == [1, 0, 2]
    assert pool.pinned([]) == 1
    assert pool.free_lane() is pool.lanes[1]  # no empty lane: the least recently used cached one


def test_an_empty_lane_is_taken_before_any_cached_one() -> None:
    pool = _pool()
    _fill(pool, 0, [1])
    lane = pool.free_lane()
    assert lane is not None and lane.seq_id == 1


def test_truncating_keeps_the_prefix_and_forgets_the_rest() -> None:
    pool = _pool()
    _fill(pool, 0, [1, 2, 3, 4])
    pool.truncate(pool.lanes[0], 2)
    assert pool.lanes[0].tokens == [1, 2] and pool.used == 2
    match = pool.longest_prefix([1, 2, 3])
    assert match is not None and match.length == 2


def test_a_prompt_decoded_twice_stays_findable_after_either_copy_goes() -> None:
    pool = _pool()
    _fill(pool, 0, [1, 2])
    _fill(pool, 1, [1, 2])  # computed again, not shared: its own cells
    assert pool.used == 4
    pool.evict(pool.lanes[0])
    # the second copy is not in the tree (the first one was): a later request misses it, nothing breaks
    assert pool.used == 2
    assert pool.longest_prefix([1, 2]) is None


def test_without_prefix_sharing_nothing_is_found() -> None:
    pool = KvPool(None, size=10, lanes=2, share_prefixes=False)
    _fill(pool, 0, [1, 2])
    assert pool.longest_prefix([1, 2]) is None


def test_clearing_empties_every_lane_and_forgets_every_prefix() -> None:
    pool = _pool()
    _fill(pool, 0, [1, 2, 3])
    pool.copy_prefix(pool.lanes[0], 2, pool.lanes[1])
    _fill(pool, 1, [7])
    pool.clear()
    assert pool.used == 0 and pool.free == pool.size
    assert all(not lane.cells for lane in pool.lanes)
    assert pool.longest_prefix([1, 2, 3]) is None
    _fill(pool, 2, [1, 2])  # the pool works as new
    assert pool.used == 2 and pool.longest_prefix([1, 2, 5]) is not None


def test_a_prompts_kept_logits_answer_only_that_prompt_and_go_with_its_cells() -> None:
    pool = _pool()
    _fill(pool, 0, [1, 2, 3, 4, 5])  # a prompt of three tokens, then two generated ones
    lane = pool.lanes[0]
    lane.prompt_logits, lane.prompt_length = [0.5, 0.25], 3
    assert pool.answered([1, 2, 3]) is lane
    assert pool.answered([1, 2]) is None and pool.answered([1, 2, 3, 4]) is None
    assert pool.answered([1, 2, 7]) is None
    pool.copy_prefix(lane, 3, pool.lanes[1])  # a copy of the whole prompt carries its logits
    pool.truncate(lane, 2)  # cut inside the prompt: the logits no longer follow what it holds
    assert lane.prompt_logits is None and pool.answered([1, 2, 3]) is pool.lanes[1]
    pool.clear()
    assert pool.answered([1, 2, 3]) is None


def test_a_prefix_is_kept_alone_only_while_no_gap_was_freed_below_newer_cells() -> None:
    pool = _pool()
    _fill(pool, 0, [1, 2, 3, 4])
    _fill(pool, 1, [5, 6])
    assert pool.keep_prefix(pool.lanes[0], 3)  # cells 0-2 stay; everything freed lay above them
    assert pool.used == 3 and pool.lanes[0].tokens == [1, 2, 3] and not pool.lanes[1].cells
    _fill(pool, 1, [7, 8])
    pool.evict(pool.lanes[1])  # a gap that llama.cpp may fill before its highest cells
    _fill(pool, 2, [9])
    assert not pool.keep_prefix(pool.lanes[0], 3)
    assert pool.used == 0 and not pool.holes  # emptied instead: the next request starts at cell 0
