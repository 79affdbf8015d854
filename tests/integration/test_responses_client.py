"""The official `openai` package's `responses` resource against LocalLab serving the real default
model: create, stream, structured output, chains, and chains that survive a restart."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import openai
import pytest

from tests.api.test_anthropic import named_events
from tests.integration.conftest import Server
from tests.integration.test_openai_client import PERSON

pytestmark = pytest.mark.integration

MODEL = "smollm2-135m-instruct"


def test_create(oai: openai.OpenAI) -> None:
    response = oai.responses.create(
        model=MODEL,
        input="What is the capital of France?",
        instructions="You answer in one short sentence.",
        temperature=0,
        max_output_tokens=40,
    )
    assert response.status in ("completed", "incomplete") and response.model == MODEL
    assert "Paris" in response.output_text
    assert response.usage is not None and response.usage.output_tokens > 0


def test_stream_events_in_order_and_deltas_equal_the_final_text(oai: openai.OpenAI) -> None:
    stream = oai.responses.create(
        model=MODEL, input="Count from 1 to 5.", max_output_tokens=16, temperature=0, stream=True
    )
    events = list(stream)
    kinds = [e.type for e in events]
    assert kinds[:4] == [
        "response.created", "response.in_progress", "response.output_item.added",
        "response.content_part.added",
    ]  # fmt: skip
    assert kinds[-4:] == [
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.completed",
    ]  # fmt: skip
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    final = events[-1].response  # type: ignore[union-attr]
    assert deltas == final.output_text and final.status == "incomplete"
    assert final.incomplete_details.reason == "max_output_tokens"


def test_text_format_json_schema_is_enforced(oai: openai.OpenAI) -> None:
    response = oai.responses.create(
        model=MODEL,
        input="Invent a person.",
        text={"format": {"type": "json_schema", "name": "person", "schema": PERSON, "strict": True}},
        temperature=0,  # unseeded sampling lets the small model ramble inside a string past the budget
        max_output_tokens=100,
    )
    jsonschema.validate(json.loads(response.output_text), PERSON)


def test_previous_response_id_continues_the_conversation(oai: openai.OpenAI) -> None:
    first = oai.responses.create(
        model=MODEL, input="My name is Zorblax. Say hello.", temperature=0, max_output_tokens=30
    )
    second = oai.responses.create(
        model=MODEL,
        input="What is my name?",
        previous_response_id=first.id,
        temperature=0,
        max_output_tokens=30,
    )
    assert second.previous_response_id == first.id
    assert "Zorblax" in second.output_text
    items = oai.responses.input_items.list(second.id)
    assert [item.content[0].text for item in items.data] == ["What is my name?"]  # type: ignore[union-attr]


def test_unknown_id_and_built_in_tools_raise_typed_errors(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError, match="resp_nope"):
        oai.responses.retrieve("resp_nope")
    with pytest.raises(openai.BadRequestError, match="web_search"):
        oai.responses.create(model=MODEL, input="hi", tools=[{"type": "web_search"}])


def test_raw_stream_names_every_event(server: Server) -> None:
    body = {"model": MODEL, "input": "Hi", "max_output_tokens": 4, "stream": True}
    events = named_events(httpx.post(f"{server.url}/v1/responses", json=body, timeout=60).text)
    assert all(name == payload["type"] for name, payload in events)
    assert events[0][1]["response"]["status"] == "in_progress"


def test_chain_and_retrieve_survive_a_restart(start_server: Callable[..., Server], tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    before = start_server(LOCALLAB_RATE_LIMIT_PER_MINUTE="0", LOCALLAB_DATA_DIR=data)
    with openai.OpenAI(base_url=f"{before.url}/v1", api_key="x", max_retries=0) as client:
        first = client.responses.create(
            model=MODEL, input="My name is Zorblax. Say hello.", temperature=0, max_output_tokens=30
        )
    before.stop()
    after = start_server(LOCALLAB_RATE_LIMIT_PER_MINUTE="0", LOCALLAB_DATA_DIR=data)
    with openai.OpenAI(base_url=f"{after.url}/v1", api_key="x", max_retries=0) as client:
        assert client.responses.retrieve(first.id).output_text == first.output_text
        second = client.responses.create(
            model=MODEL,
            input="What is my name?",
            previous_response_id=first.id,
            temperature=0,
            max_output_tokens=30,
        )
        assert "Zorblax" in second.output_text
        client.responses.delete(first.id)
        with pytest.raises(openai.NotFoundError):
            client.responses.retrieve(first.id)
    after.stop()


def test_openai_agents_sdk_runs_an_agent_without_tools(server: Server) -> None:
    """The Agents SDK's requests (its default model is the Responses API) are accepted as it sends them."""
    import asyncio

    import agents

    agents.set_tracing_disabled(True)

    async def run_agent() -> str:
        async with openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0) as client:
            agent = agents.Agent(
                name="helper",
                instructions="You answer in one short sentence.",
                model=agents.OpenAIResponsesModel(model=MODEL, openai_client=client),
                model_settings=agents.ModelSettings(max_tokens=40, temperature=0),
            )
            result = await agents.Runner.run(agent, "What is the capital of France?")
            return str(result.final_output)

    assert "Paris" in asyncio.run(asyncio.wait_for(run_agent(), 120))


