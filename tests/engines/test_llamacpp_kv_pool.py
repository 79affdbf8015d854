"""The llama.cpp engine's one KV pool on the real default model: shared prefixes, eviction, preemption."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import pytest

from locallab.engines.base import GenerationChunk
from locallab.engines.llamacpp import LlamaCppEngine, load_llamacpp_engine
from locallab.engines.llamacpp.kv_pool import common_prefix_length
from locallab.services.chat_template import render_chat
from tests.real_model import assert_same_greedy_text, collect, default_model_path, run

pytestmark = pytest.mark.integration

SYSTEM = "You are the support assistant of ACME routers. Answer briefly and politely. " * 8
USER_TURN = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
QUESTIONS = ("How do I reset my router?", "What is the default password?", "Why is my wifi slow?")


def _engine(**options: object) -> LlamaCppEngine:
    # Not deterministic: these tests follow cached prefixes from one request to the next.
    settings: dict[str, object] = {
        "context_length": 1024,
        "parallel": 3,
        "threads": 2,
        "batch_size": 64,
        "deterministic": False,
    }
    settings.update(options)
    return load_llamacpp_engine(default_model_path(), **settings)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def uncached() -> Iterator[LlamaCppEngine]:
    engine = _engine(prefix_cache=False)
    yield engine
    run(engine.close())


def _support_chat(engine: LlamaCppEngine, question: str) -> str:
    assert engine.info.chat_template is not None
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]
    return render_chat(engine.info.chat_template, messages)


async def _together(
    engine: LlamaCppEngine, prompts: list[str], **sampling: object
) -> list[list[GenerationChunk]]:
    results = await asyncio.gather(*(collect(engine, p, **sampling) for p in prompts))
    return [chunks for chunks, _ in results]


def test_a_shared_system_prompt_is_computed_once_and_each_answer_is_its_own(uncached: LlamaCppEngine) -> None:
    engine = _engine()
    try:
        prompts = [_support_chat(engine, q) for q in QUESTIONS]
        first, _ = run(collect(engine, prompts[0], max_tokens=24, logprobs=5))
        assert first[-1].cached_tokens == 0
        shared = run(_together(engine, prompts[1:], max_tokens=24, logprobs=5))
        system_tokens = len(run(engine.tokenize(_support_chat(engine, ""))))
        for chunks in shared:
            # the system prompt came from the first request's cells; the question was computed
            assert system_tokens - 8 <= chunks[-1].cached_tokens < chunks[-1].prompt_tokens
        for prompt, chunks in zip(prompts[1:], shared, strict=True):
            alone, _ = run(collect(uncached, prompt, max_tokens=24, logprobs=5))
            assert alone[-1].cached_tokens == 0
            assert_same_greedy_text(alone, chunks)
        texts = {"".join(c.text for c in chunks) for chunks in shared}
        assert len(texts) == 2  # different questions, different answers from one shared prefix
    finally:
        run(engine.close())


@pytest.mark.parametrize("deterministic", [False, True])
def test_requests_arriving_together_with_one_system_prompt_compute_it_once(deterministic: bool) -> None:
    engine = _engine(deterministic=deterministic)  # deterministic: cells are shared while requests overlap
    try:
        prompts = [_support_chat(engine, q) for q in QUESTIONS]
        together = run(_together(engine, prompts, max_tokens=4))
        system_tokens = len(run(engine.tokenize(_support_chat(engine, ""))))
        cached = sorted(chunks[-1].cached_tokens for chunks in together)
        assert cached[0] == 0  # the first reads the system prompt...
        assert all(c >= system_tokens - 8 for c in cached[1:])  # ...the others wait for it and share it
    finally:
        run(engine.close())


def test_common_prefix_length() -> None:
    assert common_prefix_length([1, 2, 3, 4], [1, 2, 5]) == 2
    assert common_prefix_length([1, 2], [1, 2, 3]) == 2
    assert common_prefix_length([], [1]) == 0 and common_prefix_length([7], [8]) == 0


def test_the_pool_is_reported_and_finished_requests_stay_cached(uncached: LlamaCppEngine) -> None:
    engine = _engine(kv_tokens=2048)
    try:
        assert engine.kv_pool.size == 2048 and engine.kv_pool.used == 0
        chunks, _ = run(collect(engine, _support_chat(engine, QUESTIONS[0]), max_tokens=8))
        pool = engine.kv_pool
        assert (
            pool.used == chunks[-1].prompt_tokens + chunks[-1].completion_tokens - 1
        )  # last one not decoded
        assert (pool.kv_type, pool.prefix_cache, pool.evictions, pool.preemptions) == ("f16", True, 0, 0)
    finally:
        run(engine.close())
    assert uncached.kv_pool.used == 0  # without the prefix cache a finished request frees its cells


def test_a_small_pool_evicts_old_prefixes_and_keeps_answering() -> None:
    engine = _engine(kv_tokens=256, parallel=1)
    try:
        assert engine.context_length == 256  # a request can use the whole pool, never more
        for topic in ("cats", "the sea", "trains", "bread", "winter"):
            prompt = USER_TURN.format(f"Write a short poem about {topic}, please.")
            chunks, text = run(collect(engine, prompt, max_tokens=60))
            assert text and chunks[-1].finish_reason in ("stop", "length")
            assert engine.kv_pool.used <= 256
        assert engine.kv_pool.evictions >= 1
    finally:
        run(engine.close())


COUNTING = USER_TURN.format("Count from 1 to 80, separated by commas.")


def _counted_up_to(text: str) -> int:
    """How far `text` counts 1, 2, 3... without a gap (numbered lines "1. 1" count once)."""
    numbers = [int(n) for n in re.findall(r"\d+", text)][:-1]  # the last one may be cut off
    steps = [n for i, n in enumerate(numbers) if i == 0 or n != numbers[i - 1]]
    assert steps == list(range(1, len(steps) + 1)), text
    return len(steps)


def test_preempted_requests_resume_without_a_seam(uncached: LlamaCppEngine) -> None:
    # 3 requests of ~30 prompt + 120 answer tokens cannot all fit in 256 cells: the newest ones are
    # preempted, recomputed later, and their streams go on with the same greedy text.
    engine = _engine(kv_tokens=256)
    prompts = [
        COUNTING,
        COUNTING.replace("80", "90"),
        COUNTING.replace("Count from 1 to 80", "Name ten animals"),
    ]
    try:
        together = run(_together(engine, prompts, max_tokens=120, logprobs=5), timeout=300)
        assert engine.kv_pool.preemptions >= 1
        for prompt, chunks in zip(prompts, together, strict=True):
            assert all(not isinstance(c, BaseException) for c in chunks)
            alone, _ = run(collect(uncached, prompt, max_tokens=120, logprobs=5))
            assert chunks[-1].completion_tokens == alone[-1].completion_tokens
            assert_same_greedy_text(alone, chunks)
        for chunks in together[:2]:  # counting is a confident text: a lost or doubled token would show
            assert _counted_up_to("".join(c.text for c in chunks)) > 15
    finally:
        run(engine.close())


def test_a_prompt_larger_than_the_pool_is_refused_not_failed() -> None:
    engine = _engine(kv_tokens=256)
    try:
        prompt = "word " * 400
        tokens = run(engine.tokenize(prompt))
        assert len(tokens) > engine.context_length  # the generation service refuses it with a 400 first
    finally:
        run(engine.close())


@pytest.mark.parametrize("kv_type", ["q8_0", "q4_0"])
def test_quantized_kv_types_load_and_answer(kv_type: str) -> None:
    engine = _engine(kv_type=kv_type, kv_tokens=1024)
    try:
        _, text = run(collect(engine, COUNTING, max_tokens=20))
        if kv_type == "q8_0":
            assert _counted_up_to(text) >= 3
        else:  # q4_0 keys and values change this tiny model's answers (see bench/README.md): it answers
            assert text.strip()
        assert engine.kv_pool.kv_type == kv_type
    finally:
        run(engine.close())


SEEDED = {"do_sample": True, "temperature": 1.2, "top_p": 1.0, "top_k": 0, "max_tokens": 24, "seed": 7}


def test_an_idle_deterministic_engine_repeats_seeded_and_greedy_answers_exactly() -> None:
    """Before the pool was emptied when idle, a repeat after other requests had filled it answered
    differently: its cells sat elsewhere, and llama.cpp's attention sums depend on where (issue 18)."""
    engine = _engine(deterministic=True, parallel=2, context_length=512, batch_size=256)
    try:
        poem = _support_chat(engine, "Write a short poem about the sea.")
        first = run(collect(engine, poem, **SEEDED))[1]
        greedy = run(collect(engine, poem, max_tokens=24))[1]
        for question in (*QUESTIONS, "Tell me a long story.", "Count from 1 to 10."):
            run(collect(engine, _support_chat(engine, question), max_tokens=40))
        for _ in range(3):
            assert run(collect(engine, poem, **SEEDED))[1] == first
            assert run(collect(engine, poem, max_tokens=24))[1] == greedy
        assert engine.kv_pool.deterministic
    finally:
        run(engine.close())


