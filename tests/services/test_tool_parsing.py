"""Reading calls out of model output: every format, streamed in any pieces, agrees with the whole."""

from __future__ import annotations

import json

import pytest

from locallab.engines.tools import ToolCallDelta
from locallab.services.tools import FORMATS, ToolCallParser, detect_format, parse_tool_output

OUTPUTS = {
    "hermes": 'Checking.\n<tool_call>\n{"name": "a", "arguments": {"s": "}{\\"", "n": [1, {"b": 2}]}}'
    '\n</tool_call>\n<tool_call>\n{"name": "b", "arguments": {}}\n</tool_call>',
    "generic": '<tool_call>\n{"name": "a", "arguments": {"x": 1}}\n</tool_call>',
    "llama3": ' {"name": "a", "parameters": {"x": "y"}}',
    "mistral": '[TOOL_CALLS][{"name": "a", "arguments": {"x": 1}}, {"name": "b", "arguments": {"y": 2}}]',
}


def _stream(fmt: str, text: str, step: int) -> tuple[str, dict[int, list[str]]]:
    parser = ToolCallParser(FORMATS[fmt])
    events = []
    for i in range(0, len(text), step):
        events += parser.feed(text[i : i + step])
    events += parser.finish()
    content = "".join(e for e in events if isinstance(e, str))
    calls: dict[int, list[str]] = {}
    for e in events:
        if isinstance(e, ToolCallDelta):
            if e.id is not None:
                assert e.index not in calls and e.arguments == ""
                calls[e.index] = [e.name or "", ""]
            calls[e.index][1] += e.arguments
    return content, calls


@pytest.mark.parametrize("fmt", sorted(OUTPUTS))
@pytest.mark.parametrize("step", [1, 2, 7, 1000])
def test_streamed_pieces_agree_with_the_whole_answer(fmt: str, step: int) -> None:
    content, calls = parse_tool_output(OUTPUTS[fmt], FORMATS[fmt])
    streamed_content, streamed_calls = _stream(fmt, OUTPUTS[fmt], step)
    assert streamed_content == (content or "")
    assert [streamed_calls[i] for i in sorted(streamed_calls)] == [[c.name, c.arguments] for c in calls]
    assert calls and all(isinstance(json.loads(c.arguments), dict) for c in calls)


def test_text_before_the_call_is_content_and_markup_never_is() -> None:
    content, calls = parse_tool_output(OUTPUTS["hermes"], FORMATS["hermes"])
    assert content == "Checking." and [c.name for c in calls] == ["a", "b"]
    assert json.loads(calls[0].arguments) == {"s": '}{"', "n": [1, {"b": 2}]}


def test_a_partial_marker_waits_and_is_released_when_it_is_not_one() -> None:
    parser = ToolCallParser(FORMATS["hermes"])
    assert parser.feed("Use a <tool") == ["Use a"]
    assert parser.feed("box.") == [" <toolbox."]
    assert parser.finish() == []


def test_llama3_calls_count_only_at_the_start() -> None:
    assert parse_tool_output('I would write {"name": "a", "parameters": {}}', FORMATS["llama3"])[1] == []
    parser = ToolCallParser(FORMATS["llama3"])
    assert parser.feed('{"na') == []  # may still become a call
    assert parser.feed("me is Bob") == ['{"name is Bob']


def test_a_call_cut_off_by_the_token_limit_keeps_what_was_written() -> None:
    content, calls = parse_tool_output('<tool_call>\n{"name": "a", "arguments": {"x": "ab', FORMATS["hermes"])
    assert content is None and calls[0].name == "a" and calls[0].arguments == '{"x": "ab'


def test_keys_in_another_order_are_read_whole() -> None:
    _, calls = parse_tool_output(
        '<tool_call>{"arguments": {"x": 1}, "name": "a"}</tool_call>', FORMATS["hermes"]
    )
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [("a", {"x": 1})]


@pytest.mark.parametrize(
    ("template", "name"),
    [
        ("{{ messages }}", "generic"),
        (None, "generic"),
        ("{% if tools %}<tool_call>{% endif %}", "hermes"),
        ("{% if tools %}[TOOL_CALLS]{% endif %}", "mistral"),
        ('<|start_header_id|>{% if tools %}{"name": x, "parameters": y}{% endif %}', "llama3"),
    ],
)
def test_the_format_follows_the_template(template: str | None, name: str) -> None:
    assert detect_format(template).name == name
