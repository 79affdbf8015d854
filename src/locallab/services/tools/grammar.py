"""The output constraint that makes every call parse and validate: a call object per tool,
{"name": <that tool>, <arguments key>: <its parameters schema>}, wrapped in the format's markup.

`required` and a named choice constrain from the first token; `auto` only once the model writes the
format's marker (a lazy grammar), so it may answer in text instead; `none` adds nothing.
"""

from __future__ import annotations

import copy
from typing import Any

from locallab.engines.tools import CallGrammar, ToolDefinition, ToolUse
from locallab.services.tools.formats import ToolFormat

_DEFS = ("$defs", "definitions")


def call_grammar(tool_use: ToolUse | None, fmt: ToolFormat) -> CallGrammar | None:
    if tool_use is None or tool_use.choice.mode == "none" or not tool_use.tools:
        return None
    if tool_use.choice.mode == "named":
        tools = [t for t in tool_use.tools if t.name == tool_use.choice.name]
    else:
        tools = list(tool_use.tools)
    defs: dict[str, Any] = {}
    items = [_call_schema(tool, fmt, f"tool{i}-", defs) for i, tool in enumerate(tools)]
    schema: dict[str, Any] = items[0] if len(items) == 1 else {"anyOf": items}
    if defs:
        schema = {**schema, "$defs": defs}
    repeat = tool_use.parallel and fmt.parallel and tool_use.choice.mode != "named"
    triggers = () if tool_use.forced else (fmt.trigger,)
    return CallGrammar(schema, fmt.prefix, fmt.separator, fmt.suffix, repeat, triggers)


def _call_schema(tool: ToolDefinition, fmt: ToolFormat, prefix: str, defs: dict[str, Any]) -> dict[str, Any]:
    parameters = _hoist_definitions(copy.deepcopy(tool.parameters), prefix, defs)
    if "type" not in parameters:
        parameters["type"] = "object"
    return {
        "type": "object",
        "properties": {"name": {"const": tool.name}, fmt.arguments_key: parameters},
        "required": ["name", fmt.arguments_key],
        "additionalProperties": False,
    }


def _hoist_definitions(schema: dict[str, Any], prefix: str, defs: dict[str, Any]) -> dict[str, Any]:
    """Moves a tool's own `$defs` to the top of the combined schema, renamed apart from the other
    tools', and points its `$ref`s there ("#" itself becomes a definition too)."""
    own = {name: body for key in _DEFS for name, body in (schema.pop(key, None) or {}).items()}

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            out = {k: rewrite(v) for k, v in node.items()}
            ref = out.get("$ref")
            if isinstance(ref, str) and ref.startswith("#"):
                parts = ref[1:].strip("/").split("/")
                if ref in ("#", "#/"):
                    out["$ref"] = f"#/$defs/{prefix}self"
                elif len(parts) == 2 and parts[0] in _DEFS:
                    out["$ref"] = f"#/$defs/{prefix}{parts[1]}"
            return out
        if isinstance(node, list):
            return [rewrite(v) for v in node]
        return node

    body = rewrite(schema)
    for name, sub in own.items():
        defs[f"{prefix}{name}"] = rewrite(sub)
    if _refers_to_self(body, prefix) or any(_refers_to_self(d, prefix) for d in defs.values()):
        defs[f"{prefix}self"] = body
    result: dict[str, Any] = body
    return result


def _refers_to_self(node: Any, prefix: str) -> bool:
    if isinstance(node, dict):
        return node.get("$ref") == f"#/$defs/{prefix}self" or any(
            _refers_to_self(v, prefix) for v in node.values()
        )
    if isinstance(node, list):
        return any(_refers_to_self(v, prefix) for v in node)
    return False
