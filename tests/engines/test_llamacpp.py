"""The llama.cpp engine on the real default model: metadata, sampling, text, limits, cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from locallab.engines.base import GenerationChunk, GenerationRequest, SamplingParams
from locallab.engines.llamacpp import LlamaCppEngine, load_llamacpp_engine
from locallab.engines.llamacpp.native import token_bytes
from locallab.errors import ModelLoadError, ServerBusyError
from locallab.services.chat_template import render_chat
from tests.real_model import assert_same_greedy_text, collect, default_model_path, run

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def engine() -> Iterator[LlamaCppEngine]:
    loaded = load_llamacpp_engine(
        default_model_path(), context_length=512, parallel=2, threads=2, batch_size=256
    )
    yield loaded
    run(loaded.close())


@pytest.fixture(scope="module")
def caching_engine() -> Iterator[LlamaCppEngine]:
    """Keeps finished requests' prefixes while idle (not deterministic), for the prefix-cache tests."""
    loaded = load_llamacpp_engine(
        default_model_path(), context_length=512, parallel=2, threads=2, batch_size=256, deterministic=False
    )
    yield loaded
    run(loaded.close())


def chat_prompt(engine: LlamaCppEngine, text: str) -> str:
    assert engine.info.chat_template is not None
    return render_chat(engine.info.chat_template, [{"role": "user", "content": text}])


def test_metadata_comes_from_the_gguf_file(engine: LlamaCppEngine) -> None:
    info = engine.info
    assert info.architecture == "llama"
    assert info.context_length == 8192
    assert 130_000_000 < info.parameters < 140_000_000
    assert info.quantization == "Q4_1"
    assert info.chat_template is not None and "<|im_start|>" in info.chat_template
    assert info.eos_token == "<|im_end|>"
    assert engine.context_length == 512


def test_template_markers_become_special_tokens(engine: LlamaCppEngine) -> None:
    tokens = run(engine.tokenize("<|im_start|>user\nhi<|im_end|>"))
    plain = run(engine.tokenize("im_start"))
    assert len(tokens) < 8  # the markers are one token each, not spelled out
    assert tokens[0] not in plain


def test_greedy_decoding_is_deterministic(engine: LlamaCppEngine) -> None:
    # The second run reads the prompt from the first one's cells: equal up to kernel rounding.
    prompt = chat_prompt(engine, "Name three colours.")
    first, text = run(collect(engine, prompt, logprobs=5))
    second, _ = run(collect(engine, prompt, logprobs=5))
    assert len(text) > 10
    assert_same_greedy_text(first, second)


def test_same_seed_same_sample_different_seed_differs(engine: LlamaCppEngine) -> None:
    prompt = chat_prompt(engine, "Write a short poem about the sea.")
    options = {"do_sample": True, "temperature": 1.2, "top_p": 1.0, "top_k": 0, "max_tokens": 24}
    a = run(collect(engine, prompt, seed=7, **options))[1]
    b = run(collect(engine, prompt, seed=7, **options))[1]
    c = run(collect(engine, prompt, seed=8, **options))[1]
    assert a == b
    assert a != c


def test_min_p_one_keeps_only_the_likeliest_token(engine: LlamaCppEngine) -> None:
    prompt = chat_prompt(engine, "Write a short poem about the sea.")
    hot = {"do_sample": True, "temperature": 1.5, "top_p": 1.0, "top_k": 0, "max_tokens": 16}
    greedy = run(collect(engine, prompt, do_sample=False, max_tokens=16))[1]
    assert run(collect(engine, prompt, seed=7, min_p=1.0, **hot))[1] == greedy
    assert run(collect(engine, prompt, seed=7, **hot))[1] != greedy


def test_max_tokens_ends_with_length_and_counts_usage(engine: LlamaCppEngine) -> None:
    chunks, _ = run(collect(engine, chat_prompt(engine, "Tell me a long story."), max_tokens=5))
    last = chunks[-1]
    assert last.finish_reason == "length"
    assert last.completion_tokens == 5
    assert last.prompt_tokens == len(run(engine.tokenize(chat_prompt(engine, "Tell me a long story."))))


def test_end_of_turn_token_ends_with_stop(engine: LlamaCppEngine) -> None:
    chunks, text = run(collect(engine, chat_prompt(engine, "Say OK."), max_tokens=200))
    assert chunks[-1].finish_reason == "stop"
    assert "<|im_end|>" not in text


def test_stop_sequence_cuts_the_text(engine: LlamaCppEngine) -> None:
    prompt = chat_prompt(engine, "Count from 1 to 10, one number per line.")
    _, full = run(collect(engine, prompt, max_tokens=40))
    assert "3" in full
    chunks, cut = run(collect(engine, prompt, max_tokens=40, stop=("3",)))
    assert chunks[-1].finish_reason == "stop"
    assert cut == full[: full.index("3")]


def test_streamed_text_is_whole_utf8_even_when_tokens_split_characters(engine: LlamaCppEngine) -> None:
    prompt = chat_prompt(engine, "Translate 'thank you' to Japanese.")
    chunks, text = run(collect(engine, prompt, max_tokens=40))
    assert any(ord(ch) > 0x3000 for ch in text)  # the answer has Japanese characters
    assert all("\ufffd" not in c.text for c in chunks)
    # the premise: some token of this answer is only part of a character
    tokens = run(engine.tokenize(text))
    buf = ctypes.create_string_buffer(256)
    partial = 0
    for token in tokens:
        try:
            token_bytes(engine._native.vocab, token, buf).decode("utf-8")
        except UnicodeDecodeError:
            partial += 1
    assert partial > 0


def test_closing_the_stream_early_frees_the_sequence(engine: LlamaCppEngine) -> None:
    prompt = chat_prompt(engine, "Tell me a long story.")

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


