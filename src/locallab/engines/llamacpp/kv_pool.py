"""The one KV pool every sequence draws from, and the prefix tree that tells which cells hold what.

llama.cpp's unified KV cache is a pool of cells; a cell holds one token's keys and values at one
position and belongs to a set of sequence ids. `llama_memory_seq_cp` between ids in the unified cache
copies no data: it adds the destination id to the source's cells, so requests that start alike share
the cells of their common prefix. The tree mirrors the pool exactly: a node is one cell, its path from
the root is the tokens before it, and its `holders` are the sequence ids that own it. A cell is free
when no id holds it (llama.cpp frees it then too), so `used` is the pool's real occupancy.

Sequence ids are lanes: a running request holds one; when it finishes, its lane keeps its cells as a
cached prefix until the pool (or a new request needing a lane) evicts the least recently used one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import llama_cpp


def common_prefix_length(a: list[int], b: list[int]) -> int:
    """Length of the common start of two token lists (binary search over slice comparisons, done in C)."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        middle = (low + high + 1) // 2
        if a[:middle] == b[:middle]:
            low = middle
        else:
            high = middle - 1
    return low


class Cell:
    """One KV cell: `token` at position `depth` (0-based), after the tokens on the path from the root."""

    __slots__ = ("children", "depth", "holders", "parent", "token")

    def __init__(self, token: int, parent: Cell | None, depth: int) -> None:
        self.token = token
        self.parent = parent
        self.depth = depth
        self.children: dict[int, Cell] = {}
        self.holders: set[int] = set()


@dataclass
class Lane:
    """One sequence id of the context: its cells by position, and whether a request runs on it."""

    seq_id: int
    cells: list[Cell]
    running: bool = False
    last_used: int = 0  # step of its last use: the least recently used cached lane is evicted first
    # The logits that followed its first `prompt_length` cells (the prompt its request read): the same
    # prompt again starts sampling from them, with nothing to compute.
    prompt_logits: Any = None
    prompt_length: int = 0

    @property
    def tokens(self) -> list[int]:
        return [cell.token for cell in self.cells]


@dataclass(frozen=True)
class PrefixMatch:
    """The longest cached prefix of a prompt: `length` tokens held (among others) by lane `source`."""

    source: int
    length: int


