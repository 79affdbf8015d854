"""POST /generate and POST /chat on a scripted engine: shapes, sampling fields, streaming framing."""

from __future__ import annotations

from locallab.engines.fake import CHATML_TEMPLATE, FakeEngine
from locallab.services.chat_template import render_chat
from tests.conftest import AppFactory, sse_events


def test_generate_returns_the_documented_shape(make_client: AppFactory) -> None:
    client = make_client(FakeEngine([b"Once", b" upon", b" a", b" time"]))
    r = client.post("/generate", json={"prompt": "Tell me a story"})
    assert r.status_code == 200
    # the fake engine counts one token per character of the templated prompt
    prompt = render_chat(CHATML_TEMPLATE, [{"role": "user", "content": "Tell me a story"}])
    assert r.json() == {
        "response": "Once upon a time",
        "model": "fake-chat",
        "finish_reason": "stop",
        "usage": {
            "prompt_tokens": len(prompt),
            "completion_tokens": 4,
            "total_tokens": len(prompt) + 4,
            "prompt_tokens_details": {"cached_tokens": 0},
        },
    }


def test_generate_wraps_the_prompt_in_the_models_chat_template(make_client: AppFactory) -> None:
    engine = FakeEngine()
    client = make_client(engine)
    client.post("/generate", json={"prompt": "Hi there", "system_prompt": "Be brief."})
    assert engine.prompts[-1] == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n"
    )


def test_generate_raw_sends_the_prompt_untouched(make_client: AppFactory) -> None:
    engine = FakeEngine()
    client = make_client(engine)
    client.post("/generate", json={"prompt": "The sky is", "raw": True})
    assert engine.prompts[-1] == "The sky is"


def test_sampling_fields_reach_the_engine(make_client: AppFactory) -> None:
    engine = FakeEngine()
    client = make_client(engine)
    r = client.post(
        "/generate",
        json={
            "prompt": "x",
            "max_length": 3,
            "temperature": 0.2,
            "top_p": 0.5,
            "top_k": 7,
            "repetition_penalty": 1.3,
            "do_sample": False,
            "seed": 42,
            "stop": ["END", "\n\n"],
            "max_time": 9.5,
        },
    )
    assert r.status_code == 200
    params = engine.requests[-1].sampling
    assert (params.max_tokens, params.temperature, params.top_p, params.top_k) == (3, 0.2, 0.5, 7)
    assert (params.repetition_penalty, params.do_sample, params.seed) == (1.3, False, 42)
    assert params.stop == ("END", "\n\n") and params.max_time == 9.5 and params.greedy


def test_max_length_ends_the_answer_with_finish_reason_length(make_client: AppFactory) -> None:
    client = make_client(FakeEngine([b"a", b"b", b"c", b"d"]))
    r = client.post("/generate", json={"prompt": "x", "max_length": 2})
    assert r.json()["response"] == "ab"
    assert r.json()["finish_reason"] == "length"
    assert r.json()["usage"]["completion_tokens"] == 2


def test_default_max_length_is_512_tokens(make_client: AppFactory) -> None:
    engine = FakeEngine()
    client = make_client(engine)
    client.post("/generate", json={"prompt": "x"})
    assert engine.requests[-1].sampling.max_tokens == 512


def test_max_length_is_capped_at_the_room_left_in_the_context(make_client: AppFactory) -> None:
    engine = FakeEngine(context_length=100)
    client = make_client(engine)
    client.post("/generate", json={"prompt": "0123456789", "raw": True, "max_length": 5000})
    assert engine.requests[-1].sampling.max_tokens == 90


def test_stop_sequence_ends_the_answer_without_showing_it(make_client: AppFactory) -> None:
    client = make_client(FakeEngine([b"one", b" two", b" ST", b"OP", b" three"]))
    r = client.post("/generate", json={"prompt": "x", "stop": "STOP"})
    assert r.json()["response"] == "one two "
    assert r.json()["finish_reason"] == "stop"


