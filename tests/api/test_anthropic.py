"""/v1/messages on a scripted engine: Anthropic's shapes, its error envelope, its named stream events."""

from __future__ import annotations

import json
from typing import Any

import pytest

from locallab.engines.fake import FakeEngine
from tests.conftest import AppFactory, FakeClock

WEATHER = {
    "name": "get_weather",
    "description": "Weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
BODY: dict[str, Any] = {
    "model": "fake-chat",
    "max_tokens": 16,
    "messages": [{"role": "user", "content": "hi"}],
}


def named_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        name_line, data_line = block.split("\n")
        assert name_line.startswith("event: ") and data_line.startswith("data: "), block
        events.append((name_line[7:], json.loads(data_line[6:])))
    return events


def test_message_has_anthropic_shape(make_client: AppFactory) -> None:
    client = make_client(FakeEngine([b"Hel", b"lo"]))
    body = client.post("/v1/messages", json=BODY).json()
    assert body["id"].startswith("msg_") and body["type"] == "message" and body["role"] == "assistant"
    assert body["model"] == "fake-chat"
    assert body["content"] == [{"type": "text", "text": "Hello"}]
    assert body["stop_reason"] == "end_turn" and body["stop_sequence"] is None
    assert body["usage"]["output_tokens"] == 2 and body["usage"]["input_tokens"] > 0


def test_system_blocks_and_sampling_reach_the_engine(make_client: AppFactory) -> None:
    engine = FakeEngine()
    client = make_client(engine)
    request = {
        **BODY,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
        "temperature": 0, "top_p": 0.5, "top_k": 7, "metadata": {"user_id": "u1"},
    }  # fmt: skip
    assert client.post("/v1/messages", json=request).status_code == 200
    assert "<|im_start|>system\nBe brief.<|im_end|>" in engine.prompts[-1]
    params = engine.requests[-1].sampling
    assert params.greedy and params.top_p == 0.5 and params.top_k == 7 and params.max_tokens == 16


def test_stop_sequence_is_reported(make_client: AppFactory) -> None:
    client = make_client(FakeEngine([b"one ", b"two ", b"three"]))
    body = client.post("/v1/messages", json={**BODY, "stop_sequences": ["two"]}).json()
    assert body["content"][0]["text"] == "one "
    assert (body["stop_reason"], body["stop_sequence"]) == ("stop_sequence", "two")


def test_token_limit_is_max_tokens(make_client: AppFactory) -> None:
    client = make_client(FakeEngine([b"a"] * 10))
    body = client.post("/v1/messages", json={**BODY, "max_tokens": 3}).json()
    assert body["stop_reason"] == "max_tokens" and body["usage"]["output_tokens"] == 3


def test_assistant_prefill_is_continued(make_client: AppFactory) -> None:
    engine = FakeEngine([b"!"])
    client = make_client(engine)
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello"}]
    assert client.post("/v1/messages", json={**BODY, "messages": messages}).status_code == 200
    assert engine.prompts[-1].endswith("<|im_start|>assistant\nHello")


def test_stream_has_anthropic_event_names_in_order(make_client: AppFactory) -> None:
    client = make_client(FakeEngine([b"Hel", b"lo"]))
    response = client.post("/v1/messages", json={**BODY, "stream": True})
    assert response.headers["content-type"].startswith("text/event-stream")
    events = named_events(response.text)
    names = [name for name, _ in events]
    assert names == [
        "message_start", "content_block_start", "ping", "content_block_delta", "content_block_delta",
        "content_block_stop", "message_delta", "message_stop",
    ]  # fmt: skip
    assert all(payload["type"] == name for name, payload in events)
    assert "".join(p["delta"]["text"] for n, p in events if n == "content_block_delta") == "Hello"
    delta = events[-2][1]
    assert delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert delta["usage"]["output_tokens"] == 2
    assert events[0][1]["message"]["usage"]["input_tokens"] > 0


def test_error_after_the_stream_began_is_an_error_event(make_client: AppFactory) -> None:
    client = make_client(FakeEngine([b"a", b"b", b"c"], fail_after=1))
    events = named_events(client.post("/v1/messages", json={**BODY, "stream": True}).text)
    name, payload = events[-1]
    assert name == "error" and payload["type"] == "error"
    assert payload["error"]["type"] == "api_error"


def test_count_tokens_uses_the_chat_template(make_client: AppFactory) -> None:
    client = make_client(FakeEngine())
    body = {"model": "fake-chat", "messages": [{"role": "user", "content": "hi"}]}
    counted = client.post("/v1/messages/count_tokens", json=body).json()["input_tokens"]
    # the fake tokenizer counts characters of the rendered ChatML prompt
    assert counted == len("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")


@pytest.mark.parametrize(
    ("change", "status", "kind", "words"),
    [
        ({"max_tokens": None}, 400, "invalid_request_error", "max_tokens: this field is required"),
        ({"model": "no-such-model"}, 404, "not_found_error", "no-such-model"),
        ({"thinking": {"type": "enabled", "budget_tokens": 1024}}, 400, "invalid_request_error", "thinking"),
        (
            {"tool_choice": {"type": "tool"}, "tools": [WEATHER]},
            400, "invalid_request_error", "tool_choice.name",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "base64"}}]}]},
            400, "invalid_request_error", "messages[0].content[0]: image blocks are not supported",
        ),
        ({"temperature": 1.5}, 400, "invalid_request_error", "temperature"),
    ],
)  # fmt: skip
def test_errors_use_anthropics_envelope(
    make_client: AppFactory, change: dict[str, Any], status: int, kind: str, words: str
) -> None:
    client = make_client(FakeEngine())
    body = {k: v for k, v in {**BODY, **change}.items() if v is not None}
    response = client.post("/v1/messages", json=body)
    assert response.status_code == status
    payload = response.json()
    assert payload["type"] == "error" and payload["error"]["type"] == kind
    assert words in payload["error"]["message"]


