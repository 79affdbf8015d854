"""/v1/responses on a scripted engine: response objects, stored responses, chains, semantic stream
events with sequence numbers, and parameters refused by name."""

from __future__ import annotations

import json
from typing import Any

import pytest

from locallab.engines.fake import FakeEngine
from tests.api.test_anthropic import named_events
from tests.conftest import AppFactory

BODY: dict[str, Any] = {"model": "fake-chat", "input": "hi"}


def test_response_has_openai_shape_and_is_stored(make_client: AppFactory) -> None:
    client = make_client(FakeEngine([b"Hel", b"lo"]))
    body = client.post("/v1/responses", json=BODY).json()
    assert body["id"].startswith("resp_") and body["object"] == "response" and body["status"] == "completed"
    [item] = body["output"]
    assert item["type"] == "message" and item["role"] == "assistant" and item["status"] == "completed"
    assert item["content"][0]["type"] == "output_text" and item["content"][0]["text"] == "Hello"
    assert body["usage"]["output_tokens"] == 2 and body["usage"]["total_tokens"] > 2
    assert client.get(f"/v1/responses/{body['id']}").json() == body
    items = client.get(f"/v1/responses/{body['id']}/input_items").json()
    assert items["object"] == "list" and items["has_more"] is False
    assert items["data"][0]["role"] == "user" and items["data"][0]["content"][0]["text"] == "hi"


def test_instructions_and_previous_response_id_build_the_conversation(make_client: AppFactory) -> None:
    engine = FakeEngine([b"Paris"])
    client = make_client(engine)
    first = client.post("/v1/responses", json={**BODY, "instructions": "Be brief.", "input": "Capital?"})
    second = client.post(
        "/v1/responses",
        json={
            **BODY,
            "input": [{"role": "user", "content": "Again?"}],
            "previous_response_id": first.json()["id"],
        },
    )
    assert second.status_code == 200
    prompt = engine.prompts[-1]
    assert "Be brief." not in prompt  # instructions belong to the response that sent them
    assert "<|im_start|>user\nCapital?<|im_end|>\n<|im_start|>assistant\nParis<|im_end|>" in prompt
    assert prompt.endswith("<|im_start|>user\nAgain?<|im_end|>\n<|im_start|>assistant\n")


def test_store_false_is_not_kept(make_client: AppFactory) -> None:
    client = make_client(FakeEngine())
    body = client.post("/v1/responses", json={**BODY, "store": False}).json()
    missing = client.get(f"/v1/responses/{body['id']}")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "invalid_request_error"


def test_delete_removes_a_response(make_client: AppFactory) -> None:
    client = make_client(FakeEngine())
    response_id = client.post("/v1/responses", json=BODY).json()["id"]
    deleted = client.delete(f"/v1/responses/{response_id}").json()
    assert deleted == {"id": response_id, "object": "response.deleted", "deleted": True}
    assert client.get(f"/v1/responses/{response_id}").status_code == 404
    assert client.delete(f"/v1/responses/{response_id}").status_code == 404


def test_token_limit_makes_an_incomplete_response(make_client: AppFactory) -> None:
    client = make_client(FakeEngine([b"a"] * 10))
    body = client.post("/v1/responses", json={**BODY, "max_output_tokens": 3}).json()
    assert body["status"] == "incomplete"
    assert body["incomplete_details"] == {"reason": "max_output_tokens"}


def test_text_format_json_schema_reaches_the_engine(make_client: AppFactory) -> None:
    engine = FakeEngine([b"{}"])
    client = make_client(engine)
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    fmt = {"type": "json_schema", "name": "thing", "schema": schema, "strict": True}
    body = client.post("/v1/responses", json={**BODY, "text": {"format": fmt}}).json()
    params = engine.requests[-1].sampling
    assert params.json_output and params.json_schema == schema
    assert body["text"]["format"]["name"] == "thing"


def test_stream_has_semantic_events_with_sequence_numbers(make_client: AppFactory) -> None:
    client = make_client(FakeEngine([b"Hel", b"lo"]))
    events = named_events(client.post("/v1/responses", json={**BODY, "stream": True}).text)
    names = [name for name, _ in events]
    assert names == [
        "response.created", "response.in_progress", "response.output_item.added",
        "response.content_part.added", "response.output_text.delta", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.completed",
    ]  # fmt: skip
    assert [payload["sequence_number"] for _, payload in events] == list(range(len(events)))
    assert all(payload["type"] == name for name, payload in events)
    deltas = "".join(p["delta"] for n, p in events if n == "response.output_text.delta")
    final = events[-1][1]["response"]
    assert deltas == "Hello" == final["output"][0]["content"][0]["text"]
    assert client.get(f"/v1/responses/{final['id']}").json() == final


def test_error_after_the_stream_began_is_an_error_event(make_client: AppFactory) -> None:
    client = make_client(FakeEngine([b"a", b"b", b"c"], fail_after=1))
    events = named_events(client.post("/v1/responses", json={**BODY, "stream": True}).text)
    name, payload = events[-1]
    assert name == "error" and payload["code"] == "server_error"
    assert payload["sequence_number"] == len(events) - 1


