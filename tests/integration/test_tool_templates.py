"""Native tool-call formats on real chat templates (Qwen 2.5: Hermes tags, Llama 3.2: JSON with
"parameters", Mistral Nemo: [TOOL_CALLS]). Each template is written into a copy of the default GGUF's
metadata, so the real engine reads it from the file: the format is detected from it, tools and tool
turns render through it, the grammar forces that format's markup and the parser reads it back."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from locallab.engines.base import GenerationRequest, SamplingParams
from locallab.engines.llamacpp import LlamaCppEngine, load_llamacpp_engine
from locallab.engines.tools import ToolChoice, ToolDefinition, ToolUse
from locallab.services.chat_template import render_chat
from locallab.services.tools import call_grammar, detect_format, parse_tool_output, template_inputs
from tests.real_model import default_model_path, run

pytestmark = pytest.mark.integration

TEMPLATES = Path(__file__).parent.parent / "data" / "chat_templates"
WEATHER = ToolDefinition(
    "get_weather",
    "The current weather in a city.",
    {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 30},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city", "unit"],
    },
)
TIME = ToolDefinition(
    "get_time",
    "The time in a timezone.",
    {"type": "object", "properties": {"tz": {"type": "string", "maxLength": 30}}},
)
HISTORY: list[dict[str, Any]] = [
    {"role": "user", "content": "Weather in Oslo?"},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"id": "call_abc", "name": "get_weather", "arguments": {"city": "Oslo", "unit": "celsius"}}
        ],
    },
    {"role": "tool", "content": '{"temperature": -3}', "tool_call_id": "call_abc"},
    {"role": "assistant", "content": "It is -3 degrees in Oslo."},
    {"role": "user", "content": "And in Paris?"},
]
CASES = {
    "qwen2.5": ("hermes", "<tool_call>\n"),
    "llama3.2": ("llama3", '{"name"'),
    "mistral-nemo": ("mistral", "[TOOL_CALLS]["),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def templated(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, LlamaCppEngine]]:
    name: str = request.param
    path = tmp_path_factory.mktemp("gguf") / f"smollm2-{name}.gguf"
    subprocess.run(
        [
            sys.executable, "-m", "gguf.scripts.gguf_new_metadata", str(default_model_path()), str(path),
            "--chat-template-file", str(TEMPLATES / f"{name}.jinja"), "--force",
        ],
        check=True, capture_output=True,
    )  # fmt: skip
    engine = load_llamacpp_engine(path, context_length=2048, parallel=1, threads=2, batch_size=256)
    yield name, engine
    run(engine.close())


def _render(engine: LlamaCppEngine, tool_use: ToolUse, messages: list[dict[str, Any]]) -> str:
    template = engine.info.chat_template
    assert template is not None
    rendered, tools = template_inputs(messages, tool_use, detect_format(template))
    return render_chat(template, rendered, bos_token="", eos_token="</s>", tools=tools)


def test_the_format_is_detected_from_the_template_in_the_file(templated: tuple[str, LlamaCppEngine]) -> None:
    name, engine = templated
    assert detect_format(engine.info.chat_template).name == CASES[name][0]


def test_tools_and_tool_turns_render_through_the_template(templated: tuple[str, LlamaCppEngine]) -> None:
    _, engine = templated
    prompt = _render(engine, ToolUse((WEATHER, TIME), ToolChoice("auto")), HISTORY)
    assert '"get_weather"' in prompt and "The time in a timezone." in prompt  # the tools, as JSON
    assert '"city": "Oslo"' in prompt  # the earlier call, arguments as an object
    assert "temperature" in prompt and "-3" in prompt  # its result (Llama's template quotes it as JSON)
    assert "\\u003c" not in prompt  # tojson writes plain JSON, as Hugging Face's does


@pytest.mark.parametrize("mode", ["named", "required"])
def test_the_grammar_forces_the_format_and_the_parser_reads_it_back(
    templated: tuple[str, LlamaCppEngine], mode: str
) -> None:
    name, engine = templated
    fmt = detect_format(engine.info.chat_template)
    tool_use = ToolUse((WEATHER, TIME), ToolChoice(mode, "get_weather" if mode == "named" else None))  # type: ignore[arg-type]
    prompt = _render(engine, tool_use, HISTORY)

    async def generate() -> str:
        tokens = await engine.tokenize(prompt)
        params = SamplingParams(max_tokens=120, do_sample=False, call_grammar=call_grammar(tool_use, fmt))
        return "".join([c.text async for c in engine.generate(GenerationRequest(tokens, params))])

    text = run(generate())
    assert text.startswith(CASES[name][1]), text
    content, calls = parse_tool_output(text, fmt)
    assert content is None and calls, text
    for call in calls:
        tool = WEATHER if call.name == "get_weather" else TIME
        jsonschema.validate(json.loads(call.arguments), tool.parameters)
    if mode == "named":
        assert [c.name for c in calls] == ["get_weather"]
    assert replace(calls[0], id="x").id == "x"