def test_x_api_key_and_anthropic_headers_are_accepted(make_client: AppFactory) -> None:
    client = make_client(FakeEngine(), api_keys="secret")
    headers = {"anthropic-version": "2023-06-01", "anthropic-beta": "tools-2024-04-04"}
    ok = client.post("/v1/messages", json=BODY, headers={**headers, "x-api-key": "secret"})
    assert ok.status_code == 200
    wrong = client.post("/v1/messages", json=BODY, headers={**headers, "x-api-key": "nope"})
    assert wrong.status_code == 401 and wrong.json()["error"]["type"] == "authentication_error"


def test_output_config_format_uses_the_json_grammar(make_client: AppFactory) -> None:
    engine = FakeEngine([b"{}"])
    client = make_client(engine)
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    fmt = {"type": "json_schema", "schema": schema}
    body = {**BODY, "output_config": {"format": fmt, "effort": "low"}}
    assert client.post("/v1/messages", json=body).status_code == 200
    params = engine.requests[-1].sampling
    assert params.json_output and params.json_schema == schema


def test_pings_keep_a_waiting_stream_alive(make_client: AppFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    from locallab.api.anthropic import routes

    monkeypatch.setattr(routes, "PING_SECONDS", 0.01)
    client = make_client(FakeEngine([b"a", b"b"], delay=0.3))  # 30 ping intervals between tokens
    names = [
        name for name, _ in named_events(client.post("/v1/messages", json={**BODY, "stream": True}).text)
    ]
    first_delta = names.index("content_block_delta")
    assert names[2:first_delta].count("ping") > 1  # the one after message_start, then while waiting
    assert names[-1] == "message_stop"


def test_rate_limit_and_a_full_queue_use_anthropics_error_types(make_client: AppFactory) -> None:
    limited = make_client(FakeEngine(), clock=FakeClock(), rate_limit_per_minute=1, rate_limit_burst=1)
    assert limited.post("/v1/messages", json=BODY).status_code == 200
    refused = limited.post("/v1/messages", json=BODY)
    assert refused.status_code == 429 and refused.json()["error"]["type"] == "rate_limit_error"
    busy = make_client(FakeEngine(parallel=0, max_queue=0)).post(
        "/v1/messages", json={**BODY, "stream": True}
    )
    assert busy.status_code == 503 and busy.json()["error"]["type"] == "overloaded_error"
    assert "Retry-After" in busy.headers


def test_tool_calls_come_back_as_tool_use_blocks(make_client: AppFactory) -> None:
    pieces = [
        b"Let me check.\n<tool_call>\n",
        b'{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
    ]
    engine = FakeEngine(pieces)
    client = make_client(engine)
    body = client.post("/v1/messages", json={**BODY, "tools": [WEATHER]}).json()
    assert body["stop_reason"] == "tool_use"
    text, call = body["content"]
    assert text == {"type": "text", "text": "Let me check."}
    assert call["type"] == "tool_use" and call["name"] == "get_weather" and call["input"] == {"city": "Paris"}
    assert "get_weather" in engine.prompts[-1]  # the tools are in the prompt


def test_forced_tool_choice_reaches_the_engine_as_a_grammar(make_client: AppFactory) -> None:
    engine = FakeEngine(
        [b'<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>']
    )
    client = make_client(engine)
    choice = {"type": "tool", "name": "get_weather"}
    body = client.post("/v1/messages", json={**BODY, "tools": [WEATHER], "tool_choice": choice}).json()
    assert body["content"][0]["input"] == {"city": "Oslo"} and body["stop_reason"] == "tool_use"
    assert engine.requests[-1].sampling.call_grammar is not None


def test_tool_use_and_tool_result_turns_reach_the_prompt(make_client: AppFactory) -> None:
    engine = FakeEngine([b"It is sunny."])
    client = make_client(engine)
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny, 21 C"}],
        },
    ]
    body = client.post("/v1/messages", json={**BODY, "tools": [WEATHER], "messages": messages}).json()
    assert body["content"] == [{"type": "text", "text": "It is sunny."}] and body["stop_reason"] == "end_turn"
    assert "sunny, 21 C" in engine.prompts[-1] and '"city": "Paris"' in engine.prompts[-1]