def test_generate_stream_sends_text_events_then_usage_then_done(make_client: AppFactory) -> None:
    client = make_client(FakeEngine([b"Hel", b"lo", b"!"]))
    with client.stream("POST", "/generate", json={"prompt": "x", "stream": True}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = sse_events(r.read().decode())
    assert events[-1] == "[DONE]"
    assert [e["response"] for e in events[:-1]] == ["Hel", "lo", "!", ""]
    final = events[-2]
    assert final["finish_reason"] == "stop" and final["model"] == "fake-chat"
    assert final["usage"]["completion_tokens"] == 3


def test_stream_joins_a_character_split_across_tokens(make_client: AppFactory) -> None:
    robot = "🤖".encode()
    client = make_client(FakeEngine([b"hi ", robot[:2], robot[2:], b" \xc3", b"\xa9"]))
    with client.stream("POST", "/generate", json={"prompt": "x", "stream": True}) as r:
        events = sse_events(r.read().decode())
    texts = [e["response"] for e in events[:-1]]
    assert "".join(texts) == "hi 🤖 é"
    assert all("\ufffd" not in t for t in texts)


def test_chat_returns_an_openai_like_completion(make_client: AppFactory) -> None:
    client = make_client(FakeEngine([b"Paris", b"."]))
    r = client.post("/chat", json={"messages": [{"role": "user", "content": "Capital of France?"}]})
    body = r.json()
    assert r.status_code == 200
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert isinstance(body["created"], int) and body["model"] == "fake-chat"
    assert body["choices"] == [
        {"index": 0, "message": {"role": "assistant", "content": "Paris."}, "finish_reason": "stop"}
    ]
    assert body["usage"]["completion_tokens"] == 2


def test_chat_renders_every_message_through_the_template(make_client: AppFactory) -> None:
    engine = FakeEngine()
    client = make_client(engine)
    messages = [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "U1"},
        {"role": "assistant", "content": "A1"},
        {"role": "user", "content": "U2"},
    ]
    client.post("/chat", json={"messages": messages})
    assert engine.prompts[-1] == (
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU1<|im_end|>\n"
        "<|im_start|>assistant\nA1<|im_end|>\n<|im_start|>user\nU2<|im_end|>\n<|im_start|>assistant\n"
    )


def test_chat_stream_sends_openai_chunks(make_client: AppFactory) -> None:
    client = make_client(FakeEngine([b"Hi", b" you"]))
    with client.stream(
        "POST", "/chat", json={"messages": [{"role": "user", "content": "x"}], "stream": True}
    ) as r:
        events = sse_events(r.read().decode())
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "Hi you"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"]["completion_tokens"] == 2
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])


def test_engine_failure_mid_stream_arrives_as_an_error_event(make_client: AppFactory) -> None:
    client = make_client(FakeEngine([b"a", b"b", b"c"], fail_after=2))
    with client.stream("POST", "/generate", json={"prompt": "x", "stream": True}) as r:
        assert r.status_code == 200
        events = sse_events(r.read().decode())
    assert [e["response"] for e in events[:2]] == ["a", "b"]
    assert "failed" in events[2]["detail"]
    assert events[3] == "[DONE]"


def test_engine_failure_without_stream_is_a_500_without_traceback(make_client: AppFactory) -> None:
    client = make_client(FakeEngine([b"a", b"b"], fail_after=1))
    r = client.post("/generate", json={"prompt": "x"})
    assert r.status_code == 500
    assert r.json()["detail"] == "The fake engine failed as scripted."


def test_max_time_ends_the_answer_with_finish_reason_time(make_client: AppFactory) -> None:
    client = make_client(FakeEngine([b"a"] * 50, delay=0.01))
    r = client.post("/generate", json={"prompt": "x", "max_time": 0.05})
    assert r.json()["finish_reason"] == "time"
    assert 0 < r.json()["usage"]["completion_tokens"] < 50
