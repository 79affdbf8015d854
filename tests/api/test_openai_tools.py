"""Tool calling on /v1/chat/completions with a scripted engine: the OpenAI wire shapes, streamed and
whole, the constraint handed to the engine, tools in the prompt, and bad input refused by name."""

from __future__ import annotations

import json
from typing import Any

import pytest

from locallab.engines.fake import FakeEngine
from tests.conftest import AppFactory, sse_events

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TIME = {
    "type": "function",
    "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
}
ASK = {
    "model": "fake-chat",
    "messages": [{"role": "user", "content": "Weather in Paris?"}],
    "tools": [WEATHER, TIME],
}
TWO_CALLS = [
    b"Let me check.\n<tool",
    b'_call>\n{"name": "get_weather", "arguments": {"city": "Pa',
    b'ris"}}\n</tool_call>\n<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>',
]


def _pieces(text: str) -> list[bytes]:
    return [c.encode() for c in text]


def test_calls_come_back_as_tool_calls(make_client: AppFactory) -> None:
    body = make_client(FakeEngine(TWO_CALLS)).post("/v1/chat/completions", json=ASK).json()
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    message = choice["message"]
    assert message["content"] == "Let me check."
    calls = message["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["get_weather", "get_time"]
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [{"city": "Paris"}, {}]
    assert all(c["type"] == "function" and c["id"].startswith("call_") for c in calls)
    assert len({c["id"] for c in calls}) == 2


def test_only_a_call_gives_null_content(make_client: AppFactory) -> None:
    engine = FakeEngine([b'<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>'])
    message = make_client(engine).post("/v1/chat/completions", json=ASK).json()["choices"][0]["message"]
    assert message["content"] is None and len(message["tool_calls"]) == 1


def test_streamed_calls_reassemble_to_the_whole_answer(make_client: AppFactory) -> None:
    client = make_client(FakeEngine(_pieces(b"".join(TWO_CALLS).decode())))
    whole = client.post("/v1/chat/completions", json=ASK).json()["choices"][0]
    events = sse_events(client.post("/v1/chat/completions", json={**ASK, "stream": True}).text)
    assert events[-1] == "[DONE]"
    chunks = [e["choices"][0] for e in events[:-1]]
    content = "".join(c["delta"].get("content") or "" for c in chunks)
    assert content == whole["message"]["content"]
    assert "<" not in content  # no markup, not even a partial marker
    calls: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        for delta in chunk["delta"].get("tool_calls", []):
            if "id" in delta:  # the first piece of a call: id, type, name, empty arguments
                assert delta["index"] not in calls
                assert delta["type"] == "function" and delta["function"]["arguments"] == ""
                calls[delta["index"]] = {"name": delta["function"]["name"], "arguments": ""}
            else:
                assert set(delta["function"]) == {"arguments"}
                calls[delta["index"]]["arguments"] += delta["function"]["arguments"]
    expected = [
        {"name": c["function"]["name"], "arguments": c["function"]["arguments"]}
        for c in whole["message"]["tool_calls"]
    ]
    assert [calls[i] for i in sorted(calls)] == expected
    assert chunks[-1]["finish_reason"] == "tool_calls"


def test_tools_are_described_in_the_prompt_of_a_template_without_tools(make_client: AppFactory) -> None:
    engine = FakeEngine([b"Sunny."])
    body = make_client(engine).post("/v1/chat/completions", json=ASK).json()
    assert body["choices"][0] == {
        "index": 0,
        "message": {"role": "assistant", "content": "Sunny."},
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert '"name": "get_weather"' in engine.prompts[0] and "<tool_call>" in engine.prompts[0]


@pytest.mark.parametrize(
    ("tool_choice", "parallel", "expected"),
    [
        ({"type": "function", "function": {"name": "get_time"}}, None, ("get_time", False, False)),
        ("required", None, ("both", True, False)),
        ("required", False, ("both", False, False)),
        ("auto", None, ("both", True, True)),
    ],
)
def test_the_call_grammar_reaches_the_engine(
    make_client: AppFactory, tool_choice: Any, parallel: bool | None, expected: tuple[str, bool, bool]
) -> None:
    engine = FakeEngine()
    extra = {} if parallel is None else {"parallel_tool_calls": parallel}
    make_client(engine).post("/v1/chat/completions", json={**ASK, "tool_choice": tool_choice, **extra})
    grammar = engine.requests[0].sampling.call_grammar
    assert grammar is not None
    names, repeat, lazy = expected
    schema = grammar.item_schema
    tools = [s["properties"]["name"]["const"] for s in schema.get("anyOf", [schema])]
    assert tools == (["get_weather", "get_time"] if names == "both" else [names])
    assert grammar.repeat is repeat and bool(grammar.triggers) is lazy
    assert grammar.prefix == "<tool_call>\n"


def test_tool_choice_none_sends_no_tools(make_client: AppFactory) -> None:
    engine = FakeEngine([b"Hi"])
    make_client(engine).post("/v1/chat/completions", json={**ASK, "tool_choice": "none"})
    assert engine.requests[0].sampling.call_grammar is None
    assert "get_weather" not in engine.prompts[0]


@pytest.mark.parametrize("arguments", ['{"city": "Oslo"}', {"city": "Oslo"}])
def test_history_with_calls_and_results_renders(make_client: AppFactory, arguments: Any) -> None:
    engine = FakeEngine([b"Cold."])
    messages = [
        {"role": "user", "content": "Weather in Oslo?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "-3 C"},
    ]
    r = make_client(engine).post("/v1/chat/completions", json={**ASK, "messages": messages})
    assert r.status_code == 200, r.text
    assert '{"name": "get_weather", "arguments": {"city": "Oslo"}}' in engine.prompts[0]
    assert "<tool_response>\n-3 C\n</tool_response>" in engine.prompts[0]


def test_legacy_functions_answer_in_the_legacy_shape(make_client: AppFactory) -> None:
    engine = FakeEngine(
        [b'<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call>']
    )
    client = make_client(engine)
    body = {
        "model": "fake-chat",
        "messages": ASK["messages"],
        "functions": [WEATHER["function"]],
        "function_call": {"name": "get_weather"},
    }
    choice = client.post("/v1/chat/completions", json=body).json()["choices"][0]
    assert choice["finish_reason"] == "function_call"
    assert choice["message"]["function_call"] == {"name": "get_weather", "arguments": '{"city": "Rome"}'}
    assert "tool_calls" not in choice["message"]
    events = sse_events(client.post("/v1/chat/completions", json={**body, "stream": True}).text)
    deltas = [e["choices"][0]["delta"] for e in events[:-1]]
    assert "".join(d.get("function_call", {}).get("arguments", "") for d in deltas) == '{"city": "Rome"}'


def _bad(make_client: AppFactory, body: dict[str, Any]) -> str:
    r = make_client(FakeEngine()).post("/v1/chat/completions", json=body)
    assert r.status_code == 400, r.text
    message: str = r.json()["error"]["message"]
    return message


def test_a_choice_naming_an_unknown_tool_is_refused(make_client: AppFactory) -> None:
    message = _bad(make_client, {**ASK, "tool_choice": {"type": "function", "function": {"name": "nope"}}})
    assert "'nope'" in message and "get_weather" in message


def test_a_tool_name_with_spaces_is_refused(make_client: AppFactory) -> None:
    tool = {"type": "function", "function": {"name": "get weather"}}
    assert "'get weather' is not a valid tool name" in _bad(make_client, {**ASK, "tools": [tool]})


@pytest.mark.parametrize(
    ("parameters", "words"),
    [
        ("city", ["get_weather", "JSON schema object"]),
        ({"type": "string"}, ["get_weather", "object"]),
        (
            {"type": "object", "properties": {"x": {"type": "number", "multipleOf": 2}}},
            ["get_weather", "'multipleOf'"],
        ),
    ],
)
def test_parameters_that_are_not_an_enforceable_schema_are_refused(
    make_client: AppFactory, parameters: Any, words: list[str]
) -> None:
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": parameters}}
    message = _bad(make_client, {**ASK, "tools": [tool]})
    assert all(w in message for w in words), message


def test_malformed_history_arguments_are_refused_naming_the_message(make_client: AppFactory) -> None:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": "{city: Oslo"},
    }
    messages = [{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [call]}]
    message = _bad(make_client, {**ASK, "messages": messages})
    assert "messages[1].tool_calls[0]" in message and "not valid JSON" in message


def test_tool_choice_without_tools_is_refused(make_client: AppFactory) -> None:
    body = {"model": "fake-chat", "messages": ASK["messages"], "tool_choice": "required"}
    assert "tool_choice: set without any tools" in _bad(make_client, body)


def test_a_tool_message_needs_its_call_id(make_client: AppFactory) -> None:
    messages = [{"role": "user", "content": "x"}, {"role": "tool", "content": "42"}]
    assert "messages[1].tool_call_id" in _bad(make_client, {**ASK, "messages": messages})


def test_seed_chat_takes_tools_as_an_extension(make_client: AppFactory) -> None:
    client = make_client(FakeEngine(TWO_CALLS))
    body = {"messages": ASK["messages"], "tools": [WEATHER, TIME], "tool_choice": "required"}
    r = client.post("/chat", json=body)
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Let me check."  # the seed API's content is always text
    assert [c["function"]["name"] for c in choice["message"]["tool_calls"]] == ["get_weather", "get_time"]
    events = sse_events(client.post("/chat", json={**body, "stream": True}).text)
    deltas = [d for e in events[:-1] for d in e["choices"][0]["delta"].get("tool_calls", [])]
    assert [d["function"]["name"] for d in deltas if "id" in d] == ["get_weather", "get_time"]
    assert events[-2]["choices"][0]["finish_reason"] == "tool_calls"


def test_seed_chat_without_tools_answers_as_before(make_client: AppFactory) -> None:
    r = make_client(FakeEngine([b"Hi"])).post("/chat", json={"messages": ASK["messages"]})
    assert r.json()["choices"][0]["message"] == {"role": "assistant", "content": "Hi"}
