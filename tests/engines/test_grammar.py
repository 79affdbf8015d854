"""GBNF building for llama.cpp: bounded integers exactly, and tool calls wrapped in their markup."""

from __future__ import annotations

import re

import pytest

from locallab.engines.llamacpp.grammar import calls_grammar, integer_range_rule
from locallab.engines.tools import CallGrammar


def _as_regex(rule: str) -> re.Pattern[str]:
    # the range rules use only digit literals, "-", character classes, repetitions and groups
    return re.compile(rule.replace('"', "").replace(" ", ""))


@pytest.mark.parametrize(
    ("low", "high"),
    [
        (0, 100),
        (5, 7),
        (-10, 10),
        (-250, -3),
        (1, None),
        (None, 5),
        (None, -3),
        (17, None),
        (0, 0),
        (123, 4567),
    ],
)
def test_integer_ranges_match_exactly_the_numbers_in_bounds(low: int | None, high: int | None) -> None:
    pattern = _as_regex(integer_range_rule(low, high))
    for n in range(-5000, 5000):
        inside = (low is None or n >= low) and (high is None or n <= high)
        assert bool(pattern.fullmatch(str(n))) is inside, n
    assert not pattern.fullmatch("007") and not pattern.fullmatch("-0")


def test_calls_are_wrapped_in_their_markup_and_repeat_only_when_asked() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 1, "maximum": 3}}}
    one = calls_grammar(
        CallGrammar(schema, "<tool_call>\n", "\n</tool_call>\n<tool_call>\n", "\n</tool_call>", False)
    )
    assert one.startswith('root ::= "<tool_call>\\n" call "\\n</tool_call>"\n')
    assert "[1-3]" in one
    many = calls_grammar(CallGrammar(schema, "[", ", ", "]", True))
    assert many.startswith('root ::= "[" call (", " call)* "]"\n')
