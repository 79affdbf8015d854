"""/v1 routes on a scripted engine: OpenAI shapes, its error envelope, and parameters refused by name."""

from __future__ import annotations

from typing import Any

import pytest

from locallab.engines.fake import FakeEngine
from tests.conftest import AppFactory, FakeClock, sse_events

CHAT = {"model": "fake-chat", "messages": [{"role": "user", "content": "hi"}]}


def test_chat_completion_has_openai_shape(make_client: AppFactory) -> None:
    client = make_client(FakeEngine([b"Hel", b"lo"]))
    body = client.post("/v1/chat/completions", json=CHAT).json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert body["model"] == "fake-chat"
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello"},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    assert body["usage"]["completion_tokens"] == 2
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + 2


def test_chat_sampling_fields_reach_the_engine(make_client: AppFactory) -> None:
    engine = FakeEngine()
    client = make_client(engine)
    client.post(
        "/v1/chat/completions",
        json={
            **CHAT, "max_completion_tokens": 7, "temperature": 0, "top_p": 0.5, "seed": 9, "stop": "x",
            "presence_penalty": 0.5, "frequency_penalty": -0.5, "user": "alice", "min_p": 0.1,
        },
    )  # fmt: skip
    params = engine.requests[-1].sampling
    assert params.max_tokens == 7 and params.greedy and params.top_p == 0.5 and params.seed == 9
    assert params.stop == ("x",) and (params.presence_penalty, params.frequency_penalty) == (0.5, -0.5)
    assert params.min_p == 0.1


def test_developer_role_and_text_parts_are_understood(make_client: AppFactory) -> None:
    engine = FakeEngine()
    client = make_client(engine)
    messages = [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]},
    ]
    assert (
        client.post("/v1/chat/completions", json={"model": "fake-chat", "messages": messages}).status_code
        == 200
    )
    assert "<|im_start|>system\nBe brief.<|im_end|>" in engine.prompts[-1]
    assert "<|im_start|>user\nHi there<|im_end|>" in engine.prompts[-1]


def test_stream_with_usage_sends_a_final_usage_chunk(make_client: AppFactory) -> None:
    client = make_client(FakeEngine([b"a", b"b"]))
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    with client.stream("POST", "/v1/chat/completions", json=body) as r:
        events = sse_events(r.read().decode())
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-1]) == "ab"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 2


def test_completions_send_the_prompt_raw_with_openai_defaults(make_client: AppFactory) -> None:
    engine = FakeEngine([b" Paris", b"."])
    client = make_client(engine)
    body = client.post("/v1/completions", json={"model": "fake-chat", "prompt": "The capital is"}).json()
    assert engine.prompts[-1] == "The capital is"
    assert engine.requests[-1].sampling.max_tokens == 16
    assert body["object"] == "text_completion" and body["choices"][0]["text"] == " Paris."
    assert body["choices"][0]["finish_reason"] == "stop"


def test_models_list_and_lookup(make_client: AppFactory) -> None:
    client = make_client()
    listed = client.get("/v1/models").json()
    assert listed["object"] == "list"
    assert [m["id"] for m in listed["data"]] == ["fake-chat"]
    assert listed["data"][0]["object"] == "model" and listed["data"][0]["owned_by"] == "locallab"
    assert client.get("/v1/models/fake-chat").json()["id"] == "fake-chat"
    missing = client.get("/v1/models/no-such-model")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("path", "extra", "param"),
    [
        ("/v1/chat/completions", {"n": 2}, "n"),
        ("/v1/completions", {"tools": [{"type": "function"}]}, "tools"),
        ("/v1/chat/completions", {"logit_bias": {"1": 5}}, "logit_bias"),
        ("/v1/chat/completions", {"temperature": 3}, "temperature"),
        ("/v1/chat/completions", {"top_logprobs": 2}, "top_logprobs"),
        ("/v1/chat/completions", {"stream_options": {"include_usage": True}}, "stream_options"),
        ("/v1/chat/completions", {"max_tokens": 5, "max_completion_tokens": 6}, "max_tokens"),
        ("/v1/chat/completions", {"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
        ("/v1/chat/completions", {"frobnicate": 1}, "frobnicate"),
        ("/v1/completions", {"echo": True}, "echo"),
        ("/v1/completions", {"suffix": "x"}, "suffix"),
        ("/v1/completions", {"best_of": 3}, "best_of"),
        ("/v1/completions", {"logprobs": 9}, "logprobs"),
    ],
)
def test_parameters_we_cannot_honour_are_refused_by_name(
    make_client: AppFactory, path: str, extra: dict[str, Any], param: str
) -> None:
    base = CHAT if path.endswith("chat/completions") else {"model": "fake-chat", "prompt": "x"}
    r = make_client().post(path, json={**base, **extra})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert param.split(".")[0] in error["message"]


def test_unsupported_schema_keyword_is_refused_by_name(make_client: AppFactory) -> None:
    schema = {"type": "object", "properties": {"age": {"type": "number", "minimum": 0}}}
    body = {
        **CHAT,
        "response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": schema}},
    }
    r = make_client().post("/v1/chat/completions", json=body)
    assert r.status_code == 400
    assert "'minimum'" in r.json()["error"]["message"]
    assert r.json()["error"]["param"] == "schema.properties.age"


def test_json_schema_reaches_the_engine(make_client: AppFactory) -> None:
    engine = FakeEngine([b"{}"])
    client = make_client(engine)
    schema = {"type": "object", "properties": {"name": {"type": "string"}}}
    body = {
        **CHAT,
        "response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": schema}},
    }
    assert client.post("/v1/chat/completions", json=body).status_code == 200
    assert engine.requests[-1].sampling.json_schema == schema and engine.requests[-1].sampling.json_output


def test_seed_routes_take_format(make_client: AppFactory) -> None:
    engine = FakeEngine([b"{}"])
    client = make_client(engine)
    client.post("/generate", json={"prompt": "x", "format": "json"})
    assert engine.requests[-1].sampling.json_output and engine.requests[-1].sampling.json_schema is None
    r = client.post(
        "/chat", json={"messages": [{"role": "user", "content": "x"}], "format": {"type": "bogus"}}
    )
    assert r.status_code == 400 and "bogus" in r.json()["detail"]


def test_errors_on_v1_use_the_envelope_and_seed_routes_keep_detail(make_client: AppFactory) -> None:
    client = make_client()
    v1 = client.post("/v1/chat/completions", json={**CHAT, "model": "nope"})
    assert v1.status_code == 404 and set(v1.json()) == {"error"}
    assert set(v1.json()["error"]) == {"message", "type", "param", "code", "request_id"}
    seed = client.post("/chat", json={"messages": CHAT["messages"], "model_id": "nope"})
    assert seed.status_code == 404 and set(seed.json()) == {"detail", "request_id"}


def test_rate_limit_on_v1_uses_the_envelope(make_client: AppFactory) -> None:
    client = make_client(clock=FakeClock(), rate_limit_per_minute=60, rate_limit_burst=1)
    client.get("/v1/models")
    r = client.get("/v1/models")
    assert r.status_code == 429
    assert r.json()["error"]["type"] == "rate_limit_error" and r.headers["retry-after"]
