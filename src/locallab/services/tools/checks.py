"""What makes a set of tools usable: names a call can carry, schemas decoding can enforce, a choice
that names a tool that exists. Each problem is a 400 naming the tool."""

from __future__ import annotations

import re

from locallab.engines.json_schema import check_json_schema
from locallab.engines.tools import ToolUse
from locallab.errors import InvalidRequestError

TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")


def check_tool_use(tool_use: ToolUse, where: str = "tools") -> None:
    seen: set[str] = set()
    for i, tool in enumerate(tool_use.tools):
        if not TOOL_NAME.fullmatch(tool.name):
            raise InvalidRequestError(
                f"{where}[{i}].name: {tool.name!r} is not a valid tool name; use 1 to 64 letters, digits, "
                "underscores or hyphens."
            )
        if tool.name in seen:
            raise InvalidRequestError(f"{where}[{i}].name: two tools are named '{tool.name}'.")
        seen.add(tool.name)
        schema_where = f"{where}[{i}] ('{tool.name}').parameters"
        if not isinstance(tool.parameters, dict):
            raise InvalidRequestError(f"{schema_where}: must be a JSON schema object.")
        if tool.parameters.get("type", "object") != "object":
            raise InvalidRequestError(f"{schema_where}: the arguments must be an object (type 'object').")
        check_json_schema(tool.parameters, schema_where)
    choice = tool_use.choice
    if choice.mode != "none" and not tool_use.tools:
        raise InvalidRequestError("tool_choice: set without any tools; add tools or remove tool_choice.")
    if choice.mode == "named" and tool_use.tool(choice.name or "") is None:
        names = ", ".join(t.name for t in tool_use.tools)
        raise InvalidRequestError(f"tool_choice: there is no tool named '{choice.name}' (tools: {names}).")