def _logprobs(chunks: list[GenerationChunk]) -> list[object]:
    return [entry for chunk in chunks for entry in chunk.logprobs]


def test_an_idle_deterministic_engine_answers_the_same_prompt_again_from_its_kept_logits() -> None:
    engine = _engine(deterministic=True, parallel=2, context_length=512, batch_size=256)
    try:
        poem = _support_chat(engine, "Write a short poem about the sea.")
        first = run(collect(engine, poem, logprobs=3, **SEEDED))[0]
        again = run(collect(engine, poem, logprobs=3, **SEEDED))[0]
        assert first[-1].cached_tokens == 0
        assert again[-1].cached_tokens == again[-1].prompt_tokens  # nothing computed for the prompt
        assert _logprobs(again) == _logprobs(first)  # bit for bit, as deterministic mode promises
        # Another prompt, even one sharing the system prompt, starts from an empty pool...
        other = run(collect(engine, _support_chat(engine, "Count from 1 to 10."), max_tokens=8))[0]
        assert other[-1].cached_tokens == 0
        # ...and replaces the kept one: the poem is read again, to the same answer.
        third = run(collect(engine, poem, logprobs=3, **SEEDED))[0]
        assert third[-1].cached_tokens == 0
        assert _logprobs(third) == _logprobs(first)
    finally:
        run(engine.close())


