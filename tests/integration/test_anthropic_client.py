"""The official `anthropic` package against LocalLab serving the real default model."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import httpx
import pytest

from tests.api.test_anthropic import named_events
from tests.integration.conftest import Server

pytestmark = pytest.mark.integration

MODEL = "smollm2-135m-instruct"
ASK = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture
def claude(server: Server) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=server.url, api_key="unused", max_retries=0) as client:
        yield client


def test_create_with_a_system_prompt(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(
        model=MODEL,
        max_tokens=64,
        system="You answer in one short sentence.",
        messages=ASK,
        extra_body={"temperature": 0},  # the client dropped `temperature`; the API (and LocalLab) take it
    )
    assert message.type == "message" and message.role == "assistant" and message.model == MODEL
    assert message.content[0].type == "text" and "Paris" in message.content[0].text
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 10 and message.usage.output_tokens > 0


def test_streaming_helper_gives_events_in_order_and_the_final_message(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(
        model=MODEL, max_tokens=20, messages=ASK, extra_body={"temperature": 0}
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert kinds.index("content_block_start") < kinds.index("text") < kinds.index("content_block_stop")
    assert kinds.index("content_block_stop") < kinds.index("message_delta")
    assert final.content[0].type == "text" and final.content[0].text
    assert final.usage.output_tokens > 0 and final.stop_reason in ("end_turn", "max_tokens")


def test_stop_sequences(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(
        model=MODEL,
        max_tokens=40,
        messages=[{"role": "user", "content": "Count from 1 to 10, separated by commas."}],
        stop_sequences=["5"],
        extra_body={"temperature": 0},
    )
    assert message.stop_reason == "stop_sequence" and message.stop_sequence == "5"
    text = message.content[0].text  # type: ignore[union-attr]
    assert "4" in text and "5" not in text


def test_count_tokens_matches_the_prompt_the_model_reads(claude: anthropic.Anthropic) -> None:
    counted = claude.messages.count_tokens(model=MODEL, messages=ASK, system="Be brief.")
    message = claude.messages.create(model=MODEL, max_tokens=1, messages=ASK, system="Be brief.")
    assert counted.input_tokens == message.usage.input_tokens > 0


def test_missing_max_tokens_is_a_bad_request(server: Server) -> None:
    response = httpx.post(f"{server.url}/v1/messages", json={"model": MODEL, "messages": ASK}, timeout=30)
    assert response.status_code == 400
    assert response.json()["error"] == {
        "type": "invalid_request_error",
        "message": "max_tokens: this field is required.",
    }


def test_unknown_model_raises_not_found(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError, match="no-such-model"):
        claude.messages.create(model="no-such-model", max_tokens=8, messages=ASK)


def test_thinking_and_images_raise_bad_request(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError, match="thinking"):
        claude.messages.create(
            model=MODEL, max_tokens=8, messages=ASK, thinking={"type": "enabled", "budget_tokens": 1024}
        )
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
    with pytest.raises(anthropic.BadRequestError, match="image blocks are not supported"):
        claude.messages.create(model=MODEL, max_tokens=8, messages=[{"role": "user", "content": [image]}])


def test_raw_stream_event_names_and_shapes(server: Server) -> None:
    body = {"model": MODEL, "max_tokens": 8, "messages": ASK, "stream": True, "temperature": 0}
    text = httpx.post(f"{server.url}/v1/messages", json=body, timeout=60).text
    events = named_events(text)
    assert [n for n, _ in events][:3] == ["message_start", "content_block_start", "ping"]
    assert [n for n, _ in events][-3:] == ["content_block_stop", "message_delta", "message_stop"]
    start = events[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None and start["usage"]["input_tokens"] > 0
    deltas = [p["delta"] for n, p in events if n == "content_block_delta"]
    assert deltas and all(d["type"] == "text_delta" and isinstance(d["text"], str) for d in deltas)
    assert (
        events[-2][1]["delta"]["stop_reason"] == "max_tokens" and events[-2][1]["usage"]["output_tokens"] == 8
    )


def test_wrong_x_api_key_raises_authentication_error(start_server: Callable[..., Server]) -> None:
    keyed = start_server(LOCALLAB_RATE_LIMIT_PER_MINUTE="0", LOCALLAB_API_KEYS="right-key")
    with anthropic.Anthropic(base_url=keyed.url, api_key="wrong-key", max_retries=0) as wrong:
        with pytest.raises(anthropic.AuthenticationError, match="Invalid API key"):
            wrong.messages.create(model=MODEL, max_tokens=8, messages=ASK)
    with anthropic.Anthropic(base_url=keyed.url, api_key="right-key", max_retries=0) as right:
        assert right.messages.create(model=MODEL, max_tokens=4, messages=ASK).usage.output_tokens > 0
    keyed.stop()


WEATHER = {
    "name": "get_weather",
    "description": "The current weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 40},
            "unit": {"enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city", "unit"],
        "additionalProperties": False,
    },
}
WEATHER_ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


# "any" with parallel calls lets the small model repeat calls up to max_tokens (stop_reason max_tokens)
FORCED = [{"type": "tool", "name": "get_weather"}, {"type": "any", "disable_parallel_tool_use": True}]


@pytest.mark.parametrize("choice", FORCED)
def test_forced_tool_use_has_schema_valid_input(claude: anthropic.Anthropic, choice: dict[str, Any]) -> None:
    import jsonschema

    message = claude.messages.create(
        model=MODEL,
        max_tokens=120,
        messages=WEATHER_ASK,
        tools=[WEATHER],
        tool_choice=choice,  # type: ignore[arg-type]
    )
    assert message.stop_reason == "tool_use"
    calls = [block for block in message.content if block.type == "tool_use"]
    assert calls and calls[0].name == "get_weather"
    jsonschema.validate(calls[0].input, WEATHER["input_schema"])


def test_a_tool_result_turn_is_answered(claude: anthropic.Anthropic) -> None:
    first = claude.messages.create(
        model=MODEL, max_tokens=120, messages=WEATHER_ASK, tools=[WEATHER],  # type: ignore[arg-type]
        tool_choice={"type": "tool", "name": "get_weather"},
    )  # fmt: skip
    call = next(block for block in first.content if block.type == "tool_use")
    second = claude.messages.create(
        model=MODEL,
        max_tokens=40,
        tools=[WEATHER],  # type: ignore[list-item]
        messages=[
            *WEATHER_ASK,  # type: ignore[list-item]
            {"role": "assistant", "content": first.content},  # type: ignore[typeddict-item]
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "Sunny, 21 C"}],
            },
        ],
        extra_body={"temperature": 0},
    )
    assert second.content and second.content[0].type in ("text", "tool_use")
    assert second.usage.input_tokens > first.usage.input_tokens


@pytest.mark.parametrize("choice", FORCED)
def test_streamed_tool_use_gives_the_same_message_as_a_whole_one(
    claude: anthropic.Anthropic, choice: dict[str, Any]
) -> None:
    """What Claude Code reads: tool_use blocks with input_json_delta fragments, then stop_reason tool_use."""
    import jsonschema

    request = {
        "model": MODEL, "max_tokens": 120, "messages": WEATHER_ASK, "tools": [WEATHER], "tool_choice": choice,
        "extra_body": {"temperature": 0},
    }  # fmt: skip
    whole = claude.messages.create(**request)  # type: ignore[call-overload]
    with claude.messages.stream(**request) as stream:
        events = list(stream)
        final = stream.get_final_message()
    ours = [block.model_dump(exclude={"id"}) for block in final.content]
    assert ours == [block.model_dump(exclude={"id"}) for block in whole.content]
    assert final.stop_reason == whole.stop_reason == "tool_use"
    calls = [block for block in final.content if block.type == "tool_use"]
    assert calls and calls[0].name == "get_weather" and calls[0].id.startswith("call_")
    jsonschema.validate(calls[0].input, WEATHER["input_schema"])
    kinds = [event.type for event in events]
    assert "input_json" in kinds and kinds[-1] == "message_stop"
    text = "".join(event.text for event in events if event.type == "text")
    assert "<tool_call>" not in text and "get_weather" not in text  # no call markup in text deltas


def test_raw_stream_of_a_tool_call(server: Server) -> None:
    body = {
        "model": MODEL, "max_tokens": 120, "messages": WEATHER_ASK, "stream": True, "temperature": 0,
        "tools": [WEATHER], "tool_choice": {"type": "tool", "name": "get_weather"},
    }  # fmt: skip
    events = named_events(httpx.post(f"{server.url}/v1/messages", json=body, timeout=120).text)
    starts = [p for n, p in events if n == "content_block_start"]
    assert starts[-1]["content_block"]["type"] == "tool_use" and starts[-1]["content_block"]["input"] == {}
    fragments = [
        p["delta"]["partial_json"]
        for n, p in events
        if n == "content_block_delta" and p["index"] == starts[-1]["index"]
    ]
    assert len(fragments) > 1  # streamed piece by piece, not at the end
    called_input = json.loads("".join(fragments))
    assert set(called_input) == {"city", "unit"}
    assert [n for n, _ in events][-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"
