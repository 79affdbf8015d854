"""The remote engine's parts on their own: circuit breaker, upstream choice, and the OpenAI wire format."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from locallab.config.remote import RemoteModelConfig
from locallab.engines.base import GenerationRequest, SamplingParams
from locallab.engines.remote.breaker import CircuitBreaker
from locallab.engines.remote.pool import UpstreamPool
from locallab.engines.remote.wire import StreamFailure, StreamReader, request_body
from tests.conftest import FakeClock


def test_breaker_opens_after_failures_in_a_row_then_lets_one_trial_through() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(max_failures=2, cooldown=10.0, clock=clock)
    breaker.failed()
    breaker.succeeded()  # a success resets the count
    breaker.failed()
    assert breaker.allows()
    breaker.failed()
    assert breaker.state == "open" and not breaker.allows()
    clock.advance(10.0)
    assert breaker.state == "half_open" and breaker.allows()
    breaker.begin()
    assert not breaker.allows()  # one trial at a time
    breaker.failed()
    assert breaker.state == "open"  # the trial failed: another cooldown
    clock.advance(10.0)
    breaker.begin()
    breaker.succeeded()
    assert breaker.state == "closed" and breaker.allows()


def test_a_cancelled_trial_lets_the_next_request_try() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(max_failures=1, cooldown=1.0, clock=clock)
    breaker.failed()
    clock.advance(1.0)
    breaker.begin()
    breaker.released()
    assert breaker.allows()


def pool_of(n: int) -> UpstreamPool:
    config = RemoteModelConfig("m", tuple(f"http://u{i}/v1" for i in range(n)), "m", max_failures=1)
    return UpstreamPool(config, httpx.AsyncClient(), {})


def test_pool_picks_the_least_outstanding_and_takes_turns_on_ties() -> None:
    pool = pool_of(3)
    first = [pool.pick(set()) for _ in range(3)]
    assert len({id(u) for u in first}) == 3  # idle: each in turn
    a, b, c = pool.upstreams
    pool.begin(a)
    pool.begin(a)
    pool.begin(b)
    assert pool.pick(set()) is c
    assert pool.pick({c}) is b
    assert pool.pick({b, c}) is a


def test_pool_skips_unhealthy_and_open_upstreams() -> None:
    pool = pool_of(3)
    a, b, c = pool.upstreams
    a.healthy = False
    pool.begin(b)
    pool.end(b, "error_before_first_token", "connect")  # max_failures=1: open
    assert pool.pick(set()) is c
    assert pool.pick({c}) is None


def request(**sampling: Any) -> GenerationRequest:
    messages = ({"role": "user", "content": "hi"},)
    return GenerationRequest([], SamplingParams(max_tokens=7, **sampling), messages=messages)


def test_chat_body_carries_messages_sampling_and_asks_for_usage() -> None:
    config = RemoteModelConfig("m", ("http://u/v1",), "org/model")
    path, body = request_body(config, request(do_sample=False, stop=("END",), seed=3, top_k=5))
    assert path == "/chat/completions"
    assert body["model"] == "org/model" and body["messages"] == [{"role": "user", "content": "hi"}]
    assert body["temperature"] == 0.0 and body["max_tokens"] == 7 and body["stop"] == ["END"]
    assert body["seed"] == 3 and body["top_k"] == 5 and body["repetition_penalty"] == 1.0
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert "min_p" not in body
    assert request_body(config, request(min_p=0.1))[1]["min_p"] == 0.1  # vLLM's and llama.cpp's extension


def test_plain_prompts_go_to_completions_and_extensions_can_be_left_out() -> None:
    config = RemoteModelConfig("m", ("http://u/v1",), "m", sampling_extensions=False)
    plain = GenerationRequest([], SamplingParams(max_tokens=3, json_output=True), prompt="The sky is")
    path, body = request_body(config, plain)
    assert path == "/completions" and body["prompt"] == "The sky is"
    assert "top_k" not in body and "repetition_penalty" not in body
    assert body["response_format"] == {"type": "json_object"}


def test_reader_follows_a_vllm_style_chat_stream() -> None:
    reader = StreamReader(chat=True)
    lines = [
        'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}',
        "",
        'data: {"choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}',
        ": keep-alive comment",
        'data: {"choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":"length"}]}',
        'data: {"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}',
        "data: [DONE]",
    ]
    texts = [reader.feed(line) for line in lines]
    assert [t for t in texts if t] == ["Hel"]
    assert reader.tail == "lo" and reader.finish_reason() == "length" and reader.done
    assert (reader.count("prompt_tokens", 0), reader.count("completion_tokens", 0)) == (9, 2)


def test_reader_counts_events_when_the_upstream_reports_no_usage() -> None:
    reader = StreamReader(chat=False)
    for text in ("a", "b"):
        reader.feed(f'data: {{"choices":[{{"text":"{text}","finish_reason":null}}]}}')
    reader.feed('data: {"choices":[{"text":"","finish_reason":"stop"}]}')
    assert reader.count("completion_tokens", reader.events) == 2 and reader.finish_reason() == "stop"


@pytest.mark.parametrize(
    "line",
    ["data: {not json", 'data: {"error": {"message": "CUDA out of memory"}}', "data: [1, 2]"],
)
def test_reader_turns_broken_or_failed_events_into_stream_failures(line: str) -> None:
    with pytest.raises(StreamFailure):
        StreamReader(chat=True).feed(line)


def test_reader_keeps_the_stop_sequence_a_vllm_upstream_names() -> None:
    reader = StreamReader(chat=True)
    reader.feed('data: {"choices":[{"delta":{"content":""},"finish_reason":"stop","stop_reason":"END"}]}')
    assert reader.finish_reason() == "stop" and reader.stop_sequence == "END"
    other = StreamReader(chat=True)
    other.feed('data: {"choices":[{"delta":{},"finish_reason":"stop","stop_reason":128001}]}')  # a token id
    assert other.stop_sequence is None