def test_an_idle_deterministic_engine_reuses_whole_prompt_chunks_of_the_last_turn_bit_for_bit() -> None:
    """One user chatting on an idle server: the next turn takes the previous prompt's whole chunks
    (64 tokens here) from the pool and answers exactly as a read from an empty pool does."""
    engine = _engine(deterministic=True, parallel=2, context_length=1024, batch_size=64)
    assert engine.info.chat_template is not None
    try:
        first_turn = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTIONS[0]}]
        answer = run(collect(engine, render_chat(engine.info.chat_template, first_turn), max_tokens=24))[1]
        follow_up = [{"role": "assistant", "content": answer}, {"role": "user", "content": QUESTIONS[1]}]
        second = render_chat(engine.info.chat_template, [*first_turn, *follow_up])
        reused = run(collect(engine, second, logprobs=3, max_tokens=24))[0]
        assert reused[-1].cached_tokens >= 128 and reused[-1].cached_tokens % 64 == 0
        run(collect(engine, USER_TURN.format("Hi."), max_tokens=4))  # shares no whole chunk: empties it
        fresh = run(collect(engine, second, logprobs=3, max_tokens=24))[0]
        assert fresh[-1].cached_tokens == 0
        assert _logprobs(reused) == _logprobs(fresh)
    finally:
        run(engine.close())
