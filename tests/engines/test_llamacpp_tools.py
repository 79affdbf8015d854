"""Tool calls on the llama.cpp engine batch with everything else: each sequence its own grammar."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import jsonschema
import pytest

from locallab.engines.base import GenerationRequest, SamplingParams
from locallab.engines.llamacpp import LlamaCppEngine, load_llamacpp_engine
from locallab.engines.tools import ToolChoice, ToolDefinition, ToolUse
from locallab.services.chat_template import render_chat
from locallab.services.tools import FORMATS, call_grammar, parse_tool_output, template_inputs
from tests.real_model import default_model_path, run

pytestmark = pytest.mark.integration

CITY = ToolDefinition(
    "get_weather",
    "Weather in a city.",
    {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}}, "required": ["city"]},
)
DAYS = ToolDefinition(
    "count_days",
    "Days until a date.",
    {
        "type": "object",
        "properties": {"days": {"type": "integer", "minimum": 1, "maximum": 9}},
        "required": ["days"],
    },
)


@pytest.fixture(scope="module")
def engine() -> Iterator[LlamaCppEngine]:
    loaded = load_llamacpp_engine(
        default_model_path(), context_length=1024, parallel=3, threads=2, batch_size=256
    )
    yield loaded
    run(loaded.close())


def test_tool_requests_run_in_one_batch_each_with_its_grammar(engine: LlamaCppEngine) -> None:
    template = engine.info.chat_template
    assert template is not None
    generic = FORMATS["generic"]

    async def ask(tool: ToolDefinition | None) -> str:
        tool_use = ToolUse((CITY, DAYS), ToolChoice("named", tool.name)) if tool else None
        messages, _ = template_inputs([{"role": "user", "content": "Paris in 3 days?"}], tool_use, generic)
        tokens = await engine.tokenize(render_chat(template, messages))
        params = SamplingParams(
            max_tokens=80 if tool else 20,
            temperature=0.7,
            seed=5,
            call_grammar=call_grammar(tool_use, generic),
        )
        return "".join([c.text async for c in engine.generate(GenerationRequest(tokens, params))])

    async def together() -> list[str]:
        return list(await asyncio.gather(ask(CITY), ask(DAYS), ask(None)))

    city, days, plain = run(together(), timeout=600)  # shared CPUs can be slow
    for text, tool in ((city, CITY), (days, DAYS)):
        _, calls = parse_tool_output(text, generic)
        assert [c.name for c in calls] == [tool.name], text
        jsonschema.validate(json.loads(calls[0].arguments), tool.parameters)
    assert "<tool_call>" not in plain, plain
