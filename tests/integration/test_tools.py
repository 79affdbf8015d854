"""Tool calling with the official `openai` package against LocalLab on the real default model
(SmolLM2, whose template has no tools: the generic format, enforced by grammar)."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import openai
import pytest

pytestmark = pytest.mark.integration

MODEL = "smollm2-135m-instruct"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 40},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
                "where": {
                    "type": "object",
                    "properties": {
                        "country": {"type": "string", "maxLength": 40},
                        "zip": {"type": "integer"},
                    },
                    "required": ["country"],
                },
            },
            "required": ["city", "unit", "days", "where"],
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "The current time in a timezone.",
        "parameters": {
            "type": "object",
            "properties": {"timezone": {"type": "string", "maxLength": 40}},
            "required": ["timezone"],
        },
    },
}
TOOLS: list[Any] = [WEATHER, TIME]
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
ASK = [{"role": "user", "content": "What is the weather in Paris, France for the next 3 days?"}]
NAMED: Any = {"type": "function", "function": {"name": "get_weather"}}


def assert_valid(call: Any) -> dict[str, Any]:
    assert call.type == "function" and call.id.startswith("call_")
    arguments = json.loads(call.function.arguments)
    jsonschema.validate(arguments, SCHEMAS[call.function.name])
    return dict(arguments)


def test_named_choice_gives_a_valid_call(oai: openai.OpenAI) -> None:
    r = oai.chat.completions.create(model=MODEL, messages=ASK, tools=TOOLS, tool_choice=NAMED, temperature=0)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls or []
    assert [c.function.name for c in calls] == ["get_weather"]
    assert_valid(calls[0])


def test_twenty_named_calls_at_temperature_0_7_are_all_valid(oai: openai.OpenAI) -> None:
    for _ in range(20):
        r = oai.chat.completions.create(
            model=MODEL, messages=ASK, tools=TOOLS, tool_choice=NAMED, temperature=0.7
        )
        assert r.choices[0].finish_reason == "tool_calls"
        calls = r.choices[0].message.tool_calls or []
        assert len(calls) == 1 and calls[0].function.name == "get_weather"
        assert_valid(calls[0])


def test_required_with_parallel_calls_off_gives_one_valid_call(oai: openai.OpenAI) -> None:
    r = oai.chat.completions.create(
        model=MODEL,
        messages=ASK,
        tools=TOOLS,
        tool_choice="required",
        parallel_tool_calls=False,
        temperature=0,
    )
    calls = r.choices[0].message.tool_calls or []
    assert r.choices[0].finish_reason == "tool_calls" and len(calls) == 1
    assert_valid(calls[0])


def test_required_with_parallel_calls_gives_valid_calls(oai: openai.OpenAI) -> None:
    r = oai.chat.completions.create(
        model=MODEL,
        messages=ASK,
        tools=TOOLS,
        tool_choice="required",
        temperature=0.7,
        seed=3,
        max_tokens=200,
    )
    calls = r.choices[0].message.tool_calls or []
    assert calls and len({c.id for c in calls}) == len(calls)
    for call in calls:
        assert_valid(call)


def test_auto_answers_in_text_or_with_valid_calls(oai: openai.OpenAI) -> None:
    for seed in (1, 2):
        r = oai.chat.completions.create(
            model=MODEL, messages=ASK, tools=TOOLS, temperature=0.7, seed=seed, max_tokens=60
        )
        message = r.choices[0].message
        assert "<tool_call>" not in (message.content or "")
        if r.choices[0].finish_reason == "tool_calls":
            for call in message.tool_calls or []:
                assert_valid(call)
        else:
            assert not message.tool_calls


def test_none_answers_in_text(oai: openai.OpenAI) -> None:
    r = oai.chat.completions.create(
        model=MODEL, messages=ASK, tools=TOOLS, tool_choice="none", temperature=0, max_tokens=30
    )
    assert r.choices[0].message.tool_calls is None and r.choices[0].message.content


def test_streamed_and_whole_answers_agree_at_temperature_0(oai: openai.OpenAI) -> None:
    whole = oai.chat.completions.create(
        model=MODEL,
        messages=ASK,
        tools=TOOLS,
        tool_choice="required",
        parallel_tool_calls=False,
        temperature=0,
    )
    calls: dict[int, list[str]] = {}
    content, finish = "", None
    with oai.chat.completions.create(
        model=MODEL,
        messages=ASK,
        tools=TOOLS,
        tool_choice="required",
        parallel_tool_calls=False,
        temperature=0,
        stream=True,
    ) as stream:
        for chunk in stream:
            choice = chunk.choices[0]
            content += choice.delta.content or ""
            for delta in choice.delta.tool_calls or []:
                if delta.id is not None:
                    assert delta.function is not None and delta.function.arguments == ""
                    calls[delta.index] = [delta.function.name or "", ""]
                elif delta.function is not None:
                    calls[delta.index][1] += delta.function.arguments or ""
            finish = choice.finish_reason or finish
    expected = [[c.function.name, c.function.arguments] for c in whole.choices[0].message.tool_calls or []]
    assert [calls[i] for i in sorted(calls)] == expected and expected
    assert content == "" and finish == "tool_calls"


def test_a_full_round_trip_uses_the_tool_result(oai: openai.OpenAI) -> None:
    first = oai.chat.completions.create(
        model=MODEL, messages=ASK, tools=TOOLS, tool_choice=NAMED, temperature=0
    )
    call = (first.choices[0].message.tool_calls or [])[0]
    messages: list[Any] = [
        *ASK,
        first.choices[0].message,  # the assistant turn as the openai package returns it
        {"role": "tool", "tool_call_id": call.id, "content": '{"forecast": "sunny", "celsius": 24}'},
    ]
    final = oai.chat.completions.create(
        model=MODEL, messages=messages, tools=TOOLS, tool_choice="none", temperature=0
    )
    assert final.choices[0].finish_reason in ("stop", "length")
    assert final.choices[0].message.content and not final.choices[0].message.tool_calls


def test_legacy_functions_answer_with_function_call(oai: openai.OpenAI) -> None:
    r = oai.chat.completions.create(
        model=MODEL,
        messages=ASK,
        functions=[WEATHER["function"]],
        function_call={"name": "get_weather"},
        temperature=0,
    )
    choice = r.choices[0]
    assert choice.finish_reason == "function_call" and choice.message.function_call is not None
    jsonschema.validate(json.loads(choice.message.function_call.arguments), SCHEMAS["get_weather"])