TWO_CALLS = (
    "Let me check.\n<tool_call>\n"
    '{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n<tool_call>\n'
    '{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'
)


def _assemble(events: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Content blocks as a client builds them from the stream: starts, deltas (JSON joined), stops."""
    blocks: list[dict[str, Any]] = []
    json_parts: dict[int, str] = {}
    open_index: int | None = None
    for name, payload in events:
        if name == "content_block_start":
            assert open_index is None and payload["index"] == len(blocks)  # one block at a time, in order
            blocks.append(dict(payload["content_block"]))
            open_index = payload["index"]
        elif name == "content_block_delta":
            assert payload["index"] == open_index
            delta = payload["delta"]
            if delta["type"] == "text_delta":
                blocks[open_index]["text"] += delta["text"]
            else:
                assert delta["type"] == "input_json_delta" and blocks[open_index]["type"] == "tool_use"
                json_parts[open_index] = json_parts.get(open_index, "") + delta["partial_json"]
        elif name == "content_block_stop":
            assert payload["index"] == open_index
            open_index = None
    assert open_index is None
    for index, text in json_parts.items():
        blocks[index]["input"] = json.loads(text)
    return blocks


def _without_ids(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in block.items() if k != "id"} for block in blocks]


def test_streamed_tool_use_assembles_to_the_whole_message(make_client: AppFactory) -> None:
    client = make_client(FakeEngine([c.encode() for c in TWO_CALLS]))  # one character a token
    request = {**BODY, "tools": [WEATHER], "max_tokens": 500}
    whole = client.post("/v1/messages", json=request).json()
    events = named_events(client.post("/v1/messages", json={**request, "stream": True}).text)
    names = [name for name, _ in events]
    assert names[:2] == ["message_start", "ping"] and names[-2:] == ["message_delta", "message_stop"]
    content = _assemble(events)
    assert _without_ids(content) == _without_ids(whole["content"])
    assert [b["type"] for b in content] == ["text", "tool_use", "tool_use"]
    assert content[0]["text"] == "Let me check."  # no markup, not even a partial marker
    starts = [p["content_block"] for n, p in events if n == "content_block_start"][1:]
    assert all(s["input"] == {} and s["id"].startswith("call_") for s in starts)
    assert len({s["id"] for s in starts}) == 2
    assert events[-2][1]["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert whole["stop_reason"] == "tool_use"


def test_a_streamed_answer_that_only_calls_has_no_text_block(make_client: AppFactory) -> None:
    markup = b'<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'
    engine = FakeEngine([markup])
    client = make_client(engine)
    choice = {"type": "tool", "name": "get_weather"}
    body = {**BODY, "tools": [WEATHER], "tool_choice": choice, "stream": True}
    events = named_events(client.post("/v1/messages", json=body).text)
    assert _without_ids(_assemble(events)) == [
        {"type": "tool_use", "name": "get_weather", "input": {"city": "Oslo"}}
    ]
    assert engine.requests[-1].sampling.call_grammar is not None


def test_a_streamed_answer_without_calls_is_one_text_block(make_client: AppFactory) -> None:
    client = make_client(FakeEngine([b"It is ", b"sunny."]))
    events = named_events(client.post("/v1/messages", json={**BODY, "tools": [WEATHER], "stream": True}).text)
    assert _assemble(events) == [{"type": "text", "text": "It is sunny."}]
    assert events[-2][1]["delta"]["stop_reason"] == "end_turn"


def test_a_call_cut_off_by_max_tokens_stops_for_max_tokens(make_client: AppFactory) -> None:
    pieces = [b'<tool_call>\n{"name": "get_weather", "arguments": {"city": "Par', b"is", b'"}}']
    client = make_client(FakeEngine(pieces))
    request = {**BODY, "tools": [WEATHER], "max_tokens": 1}
    whole = client.post("/v1/messages", json=request).json()
    assert whole["stop_reason"] == "max_tokens"
    assert whole["content"] == [{"type": "tool_use", "id": whole["content"][0]["id"], "name": "get_weather",
                                 "input": {}}]  # fmt: skip
    events = named_events(client.post("/v1/messages", json={**request, "stream": True}).text)
    assert events[-2][1]["delta"]["stop_reason"] == "max_tokens"


def test_tool_fields_agents_send_are_accepted(make_client: AppFactory) -> None:
    client = make_client(FakeEngine([b"ok"]))
    tool = {**WEATHER, "strict": True, "eager_input_streaming": True, "input_examples": [{"city": "Oslo"}]}
    response = client.post("/v1/messages", json={**BODY, "tools": [tool], "stream": True})
    assert response.status_code == 200 and "event: message_stop" in response.text
    unknown = client.post("/v1/messages", json={**BODY, "tools": [{**WEATHER, "defer_loading": True}]})
    assert unknown.status_code == 400 and "defer_loading" in unknown.json()["error"]["message"]
