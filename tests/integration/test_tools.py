"""Tool calling with the official `openai` package against LocalLab on the real default model
(SmolLM2, whose template has no tools: the generic format, enforced by grammar)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import jsonschema
import openai
import pytest

from tests.integration.conftest import Server

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


@pytest.fixture
def oai(server: Server) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0) as client:
        yield client


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