@pytest.mark.parametrize(
    ("change", "status", "words"),
    [
        ({"tools": [{"type": "web_search"}]}, 400, "tools[0]: the built-in tool 'web_search'"),
        ({"tools": [{"type": "code_interpreter", "container": {}}]}, 400, "'code_interpreter'"),
        ({"background": True}, 400, "background"),
        ({"reasoning": {"effort": "low"}}, 400, "reasoning: model 'fake-chat' does not reason"),
        ({"previous_response_id": "resp_nope"}, 404, "resp_nope"),
        ({"input": [{"type": "input_image", "image_url": "x"}]}, 400, "input[0].type"),
        ({"input": [{"role": "user", "content": [{"type": "input_image"}]}]}, 400, "input_image parts"),
        ({"model": "no-such-model"}, 404, "no-such-model"),
        ({"text": {"format": {"type": "json_schema", "name": "x"}}}, 400, "text.format.schema"),
    ],
)
def test_bad_requests_name_the_field(
    make_client: AppFactory, change: dict[str, Any], status: int, words: str
) -> None:
    client = make_client(FakeEngine())
    response = client.post("/v1/responses", json={**BODY, **change})
    assert response.status_code == status, response.text
    assert words in response.json()["error"]["message"]


def test_with_api_keys_a_key_sees_only_its_responses(make_client: AppFactory) -> None:
    client = make_client(FakeEngine(), api_keys="alice,bob")
    alice, bob = {"Authorization": "Bearer alice"}, {"Authorization": "Bearer bob"}
    response_id = client.post("/v1/responses", json=BODY, headers=alice).json()["id"]
    assert client.get(f"/v1/responses/{response_id}", headers=alice).status_code == 200
    assert client.get(f"/v1/responses/{response_id}", headers=bob).status_code == 404
    chained = {**BODY, "previous_response_id": response_id}
    assert client.post("/v1/responses", json=chained, headers=bob).status_code == 404
    assert client.delete(f"/v1/responses/{response_id}", headers=bob).status_code == 404
    assert json.loads(client.get(f"/v1/responses/{response_id}", headers=alice).text)["id"] == response_id


def test_a_cut_stream_still_ends_with_response_completed(make_client: AppFactory) -> None:
    client = make_client(FakeEngine([b"a"] * 10))
    events = named_events(
        client.post("/v1/responses", json={**BODY, "stream": True, "max_output_tokens": 2}).text
    )
    name, payload = events[-1]
    assert name == "response.completed" and payload["response"]["status"] == "incomplete"


WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
CALL = b'<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


def test_function_calls_come_back_as_output_items(make_client: AppFactory) -> None:
    engine = FakeEngine([CALL])
    client = make_client(engine)
    choice = {"type": "function", "name": "get_weather"}
    body = client.post("/v1/responses", json={**BODY, "tools": [WEATHER_TOOL], "tool_choice": choice}).json()
    [call] = body["output"]
    assert call["type"] == "function_call" and call["name"] == "get_weather" and call["call_id"]
    assert json.loads(call["arguments"]) == {"city": "Paris"} and body["status"] == "completed"
    assert body["tools"] == [WEATHER_TOOL] and body["tool_choice"] == choice  # echoed as sent
    assert engine.requests[-1].sampling.call_grammar is not None  # forced: decoded under the grammar


def test_function_call_output_turn_and_chain_reach_the_prompt(make_client: AppFactory) -> None:
    engine = FakeEngine([CALL])
    client = make_client(engine)
    first = client.post("/v1/responses", json={**BODY, "tools": [WEATHER_TOOL]}).json()
    call = first["output"][0]
    engine.pieces = [b"Sunny."]
    follow = {
        **BODY, "tools": [WEATHER_TOOL], "previous_response_id": first["id"],
        "input": [{"type": "function_call_output", "call_id": call["call_id"], "output": "sunny, 21 C"}],
    }  # fmt: skip
    second = client.post("/v1/responses", json=follow).json()
    assert second["output"][0]["content"][0]["text"] == "Sunny."
    assert "sunny, 21 C" in engine.prompts[-1] and '"city": "Paris"' in engine.prompts[-1]
    items = client.get(f"/v1/responses/{second['id']}/input_items").json()["data"]
    assert items[0]["type"] == "function_call_output" and items[0]["call_id"] == call["call_id"]


def test_other_tool_types_are_refused(make_client: AppFactory) -> None:
    client = make_client(FakeEngine())
    custom = client.post("/v1/responses", json={**BODY, "tools": [{"type": "custom", "name": "x"}]})
    assert custom.status_code == 400 and "only 'function' tools" in custom.json()["error"]["message"]


TWO_CALLS = (
    "Let me check.\n<tool_call>\n"
    '{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n<tool_call>\n'
    '{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'
)


