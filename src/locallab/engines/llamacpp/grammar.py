"""JSON schemas and tool calls as llama.cpp grammars (GBNF).

llama-cpp-python's schema converter does the JSON; this adds what it lacks: integer bounds (minimum,
maximum, exclusive ones), JSON's string characters, and the literal markup around tool calls.
"""

from __future__ import annotations

import copy
import json
import math
from typing import Any

from llama_cpp.llama_grammar import RESERVED_NAMES, SchemaConverter

from locallab.engines.tools import CallGrammar

# llama-cpp-python's converter lets raw control characters into strings, which JSON forbids; this is
# the string-character rule of llama.cpp's own converter.
_LOOSE_CHAR = 'char ::= [^"\\\\] |'
_JSON_CHAR = 'char ::= [^"\\\\\\x7F\\x00-\\x1F] |'
_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


def _same_length(low: str, high: str) -> str:
    """GBNF for the decimal numbers from `low` to `high`, which have the same number of digits."""
    if not low:
        return ""
    if low == high:
        return f'"{low}"'
    if len(low) == 1:
        return f"[{low}-{high}]"
    rest = len(low) - 1
    if low[0] == high[0]:
        return f'"{low[0]}" ({_same_length(low[1:], high[1:])})'
    parts = [f'"{low[0]}" ({_same_length(low[1:], "9" * rest)})']
    if int(low[0]) + 1 <= int(high[0]) - 1:
        parts.append(f"[{int(low[0]) + 1}-{int(high[0]) - 1}] [0-9]{{{rest}}}")
    parts.append(f'"{high[0]}" ({_same_length("0" * rest, high[1:])})')
    return " | ".join(parts)


def _natural_range(low: int, high: int | None) -> str:
    """GBNF for the integers low..high (high None: no upper bound), 0 <= low, without leading zeros."""
    parts = []
    digits = len(str(low))
    top = len(str(high)) if high is not None else digits
    for n in range(digits, top + 1):
        first = max(low, 10 ** (n - 1) if n > 1 else 0)
        last = min(high, 10**n - 1) if high is not None else 10**n - 1
        if first <= last:
            parts.append(f"({_same_length(str(first), str(last))})")
    if high is None:
        parts.append(f"[1-9] [0-9]{{{digits},}}")  # any number with more digits
    return " | ".join(parts) or '"0"'


def integer_range_rule(low: int | None, high: int | None) -> str:
    """GBNF for the JSON integers from `low` to `high`, either bound may be missing."""
    parts = []
    if high is None or high >= 0:
        parts.append(f"({_natural_range(max(low or 0, 0), high)})")
    if low is None or low < 0:  # negative numbers: "-" and the magnitudes, the other way round
        smallest = max(1, -high) if high is not None and high < 0 else 1
        parts.append(f'"-" ({_natural_range(smallest, None if low is None else -low)})')
    return " | ".join(parts)


def _bounds(schema: dict[str, Any]) -> tuple[int | None, int | None]:
    lows = [math.ceil(schema["minimum"])] if "minimum" in schema else []
    if "exclusiveMinimum" in schema:
        lows.append(math.floor(schema["exclusiveMinimum"]) + 1)
    highs = [math.floor(schema["maximum"])] if "maximum" in schema else []
    if "exclusiveMaximum" in schema:
        highs.append(math.ceil(schema["exclusiveMaximum"]) - 1)
    return (max(lows) if lows else None), (min(highs) if highs else None)


class _Converter(SchemaConverter):
    """The converter, with bounded integers."""

    def visit(self, schema: Any, name: str) -> Any:
        if isinstance(schema, dict) and schema.get("type") == "integer" and any(k in schema for k in _BOUNDS):
            low, high = _bounds(schema)
            if low is not None and high is not None and low > high:
                raise ValueError(f"no integer lies between {schema}'s bounds")
            rule_name = name + "-" if name in RESERVED_NAMES else name or "root"
            add_rule: Any = self._add_rule
            return add_rule(rule_name, f"({integer_range_rule(low, high)}) space")
        visit: Any = super().visit
        return visit(schema, name)


def _rules(schema: dict[str, Any], name: str) -> str:
    make: Any = _Converter  # the converter's own __init__ has no annotations
    converter = make(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    resolved = converter.resolve_refs(copy.deepcopy(schema), "request")
    converter.visit(resolved, name)
    grammar: str = converter.format_grammar()
    return grammar.replace(_LOOSE_CHAR, _JSON_CHAR)


def schema_grammar(schema: dict[str, Any]) -> str:
    """GBNF for one JSON value matching `schema` (rule `root`)."""
    return _rules(schema, "")


def calls_grammar(calls: CallGrammar) -> str:
    """GBNF for tool calls: `prefix call (separator call)* suffix` (rule `root`)."""

    def literal(text: str) -> str:
        return json.dumps(text) if text else ""

    repeat = f"({literal(calls.separator)} call)*" if calls.repeat else ""
    root = " ".join(p for p in (literal(calls.prefix), "call", repeat, literal(calls.suffix)) if p)
    return f"root ::= {root}\n{_rules(calls.item_schema, 'call')}"