class KvPool:
    """Bookkeeping of the unified KV cache. `memory` is llama.cpp's memory handle (None in unit tests:
    then only the bookkeeping runs)."""

    def __init__(self, memory: Any, *, size: int, lanes: int, share_prefixes: bool = True) -> None:
        self.memory = memory
        self.size = size
        self.share_prefixes = share_prefixes  # off for sliding-window models: their old cells get pruned
        self.lanes = [Lane(i, []) for i in range(lanes)]
        self._root = Cell(-1, None, -1)
        self.used = 0
        # A cell was freed since the pool was last laid out from cell 0: llama.cpp may then put new cells
        # into the gap, so the layout is no longer what an empty pool would give.
        self.holes = False
        self.evictions = 0  # cached lanes dropped to make room
        self._clock = 0

    @property
    def free(self) -> int:
        return self.size - self.used

    def tick(self) -> int:
        self._clock += 1
        return self._clock

    # --- lookups ---------------------------------------------------------------------------------

    def longest_prefix(self, tokens: list[int]) -> PrefixMatch | None:
        """The deepest cell on `tokens`' path, with a lane that holds it (and every cell before it)."""
        if not self.share_prefixes:
            return None
        node = self._root
        for token in tokens:
            child = node.children.get(token)
            if child is None or not child.holders:
                break
            node = child
        if node is self._root:
            return None
        return PrefixMatch(min(node.holders), node.depth + 1)

    def pinned(self, extra: list[Cell]) -> int:
        """Cells that running lanes hold, with `extra`: what eviction cannot free."""
        seen = {id(cell) for cell in extra}
        for lane in self.lanes:
            if lane.running:
                seen.update(id(cell) for cell in lane.cells)
        return len(seen)

    def answered(self, tokens: list[int]) -> Lane | None:
        """A lane holding exactly `tokens` as its prompt, with the logits that followed (an idle one
        first), or None."""
        found = [
            lane
            for lane in self.lanes
            if lane.prompt_logits is not None
            and lane.prompt_length == len(tokens)
            and [cell.token for cell in lane.cells[: len(tokens)]] == tokens
        ]
        return min(found, key=lambda lane: lane.running, default=None)

    def free_lane(self) -> Lane | None:
        """An empty lane, else the least recently used cached one; None when every lane runs."""
        idle = [lane for lane in self.lanes if not lane.running]
        if not idle:
            return None
        return min(idle, key=lambda lane: (bool(lane.cells), lane.last_used, lane.seq_id))

    def evictable(self) -> list[Lane]:
        """Cached lanes, least recently used first."""
        return sorted(
            (lane for lane in self.lanes if not lane.running and lane.cells), key=lambda x: x.last_used
        )

    # --- changes (each mirrored in llama.cpp) ------------------------------------------------------

    def truncate(self, lane: Lane, keep: int) -> None:
        """Drops the lane's cells from position `keep` on."""
        if keep < lane.prompt_length:
            lane.prompt_logits = None
        if keep >= len(lane.cells):
            return
        if self.memory is not None:
            llama_cpp.llama_memory_seq_rm(self.memory, lane.seq_id, keep, -1)
        for cell in lane.cells[keep:]:
            self._drop_holder(cell, lane.seq_id)
        del lane.cells[keep:]

    def forget(self, lane: Lane) -> None:
        """Drops every cell of the lane, including any llama.cpp holds that the tree does not know of."""
        if self.memory is not None:
            llama_cpp.llama_memory_seq_rm(self.memory, lane.seq_id, -1, -1)
        for cell in lane.cells:
            self._drop_holder(cell, lane.seq_id)
        lane.cells = []
        lane.prompt_logits = None

    def evict(self, lane: Lane) -> int:
        """Empties a cached lane; returns the cells that became free."""
        before = self.used
        self.truncate(lane, 0)
        self.evictions += 1
        return before - self.used

    def copy_prefix(self, source: Lane, length: int, lane: Lane) -> None:
        """Makes the empty `lane` share the first `length` cells of `source` (no data is copied)."""
        if self.memory is not None:
            llama_cpp.llama_memory_seq_cp(self.memory, source.seq_id, lane.seq_id, 0, length)
        lane.cells = source.cells[:length]
        for cell in lane.cells:
            cell.holders.add(lane.seq_id)
        if source.prompt_logits is not None and length >= source.prompt_length:
            lane.prompt_logits, lane.prompt_length = source.prompt_logits, source.prompt_length

    def clear(self) -> None:
        """Empties the whole pool (every lane idle). llama.cpp then places the next request's cells from
        cell 0 on, in position order, exactly as for the first request after loading."""
        if self.memory is not None:
            llama_cpp.llama_memory_clear(self.memory, False)
        for lane in self.lanes:
            lane.cells = []
            lane.prompt_logits = None
        self._root.children.clear()
        self.used = 0
        self.holes = False

    def keep_prefix(self, lane: Lane, length: int) -> bool:
        """Empties every other lane and cuts `lane` to its first `length` cells, for a lane whose cells
        were placed first into an empty pool (cells 0, 1, 2, …). With no gap freed since then, what is
        left is cells 0 to `length - 1` and llama.cpp's next free cell is `length`: the layout an empty
        pool would have after reading those tokens. Otherwise it empties the pool and returns False."""
        if self.holes:
            self.clear()
            return False
        for other in self.lanes:
            if other is not lane and other.cells:
                self.truncate(other, 0)
        self.truncate(lane, length)
        self.holes = False  # every cell freed was above the ones kept
        return True

    def append(self, lane: Lane, token: int) -> None:
        """Records a token llama.cpp has just decoded for `lane` in a fresh cell."""
        parent = lane.cells[-1] if lane.cells else self._root
        cell = Cell(token, parent, len(lane.cells))
        cell.holders.add(lane.seq_id)
        # Another cell may already hold this token here (a prompt decoded twice): the first stays findable.
        if self.share_prefixes:
            parent.children.setdefault(token, cell)
        lane.cells.append(cell)
        self.used += 1

    def _drop_holder(self, cell: Cell, seq_id: int) -> None:
        cell.holders.discard(seq_id)
        if cell.holders:
            return
        self.used -= 1
        self.holes = True
        parent = cell.parent
        if parent is not None and parent.children.get(cell.token) is cell:
            del parent.children[cell.token]
