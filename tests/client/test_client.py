"""The Python client against the real app over HTTP (uvicorn on loopback, scripted engine)."""

from __future__ import annotations

import asyncio

import pytest

from locallab.client import (
    AsyncClient,
    BadRequestError,
    Client,
    NotFoundError,
    RateLimitError,
    ServerUnavailableError,
    ServiceUnavailableError,
    StreamError,
)
from locallab.engines.fake import FakeEngine
from tests.conftest import LiveServerFactory, free_port

USER = [{"role": "user", "content": "hi"}]


def test_every_route_answers(serve_app: LiveServerFactory) -> None:
    with Client(serve_app(FakeEngine([b"Hi", b" there"]))) as client:
        assert client.generate("x")["response"] == "Hi there"
        assert "".join(client.stream_generate("x")) == "Hi there"
        assert client.chat(USER)["choices"][0]["message"]["content"] == "Hi there"
        assert "".join(client.stream_chat(USER, max_length=1)) == "Hi"
        assert client.generate_batch(["a", "b"])["responses"] == ["Hi there", "Hi there"]
        assert client.models()["current_model"] == "fake-chat"
        assert client.current_model()["id"] == "fake-chat"
        assert client.load_model("fake-chat")["status"] == "success"
        assert client.system_info()["active_model"] == "fake-chat"
        assert client.health()["model_status"] == "ready"
        assert client.ready() == {"status": "ready", "model": "fake-chat"}


def test_options_pass_through(serve_app: LiveServerFactory) -> None:
    engine = FakeEngine([b"a", b"b", b"c"])
    with Client(serve_app(engine)) as client:
        assert client.generate("x", max_length=2, seed=5)["finish_reason"] == "length"
    assert engine.requests[-1].sampling.seed == 5


def test_errors_are_typed_and_carry_the_detail(serve_app: LiveServerFactory) -> None:
    with Client(serve_app(FakeEngine())) as client:
        with pytest.raises(NotFoundError) as missing:
            client.load_model("no-such-model")
        assert missing.value.status == 404 and "Unknown model 'no-such-model'" in missing.value.detail
        with pytest.raises(BadRequestError) as bad:
            client.generate("x", temperature=9)
        assert "temperature" in bad.value.detail
        with pytest.raises(BadRequestError):
            list(client.stream_generate(""))


def test_error_inside_a_stream_raises_stream_error(serve_app: LiveServerFactory) -> None:
    with Client(serve_app(FakeEngine([b"a", b"b", b"c"], fail_after=2))) as client:
        received = []
        with pytest.raises(StreamError, match="failed as scripted"):
            for piece in client.stream_chat(USER):
                received.append(piece)
        assert received == ["a", "b"]


def test_rate_limit_raises_at_once_by_default_and_retries_when_asked(serve_app: LiveServerFactory) -> None:
    url = serve_app(FakeEngine(), rate_limit_per_minute=120, rate_limit_burst=1)
    with Client(url) as client:
        client.health()  # exempt: does not use the budget
        client.current_model()
        with pytest.raises(RateLimitError) as limited:
            client.current_model()
        assert limited.value.retry_after == 1
    with Client(url, retries=2) as patient:
        assert patient.current_model()["id"] == "fake-chat"  # waited for Retry-After, then succeeded


def test_server_down_is_a_clear_error() -> None:
    with (
        Client(f"http://127.0.0.1:{free_port()}") as client,
        pytest.raises(ServerUnavailableError, match="locallab start"),
    ):
        client.health()


def test_async_client_mirrors_the_blocking_one(serve_app: LiveServerFactory) -> None:
    url = serve_app(FakeEngine([b"Hi", b"!"]))

    async def use() -> tuple[str, str, str]:
        async with AsyncClient(url) as client:
            plain = (await client.generate("x"))["response"]
            streamed = "".join([piece async for piece in client.stream_chat(USER)])
            with pytest.raises(NotFoundError):
                await client.load_model("nope")
            assert (await client.ready())["status"] == "ready"
            return plain, streamed, (await client.health())["status"]

    assert asyncio.run(use()) == ("Hi!", "Hi!", "healthy")


def test_ready_raises_with_the_reason_when_the_server_is_not_ready(serve_app: LiveServerFactory) -> None:
    with Client(serve_app(FakeEngine())) as client:
        client._request("POST", "/models/unload", {"model_id": "fake-chat"})
        with pytest.raises(ServiceUnavailableError, match="unloaded"):
            client.ready()


def test_chat_with_tools_returns_the_calls(serve_app: LiveServerFactory) -> None:
    engine = FakeEngine([b'<tool_call>\n{"name": "get_time", "arguments": {"tz": "UTC"}}\n</tool_call>'])
    tool = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
    with Client(serve_app(engine)) as client:
        choice = client.chat(USER, tools=[tool], tool_choice="required")["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"][0]["function"] == {
        "name": "get_time",
        "arguments": '{"tz": "UTC"}',
    }
