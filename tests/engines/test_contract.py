"""One contract for every engine: the fake engine, llama.cpp on the default GGUF, and transformers on
the same model converted to a safetensors folder. Sampling fields, stop sequences, usage, finish
reasons, UTF-8 streaming, cancellation and errors behave the same whichever engine serves a model."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from locallab.engines.base import Engine, GenerationChunk, GenerationRequest, SamplingParams
from locallab.engines.fake import FakeEngine
from locallab.errors import EngineError, ServerBusyError
from locallab.services.chat_template import render_chat
from tests.real_model import assert_same_greedy_text, collect, default_model_path, run

pytestmark = pytest.mark.integration


@dataclass
class Subject:
    engine: Engine
    make: Callable[[int, int], Engine]  # (parallel, max_queue) -> a new engine on the same model
    scripted: bool = False  # the fake engine: its tokens come from a script, not a model

    def chat(self, text: str) -> str:
        template = self.engine.info.chat_template
        assert template is not None
        return render_chat(template, [{"role": "user", "content": text}])


# Tests of what a model decides (sampling, end of turn): the fake engine's tokens are scripted.
MODELS_ONLY = pytest.mark.parametrize("subject", ["llama.cpp", "transformers"], indirect=True)


def _fake(parallel: int, max_queue: int) -> Engine:
    return FakeEngine(None, context_length=512, parallel=parallel, max_queue=max_queue)


def _llamacpp(parallel: int, max_queue: int) -> Engine:
    from locallab.engines.llamacpp import load_llamacpp_engine

    return load_llamacpp_engine(
        default_model_path(),
        context_length=512,
        parallel=parallel,
        threads=2,
        batch_size=256,
        max_queue=max_queue,
    )


@pytest.fixture(scope="module", params=["fake", "llama.cpp", "transformers"])
def subject(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Subject]:
    make: Callable[[int, int], Engine]
    if request.param == "fake":
        make = _fake
    elif request.param == "llama.cpp":
        make = _llamacpp
    else:
        pytest.importorskip("transformers")
        from locallab.engines.transformers import load_transformers_engine
        from tests.transformers_models import smollm2_folder

        folder = smollm2_folder(tmp_path_factory)

        def make(parallel: int, max_queue: int) -> Engine:
            return load_transformers_engine(
                folder, context_length=512, parallel=parallel, threads=2, max_queue=max_queue
            )

    engine = make(2, 8)
    yield Subject(engine, make, scripted=request.param == "fake")
    run(engine.close())


def test_max_tokens_ends_with_length_and_counts_usage(subject: Subject) -> None:
    prompt = subject.chat("Tell me a long story.")
    chunks, _ = run(collect(subject.engine, prompt, max_tokens=5))
    last = chunks[-1]
    assert last.finish_reason == "length"
    assert last.completion_tokens == 5
    assert last.prompt_tokens == len(run(subject.engine.tokenize(prompt)))
    assert all(c.finish_reason is None for c in chunks[:-1])
    counts = [c.completion_tokens for c in chunks]
    assert counts == sorted(counts)


def test_greedy_decoding_is_deterministic(subject: Subject) -> None:
    prompt = subject.chat("Name three colours.")
    first = run(collect(subject.engine, prompt, max_tokens=16))[1]
    assert first and first == run(collect(subject.engine, prompt, max_tokens=16))[1]


def test_stop_sequence_cuts_the_text_before_it(subject: Subject) -> None:
    prompt = subject.chat("Count from 1 to 10, one number per line.")
    _, full = run(collect(subject.engine, prompt, max_tokens=40))
    assert len(full) >= 6
    stop = full[len(full) // 2 : len(full) // 2 + 2]
    chunks, cut = run(collect(subject.engine, prompt, max_tokens=40, stop=(stop,)))
    assert chunks[-1].finish_reason == "stop" and chunks[-1].stop_sequence == stop
    assert cut == full[: full.index(stop)]
    assert stop not in "".join(c.text for c in chunks)


@MODELS_ONLY
def test_end_of_turn_token_ends_with_stop_and_is_not_shown(subject: Subject) -> None:
    chunks, text = run(collect(subject.engine, subject.chat("Say OK."), max_tokens=200))
    assert chunks[-1].finish_reason == "stop" and chunks[-1].stop_sequence is None
    assert chunks[-1].completion_tokens < 200
    assert "<|im_end|>" not in text and "<|im_start|>" not in text


def test_streamed_text_is_whole_utf8(subject: Subject) -> None:
    engine = subject.engine
    if subject.scripted:  # scripted bytes that split each character across two tokens
        data = "ありがとう".encode()
        engine = FakeEngine([data[i : i + 2] for i in range(0, len(data), 2)])
    chunks, text = run(collect(engine, subject.chat("Translate 'thank you' to Japanese."), max_tokens=40))
    assert any(ord(ch) > 0x3000 for ch in text)  # the answer has Japanese characters
    assert all("\ufffd" not in c.text for c in chunks)


@MODELS_ONLY
def test_seeded_sampling_repeats_and_another_seed_differs(subject: Subject) -> None:
    prompt = subject.chat("Write a short poem about the sea.")
    options = {"do_sample": True, "temperature": 1.2, "top_p": 1.0, "top_k": 0, "max_tokens": 24}
    a = run(collect(subject.engine, prompt, seed=7, **options))[1]
    assert a == run(collect(subject.engine, prompt, seed=7, **options))[1]
    assert a != run(collect(subject.engine, prompt, seed=8, **options))[1]


def test_top_k_one_samples_the_greedy_answer(subject: Subject) -> None:
    prompt = subject.chat("Name a fruit.")
    greedy = run(collect(subject.engine, prompt, max_tokens=12))[1]
    sampled = run(collect(subject.engine, prompt, max_tokens=12, do_sample=True, temperature=1.5, top_k=1))
    assert sampled[1] == greedy


@MODELS_ONLY
def test_repetition_penalty_changes_a_repetitive_answer(subject: Subject) -> None:
    prompt = subject.chat("Count from 1 to 10, one number per line.")
    plain = run(collect(subject.engine, prompt, max_tokens=24))[1]
    penalised = run(collect(subject.engine, prompt, max_tokens=24, repetition_penalty=1.8))[1]
    assert penalised != plain


def test_max_time_ends_with_time(subject: Subject) -> None:
    chunks, _ = run(
        collect(subject.engine, subject.chat("Tell me a long story."), max_tokens=50, max_time=1e-9)
    )
    assert chunks[-1].finish_reason == "time"
    assert chunks[-1].completion_tokens < 50


def test_closing_streams_early_frees_their_places(subject: Subject) -> None:
    engine = subject.engine
    prompt = subject.chat("Tell me a long story.")

    async def abandon_then_use_every_slot() -> list[str]:
        tokens = await engine.tokenize(prompt)
        for _ in range(3):  # more abandoned streams than slots: a leak would block the next requests
            stream = engine.generate(
                GenerationRequest(tokens, SamplingParams(max_tokens=200, do_sample=False))
            )
            async with contextlib.aclosing(stream):
                await anext(stream)
        results = await asyncio.gather(*(collect(engine, prompt, max_tokens=4) for _ in range(2)))
        return [text for _, text in results]

    texts = run(abandon_then_use_every_slot(), timeout=60)
    assert len(texts) == 2 and all(texts)


def test_concurrent_sequences_do_not_mix(subject: Subject) -> None:
    prompts = [subject.chat("What is the capital of France?"), subject.chat("Name three colours.")]
    # Requests decoded in one batch are not promised bit-identical logits to requests run alone (nor
    # by llama.cpp's server or vLLM): a model's greedy text may part from the solo text at a near tie.
    near_tie = subject.engine.engine_name == "llama.cpp"  # the one engine here that reports logprobs
    options = {"max_tokens": 16, "logprobs": 5} if near_tie else {"max_tokens": 16}
    alone = [run(collect(subject.engine, p, **options)) for p in prompts]

    async def together() -> list[tuple[list[GenerationChunk], str]]:
        return list(await asyncio.gather(*(collect(subject.engine, p, **options) for p in prompts)))

    for (solo_chunks, solo_text), (chunks, text) in zip(alone, run(together()), strict=True):
        if near_tie:
            assert_same_greedy_text(solo_chunks, chunks)
        else:
            assert text == solo_text


def test_requests_past_slots_and_queue_are_refused(subject: Subject) -> None:
    small = subject.make(1, 1)
    request = GenerationRequest(run(small.tokenize("Hello")), SamplingParams(max_tokens=50, do_sample=False))

    async def overfill() -> None:
        first, second = small.generate(request), small.generate(request)
        with pytest.raises(ServerBusyError, match="busy"):
            small.generate(request)
        await first.aclose()  # closing before reading still frees its place
        await second.aclose()
        for _ in range(500):
            if small.load.active + small.load.queued == 0:
                break
            await asyncio.sleep(0.01)
        assert [c.text async for c in small.generate(request)]

    try:
        run(overfill(), timeout=60)
    finally:
        run(small.close())


@MODELS_ONLY
def test_a_closed_engine_refuses_new_requests(subject: Subject) -> None:
    engine = subject.make(1, 1)
    tokens = run(engine.tokenize("Hello"))
    run(engine.close())

    async def ask() -> None:
        engine.generate(GenerationRequest(tokens, SamplingParams(max_tokens=4)))

    with pytest.raises(EngineError, match="unloaded"):
        run(ask())