def test_streaming_helper_builds_the_final_response(oai: openai.OpenAI) -> None:
    with oai.responses.stream(model=MODEL, input="Say hello.", max_output_tokens=12, temperature=0) as stream:
        texts = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(texts) == final.output_text and final.output_text
    assert oai.responses.retrieve(final.id).output_text == final.output_text


WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "The current weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 40},
            "unit": {"enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city", "unit"],
        "additionalProperties": False,
    },
    "strict": True,
}


def test_forced_function_tool_has_schema_valid_arguments_and_its_output_is_answered(
    oai: openai.OpenAI,
) -> None:
    first = oai.responses.create(
        model=MODEL,
        input="What is the weather in Paris?",
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice={"type": "function", "name": "get_weather"},
        max_output_tokens=120,
    )
    calls = [item for item in first.output if item.type == "function_call"]
    assert calls and calls[0].name == "get_weather"
    jsonschema.validate(json.loads(calls[0].arguments), WEATHER_TOOL["parameters"])
    second = oai.responses.create(
        model=MODEL,
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": "Sunny, 21 C"}],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        max_output_tokens=40,
        temperature=0,
    )
    assert second.output and second.usage is not None
    assert second.usage.input_tokens > first.usage.input_tokens  # type: ignore[union-attr]


@pytest.mark.parametrize("streamed", [False, True], ids=["run", "run_streamed"])
def test_openai_agents_sdk_runs_a_one_tool_agent(server: Server, streamed: bool) -> None:
    """A forced tool choice, and the agent stops at the tool's result (the small model would not stop
    calling it otherwise). `Runner.run_streamed` reads the function call from the stream events."""
    import asyncio

    import agents

    agents.set_tracing_disabled(True)
    seen: list[str] = []

    @agents.function_tool
    def get_weather(city: str) -> str:
        """The current weather in a city."""
        seen.append(city)
        return f"Sunny in {city}"

    async def run_agent() -> tuple[str, list[str]]:
        async with openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0) as client:
            agent = agents.Agent(
                name="weather",
                instructions="You answer questions about the weather.",
                model=agents.OpenAIResponsesModel(model=MODEL, openai_client=client),
                tools=[get_weather],
                tool_use_behavior="stop_on_first_tool",
                model_settings=agents.ModelSettings(tool_choice="get_weather", temperature=0, max_tokens=80),
            )
            question = "What is the weather in Paris?"
            if not streamed:
                return str((await agents.Runner.run(agent, question)).final_output), []
            result = agents.Runner.run_streamed(agent, question)
            kinds = [event.type async for event in result.stream_events()]
            return str(result.final_output), kinds

    final, kinds = asyncio.run(asyncio.wait_for(run_agent(), 120))
    assert seen and final == f"Sunny in {seen[0]}"
    if streamed:
        assert "raw_response_event" in kinds and "run_item_stream_event" in kinds


def _calls(output: list[Any]) -> list[dict[str, Any]]:
    return [
        item.model_dump(include={"type", "name", "arguments"})
        for item in output
        if item.type == "function_call"
    ]


@pytest.mark.parametrize("choice", [{"type": "function", "name": "get_weather"}, "required"])
def test_streamed_function_call_gives_the_same_items_as_a_whole_response(
    oai: openai.OpenAI, choice: Any
) -> None:
    request: dict[str, Any] = {
        "model": MODEL, "input": "What is the weather in Paris?", "tools": [WEATHER_TOOL],
        "tool_choice": choice, "parallel_tool_calls": False, "max_output_tokens": 120, "temperature": 0,
    }  # fmt: skip
    whole = oai.responses.create(**request)
    with oai.responses.stream(**request) as stream:
        events = list(stream)
        final = stream.get_final_response()
    assert _calls(final.output) == _calls(whole.output) and _calls(final.output)
    assert [item.type for item in final.output] == [item.type for item in whole.output]
    assert final.status == whole.status == "completed"
    call = next(item for item in final.output if item.type == "function_call")
    jsonschema.validate(json.loads(call.arguments), WEATHER_TOOL["parameters"])
    kinds = [event.type for event in events]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    first, done = (
        kinds.index("response.function_call_arguments.delta"),
        kinds.index("response.output_item.done"),
    )
    assert kinds.index("response.output_item.added") < first < done and kinds[-1] == "response.completed"
    pieces = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    assert len(pieces) > 1 and "".join(pieces) == call.arguments  # streamed piece by piece
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert "<tool_call>" not in text and "get_weather" not in text  # no call markup in text deltas
    assert _calls(oai.responses.retrieve(final.id).output) == _calls(final.output)  # stored as streamed
