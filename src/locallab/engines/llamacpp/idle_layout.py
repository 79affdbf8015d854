"""Deterministic mode's pool between requests: what an idle llama.cpp engine keeps, and what the next
request may take from it without changing a bit of its answer.

Where llama.cpp puts a request's cells, and in what batch shapes they were computed, changes its
logits in the last bits (docs/features/performance.md). So an idle server lays its pool out as an
empty one would be, keeping only the last prompt read alone from such a pool, at the cells it was read
into (0, 1, 2, ...) with the logits that followed it. A fresh read goes in chunks of the prompt budget
from cell 0; the next request takes the kept prompt's whole chunks that hold its own tokens (exactly
what it would compute itself) or, for the same prompt, the logits; anything else starts from an empty
pool.
"""

from __future__ import annotations

from locallab.engines.llamacpp.kv_pool import KvPool, Lane, common_prefix_length


class IdleLayout:
    """`settled` while the pool is as the last idle spell left it; `chunk` is the prompt budget of a
    step (a lone request's prompt is read in chunks of that size from cell 0)."""

    def __init__(self, chunk: int) -> None:
        self.chunk = chunk
        self.settled = False
        self._kept: Lane | None = None

    def settle(self, pool: KvPool) -> None:
        """Nothing is running: keep the last prompt read alone from an empty pool, if no gap was freed
        since (else llama.cpp might put the next cells into it), and empty everything else."""
        kept = max(
            (lane for lane in pool.lanes if lane.prompt_logits is not None),
            key=lambda lane: lane.last_used,
            default=None,
        )
        if kept is None or not pool.keep_prefix(kept, kept.prompt_length):
            pool.clear()
            kept = None
        self._kept = kept
        self.settled = True

    def admit(self, pool: KvPool, tokens: list[int], *, answered: bool) -> None:
        """The first request after idling: cuts the kept prompt to the whole chunks it shares with
        `tokens`, or empties the pool when none (`answered`: the very same prompt, kept whole)."""
        self.settled = False
        if answered or not pool.used:
            return
        kept = self._kept
        keep = 0
        if kept is not None:
            shared = min(common_prefix_length(kept.tokens, tokens), len(tokens) - 1)
            keep = shared // self.chunk * self.chunk
        if not (kept is not None and keep and pool.keep_prefix(kept, keep)):
            pool.clear()
