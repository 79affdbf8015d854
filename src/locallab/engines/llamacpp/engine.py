"""LlamaCppEngine: one thread owns the llama.cpp context and decodes every running sequence together.

Each step puts one token per decoding sequence and a chunk of prompt for newly admitted ones into a
single batch (continuous batching with chunked prefill), samples each sequence with its own chain, and
hands text to the request's asyncio queue thread-safely. All sequences draw KV cells from one pool
(`kv_pool.KvPool`): a request starts from the longest prefix any other request left there, a finished
request's cells stay as cache until the pool needs them, and when the pool runs out mid-generation the
newest sequence is preempted and later recomputed instead of failing.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import llama_cpp

from locallab.engines.base import (
    GenerationChunk,
    GenerationRequest,
    GenerationStream,
    KvPoolUsage,
    ModelInfo,
)
from locallab.engines.llamacpp.idle_layout import IdleLayout
from locallab.engines.llamacpp.kv_pool import KvPool, Lane, PrefixMatch, common_prefix_length
from locallab.engines.llamacpp.native import NativeModel, load_native_model, token_bytes, tokenize
from locallab.engines.llamacpp.sampling import build_sampler, grammar_for, logits_at, token_logprob
from locallab.engines.llamacpp.sequence import _NO_LANE, Sequence, make_piece_buffer
from locallab.engines.threaded import ThreadedEngine
from locallab.errors import EngineError

logger = logging.getLogger(__name__)

# A request waits for a prompt being read when it would share at least this many more tokens with it:
# below that, computing them again costs less than the wait.
SHARE_WAIT_MIN = 32


class LlamaCppEngine(ThreadedEngine[Sequence]):
    engine_name = "llama.cpp"

    def __init__(
        self,
        native: NativeModel,
        *,
        parallel: int,
        batch_size: int,
        max_queue: int,
        deterministic: bool = True,
    ) -> None:
        super().__init__(parallel=parallel, max_queue=max_queue)
        self._deterministic = deterministic
        self._native = native
        self.info: ModelInfo = native.info
        self._batch_size = batch_size
        memory = llama_cpp.llama_get_memory(native.ctx) if native.ctx is not None else None
        self._pool = KvPool(
            memory, size=native.pool_tokens, lanes=native.lanes, share_prefixes=native.share_prefixes
        )
        self._preemptions = 0
        self._arrivals = 0
        self._idle = IdleLayout(batch_size)  # deterministic mode's pool between requests
        self._piece_buf = make_piece_buffer()
        self._publish([])
        self._start_thread(f"llama.cpp:{native.info.name}")

    @property
    def context_length(self) -> int:
        return self._native.n_ctx_seq

    async def tokenize(self, text: str) -> list[int]:
        return await asyncio.to_thread(tokenize, self._native.vocab, text, add_special=True)

    def generate(self, request: GenerationRequest) -> GenerationStream:
        grammar = grammar_for(request.sampling)  # a schema it cannot enforce fails here, before admission
        self._count_in()
        out: asyncio.Queue[GenerationChunk | BaseException] = asyncio.Queue()
        seq = Sequence(request, asyncio.get_running_loop(), out, self._outbox, grammar)
        self._arrivals += 1
        seq.order = self._arrivals  # the newest is preempted first
        return self._submit(seq)

    @property
    def kv_pool(self) -> KvPoolUsage:
        return self._pool_usage

    # --- engine thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        native = self._native
        batch = llama_cpp.llama_batch_init(self._batch_size + self._parallel, 0, 1)
        pool = self._pool
        waiting: list[Sequence] = []
        active: list[Sequence] = []
        try:
            while True:
                idle = not active and not waiting
                if idle and self._closing and self._incoming.empty():
                    return
                if idle and self._deterministic and not self._idle.settled:
                    self._idle.settle(pool)
                    self._publish(active)
                self._drain_incoming(waiting, block=idle)
                for seq in [s for s in waiting if s.cancelled]:
                    waiting.remove(seq)
                    seq.free_sampler()  # a preempted sequence keeps its chain while it waits
                    self._finished(seq)
                self._admit_waiting(waiting, active, pool)
                for seq in [s for s in active if s.cancelled]:
                    self._release(seq, active)
                if not active:
                    self._publish(active)
                    continue
                plan = self._plan(active)
                for seq in self._make_room(pool, plan, active):
                    waiting.insert(0, seq)  # preempted: first to come back, its stream simply pauses
                    plan = [(s, take) for s, take in plan if s is not seq]
                outputs = self._fill_batch(batch, plan)
                rc = llama_cpp.llama_decode(native.ctx, batch)
                if rc != 0:
                    self._decode_failed(rc, plan, active, waiting)
                    continue
                for seq, _ in plan:
                    for pos in range(len(seq.lane.cells), seq.n_past):
                        pool.append(seq.lane, seq.tokens[pos])
                for seq, index in outputs:
                    if len(seq.tokens) == len(seq.prompt_tokens) and seq.preemptions == 0:
                        self._remember_prompt(seq, logits_at(native.ctx, index, native.n_vocab))
                    token = seq.sampler.sample(native.ctx, index)
                    self._take_token(seq, token, active, index=index)
                self._publish(
                    active
                )  # before the chunks go out: a client that got its last one sees the pool
                self._outbox.flush()
        except BaseException as exc:  # never leave a waiting client hanging
            logger.exception("llama.cpp engine thread crashed")
            error = EngineError(f"The llama.cpp engine stopped: {exc}")
            for seq in active + waiting:
                seq.emit(error)
            self._outbox.flush()
            with self._admission:
                self._closing = True
        finally:
            llama_cpp.llama_batch_free(batch)
            for seq in active + waiting:
                seq.free_sampler()
            native.free()

    def _take_token(
        self, seq: Sequence, token: int, active: list[Sequence], *, logits: Any = None, index: int = -1
    ) -> None:
        """Hands a sampled token to its sequence (text, logprobs from `logits` or else the last decode's
        at batch position `index`, the end of its turn) and releases the sequence when it is finished."""
        native = self._native
        eog = bool(llama_cpp.llama_vocab_is_eog(native.vocab, token))
        piece = b"" if eog else token_bytes(native.vocab, token, self._piece_buf)
        seq.next_token = token
        seq.tokens.append(token)
        seq.has_next_token = True
        logprob = None
        if seq.request.sampling.logprobs is not None and not eog:
            if logits is None:
                logits = logits_at(native.ctx, index, native.n_vocab)
            logprob = token_logprob(
                logits, token, piece, seq.request.sampling.logprobs,
                lambda t: token_bytes(native.vocab, t, self._piece_buf),
            )  # fmt: skip
        if seq.accept(piece, eog=eog, n_ctx_seq=native.n_ctx_seq, logprob=logprob):
            self._release(seq, active)

    def _remember_prompt(self, seq: Sequence, logits: Any) -> None:
        """Keeps the logits that end a prompt's reading with its lane: the same prompt again samples
        from them. In deterministic mode only for a prompt read alone from an idle server's pool, whose
        cells and logits are then exactly what a fresh pool would give."""
        if self._pool.share_prefixes and (seq.fresh or not self._deterministic):
            seq.lane.prompt_logits = logits.copy()
            seq.lane.prompt_length = len(seq.tokens)

    def _publish(self, active: list[Sequence]) -> None:
        pool = self._pool
        self._active = len(active)
        self._pool_usage = KvPoolUsage(
            pool.size,
            pool.used,
            self._native.kv_type,
            pool.share_prefixes,
            self._deterministic,
            pool.evictions,
            self._preemptions,
        )

    def _admit_waiting(self, waiting: list[Sequence], active: list[Sequence], pool: KvPool) -> None:
        """Admits waiting sequences in order while there is a place and room in the pool. One whose prompt
        starts like a prompt still being read waits for it and then shares its cells (16 users with one
        system prompt: computed once, not 8 times at once); those behind it may go first meanwhile."""
        index = 0
        while index < len(waiting) and len(active) < self._parallel:
            seq = waiting[index]
            if self._prefix_in_flight(seq, active, pool):
                index += 1
                continue
            try:
                if not self._admit(seq, pool, active):
                    return  # the pool has no room for it yet: running sequences go first
            except EngineError as exc:  # this request cannot run; the others go on
                waiting.pop(index)
                seq.emit(exc)
                self._outbox.flush()
                self._finished(seq)
                continue
            waiting.pop(index)
            for other in active:
                other.fresh = False  # a prompt read beside another is not laid out as on an idle server
            active.append(seq)
            if seq.answer is not None:  # its prompt was read before: sample from the logits kept
                logits, seq.answer = seq.answer, None
                self._take_token(seq, seq.sampler.sample_logits(logits), active, logits=logits)
                self._outbox.flush()

    @staticmethod
    def _prefix_in_flight(seq: Sequence, active: list[Sequence], pool: KvPool) -> bool:
        """Whether a running sequence is reading a prompt that shares at least SHARE_WAIT_MIN more tokens
        with `seq`'s than the pool holds already."""
        if not pool.share_prefixes:
            return False
        match = pool.longest_prefix(seq.tokens)
        cached = match.length if match is not None else 0
        for other in active:
            if other.prefilling:
                shared = common_prefix_length(seq.tokens, other.tokens)
                if shared - cached >= SHARE_WAIT_MIN and other.prompt_pos < shared:
                    return True
        return False

    def _admit(self, seq: Sequence, pool: KvPool, active: list[Sequence]) -> bool:
        """Gives `seq` a lane that starts with the longest prefix of its tokens found in the pool, when
        the pool has room for the rest; False (nothing changed) when it has not.

        Its lane is the one that holds the prefix when that lane is idle and holds nothing more (a
        conversation's previous turn), else an empty lane, else the least recently used cached one.
        """
        tokens = seq.tokens
        answered = pool.answered(tokens) if seq.preemptions == 0 else None
        fresh = False
        if self._idle.settled and not active:  # deterministic mode, the first request after idling
            self._idle.admit(pool, tokens, answered=answered is not None)
            fresh = True
        if answered is not None:  # the whole prompt and the logits that follow it
            match: PrefixMatch | None = PrefixMatch(answered.seq_id, len(tokens))
            reuse = len(tokens)
        else:
            match = pool.longest_prefix(tokens)
            reuse = 0 if match is None else min(match.length, len(tokens) - 1)  # the last gives logits
        shared = pool.lanes[match.source].cells[:reuse] if match is not None else []
        if active and pool.pinned(shared) + len(tokens) - reuse + len(active) > pool.size:
            return False
        if len(tokens) >= pool.size:
            raise EngineError(
                f"This request needs {len(tokens) + 1} tokens of KV cache but the pool holds {pool.size}; "
                "raise LOCALLAB_KV_TOKENS."
            )
        if seq.sampler is None:  # a preempted sequence keeps its chain: it has seen every token so far
            seq.sampler = build_sampler(
                seq.request.sampling, self._native.vocab, self._native.n_vocab, seq.prompt_tokens, seq.grammar
            )
        source = pool.lanes[match.source] if match is not None else None
        if (
            match is not None
            and source is not None
            and not source.running
            and len(source.cells) == match.length
        ):
            lane: Lane | None = source  # everything it holds is our prefix: nothing is lost by taking it
        else:
            lane = pool.free_lane()
        if lane is None:
            return False
        if lane is source:
            pool.truncate(lane, reuse)
        else:
            if lane.cells:
                pool.evict(lane)
            if source is not None and reuse:
                pool.copy_prefix(source, reuse, lane)
        lane.running = True
        seq.lane = lane
        seq.prompt_pos = seq.n_past = reuse
        seq.fresh = fresh
        seq.answer = lane.prompt_logits if answered is not None else None
        if seq.preemptions == 0:
            seq.cached_tokens = reuse
        return True

    def _plan(self, active: list[Sequence]) -> list[tuple[Sequence, int]]:
        """One token per decoding sequence, and prompt chunks within the budget in arrival order:
        (sequence, tokens of `seq.tokens` to read; 0 means its sampled token).

        A small prompt budget per step keeps running streams moving while newcomers are prefilled, and
        gives newcomers their first tokens one after another instead of all at the end of one big step.
        """
        plan: list[tuple[Sequence, int]] = []
        budget = self._batch_size
        for seq in active:
            if not seq.prefilling:
                plan.append((seq, 0))
            elif budget > 0:
                take = min(budget, len(seq.tokens) - seq.prompt_pos)
                plan.append((seq, take))
                budget -= take
        return plan

    def _make_room(
        self, pool: KvPool, plan: list[tuple[Sequence, int]], active: list[Sequence]
    ) -> list[Sequence]:
        """Frees cells for this step: cached lanes first (least recently used), then preempts the newest
        running sequences. Returns the preempted ones, oldest first."""
        needed = sum(take or 1 for _, take in plan)
        preempted: list[Sequence] = []
        while pool.free < needed:
            cached = pool.evictable()
            if cached:
                pool.evict(cached[0])
                continue
            if len(active) <= 1:
                break  # one sequence alone always fits: its context is capped at the pool's size
            newest = max(active, key=lambda s: s.order)
            needed -= next((take or 1 for s, take in plan if s is newest), 0)
            self._preempt(newest, active)
            preempted.insert(0, newest)
        return preempted

    def _preempt(self, seq: Sequence, active: list[Sequence]) -> None:
        """Takes the lane away from `seq`; its cells stay cached (first to go) until it comes back."""
        active.remove(seq)
        seq.lane.running = False
        seq.lane.last_used = -1
        seq.lane = _NO_LANE
        seq.prompt_pos = seq.n_past = 0
        seq.has_next_token = False  # it is the last of `tokens`: read again with the rest on resume
        seq.preemptions += 1
        self._preemptions += 1

    def _decode_failed(
        self, rc: int, plan: list[tuple[Sequence, int]], active: list[Sequence], waiting: list[Sequence]
    ) -> None:
        """llama.cpp kept none of the batch. With no cell free (1) the newest sequence waits; any other
        failure ends the batch's requests with an error."""
        for seq, take in plan:
            seq.prompt_pos = seq.n_past = len(seq.lane.cells)
            seq.has_next_token = take == 0
        if rc == 1 and len(active) > 1:
            newest = max(active, key=lambda s: s.order)
            self._preempt(newest, active)
            waiting.insert(0, newest)
            return
        error = EngineError(f"llama.cpp failed to decode (code {rc}); the request was stopped.")
        for seq, _ in plan:
            seq.emit(error)
            self._pool.forget(seq.lane)  # llama.cpp may hold part of the batch: drop the lane's cells
            self._release(seq, active)
        self._outbox.flush()

    def _fill_batch(self, batch: Any, plan: list[tuple[Sequence, int]]) -> list[tuple[Sequence, int]]:
        """Puts the step's tokens into the batch, ordered by sequence id (llama.cpp decodes out-of-order
        ids in several passes); returns where logits come out."""
        n = 0
        outputs: list[tuple[Sequence, int]] = []

        def add(seq: Sequence, token: int, logits: bool) -> None:
            nonlocal n
            batch.token[n] = token
            batch.pos[n] = seq.n_past
            batch.n_seq_id[n] = 1
            batch.seq_id[n][0] = seq.lane.seq_id
            batch.logits[n] = logits
            if logits:
                outputs.append((seq, n))
            seq.n_past += 1
            n += 1

        for seq, take in sorted(plan, key=lambda item: item[0].lane.seq_id):
            if take == 0:
                add(seq, seq.next_token, True)
                seq.prompt_pos += 1
                seq.has_next_token = False
                continue
            last = len(seq.tokens) - 1
            for pos in range(seq.prompt_pos, seq.prompt_pos + take):
                add(seq, seq.tokens[pos], pos == last)
            seq.prompt_pos += take
        batch.n_tokens = n
        return outputs

    def _release(self, seq: Sequence, active: list[Sequence]) -> None:
        active.remove(seq)
        lane = seq.lane
        lane.running = False
        lane.last_used = self._pool.tick()
        if not self._pool.share_prefixes:
            self._pool.forget(lane)
        seq.free_sampler()
        self._finished(seq)


def load_llamacpp_engine(
    path: Path,
    *,
    context_length: int,
    parallel: int,
    threads: int,
    batch_size: int,
    max_queue: int = 64,
    probe: bool = False,
    memory_limit_mb: int = 0,
    kv_tokens: int = 0,
    kv_type: str = "f16",
    prefix_cache: bool = True,
    deterministic: bool = True,
) -> LlamaCppEngine:
    """Blocking: call from a worker thread. `probe`: open the file in a child process first."""
    native = load_native_model(
        path,
        context_length=context_length,
        parallel=parallel,
        threads=threads,
        batch_size=batch_size,
        probe=probe,
        memory_limit_mb=memory_limit_mb,
        kv_tokens=kv_tokens,
        kv_type=kv_type,
        prefix_cache=prefix_cache,
    )
    return LlamaCppEngine(
        native, parallel=parallel, batch_size=batch_size, max_queue=max_queue, deterministic=deterministic
    )