def test_concurrent_sequences_do_not_mix(engine: LlamaCppEngine) -> None:
    prompts = [
        chat_prompt(engine, "What is the capital of France?"),
        chat_prompt(engine, "Name three colours."),
    ]
    # One batch is not promised bit-identical logits to a solo run: the text may part at a near tie.
    alone = [run(collect(engine, p, max_tokens=16, logprobs=5))[0] for p in prompts]

    async def together() -> list[list[GenerationChunk]]:
        results = await asyncio.gather(*(collect(engine, p, max_tokens=16, logprobs=5) for p in prompts))
        return [chunks for chunks, _ in results]

    for solo, batched in zip(alone, run(together()), strict=True):
        assert_same_greedy_text(solo, batched)


def test_truncated_gguf_is_a_load_error_with_the_reason(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    with default_model_path().open("rb") as src, broken.open("wb") as dst:
        dst.write(src.read(1_000_000))
    with pytest.raises(ModelLoadError, match=r"broken\.gguf is not a valid GGUF file"):
        load_llamacpp_engine(broken, context_length=512, parallel=1, threads=1, batch_size=64)


def test_file_that_is_not_gguf_is_refused_before_parsing(tmp_path: Path) -> None:
    fake = tmp_path / "notes.gguf"
    shutil.copyfile(__file__, fake)
    with pytest.raises(ModelLoadError, match="not a valid GGUF"):
        load_llamacpp_engine(fake, context_length=512, parallel=1, threads=1, batch_size=64)


def test_follow_up_turn_reuses_the_cached_prefix(caching_engine: LlamaCppEngine) -> None:
    engine = caching_engine
    assert engine.info.chat_template is not None
    first = [{"role": "user", "content": "Name a fruit."}]
    chunks, answer = run(collect(engine, render_chat(engine.info.chat_template, first), max_tokens=12))
    assert chunks[-1].cached_tokens == 0 or chunks[-1].cached_tokens < chunks[-1].prompt_tokens
    follow_up = [
        *first,
        {"role": "assistant", "content": answer},
        {"role": "user", "content": "Another one?"},
    ]
    chunks2, _ = run(collect(engine, render_chat(engine.info.chat_template, follow_up), max_tokens=4))
    first_prompt_tokens = chunks[-1].prompt_tokens
    assert chunks2[-1].cached_tokens >= first_prompt_tokens  # the whole first turn came from the cache
    assert chunks2[-1].cached_tokens < chunks2[-1].prompt_tokens


def test_cached_prefix_gives_the_same_greedy_answer(caching_engine: LlamaCppEngine) -> None:
    engine = caching_engine
    prompt = chat_prompt(engine, "List three animals.")
    first = run(collect(engine, prompt, max_tokens=16, logprobs=5))
    again = run(collect(engine, prompt, max_tokens=16, logprobs=5))
    # The whole prompt came from the pool, and its first token from the logits kept with it.
    assert again[0][-1].cached_tokens == again[0][-1].prompt_tokens
    assert again[0][0].logprobs[0] == first[0][0].logprobs[0]
    assert_same_greedy_text(first[0], again[0])


def test_requests_past_slots_and_queue_are_refused(tmp_path: Path) -> None:
    small = load_llamacpp_engine(
        default_model_path(), context_length=256, parallel=1, threads=2, batch_size=64, max_queue=1
    )
    request = GenerationRequest(run(small.tokenize("Hello")), SamplingParams(max_tokens=50, do_sample=False))

    async def overfill() -> None:
        first, second = small.generate(request), small.generate(request)
        with pytest.raises(ServerBusyError, match="busy"):
            small.generate(request)
        assert small.load.active + small.load.queued == 2
        await first.aclose()  # closing before reading still frees its place
        await second.aclose()
        for _ in range(500):  # the engine thread frees them at its next step
            if small.load.active + small.load.queued == 0:
                break
            await asyncio.sleep(0.01)
        third = small.generate(request)
        texts = [c.text async for c in third]
        assert texts

    try:
        run(overfill(), timeout=60)
    finally:
        run(small.close())


def test_schema_grammar_keeps_control_characters_out_of_strings() -> None:
    from locallab.engines.llamacpp.sampling import grammar_for

    grammar = grammar_for(SamplingParams(max_tokens=1, json_schema={"type": "string"}))
    assert grammar is not None
    char_rule = next(line for line in grammar.splitlines() if line.startswith("char ::="))
    assert "\\x00-\\x1F" in char_rule  # JSON strings may not hold raw newlines or tabs


def test_json_schema_output_parses_and_validates(engine: LlamaCppEngine) -> None:
    import json

    schema = {
        "type": "object",
        "properties": {"ok": {"type": "boolean"}, "n": {"type": "integer"}},
        "required": ["ok", "n"],
    }
    chunks, text = run(
        collect(
            engine,
            chat_prompt(engine, "Reply with JSON."),
            max_tokens=40,
            json_schema=schema,
            json_output=True,
        )
    )
    assert chunks[-1].finish_reason == "stop"
    value = json.loads(text)
    assert isinstance(value["ok"], bool) and isinstance(value["n"], int)


def test_logprobs_report_the_chosen_token_and_its_alternatives(engine: LlamaCppEngine) -> None:
    chunks, text = run(collect(engine, chat_prompt(engine, "Say hello."), max_tokens=4, logprobs=3))
    entries = [e for c in chunks for e in c.logprobs]
    assert len(entries) == 4
    assert b"".join(e.text for e in entries).decode() == text
    for entry in entries:
        assert entry.logprob <= 0 and len(entry.top) == 3
        assert entry.top[0][1] >= entry.logprob  # greedy picked the likeliest: it is the top entry
        assert entry.top[0][0] == entry.text