def _assemble(events: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Output items as a client builds them from the stream, checking each event's place on the way."""
    items: list[dict[str, Any]] = []
    open_item: dict[str, Any] | None = None
    for name, payload in events:
        if name == "response.output_item.added":
            assert open_item is None and payload["output_index"] == len(items)  # one item at a time
            open_item = json.loads(json.dumps(payload["item"]))
            assert open_item["status"] == "in_progress"
            items.append(open_item)
        elif name == "response.content_part.added":
            assert open_item is not None and payload["item_id"] == open_item["id"]
            open_item["content"].append(dict(payload["part"]))
        elif name == "response.output_text.delta":
            assert open_item is not None and payload["item_id"] == open_item["id"]
            open_item["content"][0]["text"] += payload["delta"]
        elif name == "response.function_call_arguments.delta":
            assert open_item is not None and payload["item_id"] == open_item["id"]
            assert payload["output_index"] == len(items) - 1
            open_item["arguments"] += payload["delta"]
        elif name == "response.function_call_arguments.done":
            assert open_item is not None and payload["arguments"] == open_item["arguments"]
            assert payload["name"] == open_item["name"]
        elif name == "response.output_item.done":
            assert open_item is not None and payload["item"]["id"] == open_item["id"]
            open_item["status"] = "completed"
            assert payload["item"] == open_item
            open_item = None
    assert open_item is None
    return items


def _without_ids(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in item.items() if k not in ("id", "call_id")} for item in items]


def test_streamed_function_calls_assemble_to_the_whole_response(make_client: AppFactory) -> None:
    client = make_client(FakeEngine([c.encode() for c in TWO_CALLS]))  # one character a token
    request = {**BODY, "tools": [WEATHER_TOOL]}
    whole = client.post("/v1/responses", json=request).json()
    events = named_events(client.post("/v1/responses", json={**request, "stream": True}).text)
    assert [p["sequence_number"] for _, p in events] == list(range(len(events)))
    assert all(name == payload["type"] for name, payload in events)
    output = _assemble(events)
    final = events[-1][1]["response"]
    assert events[-1][0] == "response.completed" and final["status"] == whole["status"] == "completed"
    assert final["output"] == output  # the same items, ids and all, as the stream built
    assert _without_ids(output) == _without_ids(whole["output"])
    assert [item["type"] for item in output] == ["message", "function_call", "function_call"]
    assert output[0]["content"][0]["text"] == "Let me check."  # no markup, not even a partial marker
    texts = "".join(p["delta"] for n, p in events if n == "response.output_text.delta")
    assert texts == "Let me check."
    calls = output[1:]
    assert [json.loads(c["arguments"]) for c in calls] == [{"city": "Paris"}, {"city": "Oslo"}]
    assert len({c["call_id"] for c in calls}) == 2 and all(c["call_id"].startswith("call_") for c in calls)
    added = [p["item"] for n, p in events if n == "response.output_item.added"][1:]
    assert all(a["arguments"] == "" and a["type"] == "function_call" for a in added)
    assert client.get(f"/v1/responses/{final['id']}").json() == final  # stored as streamed


def test_a_streamed_forced_call_is_the_only_item(make_client: AppFactory) -> None:
    engine = FakeEngine([CALL])
    client = make_client(engine)
    choice = {"type": "function", "name": "get_weather"}
    body = {**BODY, "tools": [WEATHER_TOOL], "tool_choice": choice, "stream": True}
    events = named_events(client.post("/v1/responses", json=body).text)
    [call] = _assemble(events)
    assert call["type"] == "function_call" and json.loads(call["arguments"]) == {"city": "Paris"}
    assert engine.requests[-1].sampling.call_grammar is not None
    assert not any(name.startswith("response.output_text") for name, _ in events)


def test_a_streamed_answer_with_tools_but_no_call_is_a_message(make_client: AppFactory) -> None:
    client = make_client(FakeEngine([b"It is ", b"sunny."]))
    events = named_events(
        client.post("/v1/responses", json={**BODY, "tools": [WEATHER_TOOL], "stream": True}).text
    )
    [message] = _assemble(events)
    assert message["type"] == "message" and message["content"][0]["text"] == "It is sunny."
    assert events[-1][1]["response"]["output"] == [message]


def test_a_call_cut_off_by_max_output_tokens_is_incomplete(make_client: AppFactory) -> None:
    pieces = [b'<tool_call>\n{"name": "get_weather", "arguments": {"city": "Par', b"is", b'"}}']
    client = make_client(FakeEngine(pieces))
    request = {**BODY, "tools": [WEATHER_TOOL], "max_output_tokens": 1}
    whole = client.post("/v1/responses", json=request).json()
    assert whole["status"] == "incomplete" and whole["incomplete_details"] == {"reason": "max_output_tokens"}
    assert [item["type"] for item in whole["output"]] == ["function_call"]
    events = named_events(client.post("/v1/responses", json={**request, "stream": True}).text)
    final = events[-1][1]["response"]
    assert final["status"] == "incomplete" and _without_ids(final["output"]) == _without_ids(whole["output"])
