"""Tool calling, for every API dialect: formats per chat-template family (`formats`), tools and tool
turns in prompts (`prompting`), the grammar that forces valid calls (`grammar`), reading calls back out
of the output as it streams (`parsing`), and the checks on a request's tools (`checks`). Nothing here
knows any API's wire format; the types that cross into engines are in `locallab.engines.tools`."""

from locallab.engines.tools import (
    CallGrammar,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolDefinition,
    ToolUse,
)
from locallab.services.tools.checks import check_tool_use
from locallab.services.tools.formats import FORMATS, ToolFormat, detect_format
from locallab.services.tools.grammar import call_grammar
from locallab.services.tools.parsing import ToolCallParser, ToolEvent, new_call_id, parse_tool_output
from locallab.services.tools.prompting import history_arguments, template_inputs

__all__ = [
    "FORMATS",
    "CallGrammar",
    "ToolCall",
    "ToolCallDelta",
    "ToolCallParser",
    "ToolChoice",
    "ToolDefinition",
    "ToolEvent",
    "ToolFormat",
    "ToolUse",
    "call_grammar",
    "check_tool_use",
    "detect_format",
    "history_arguments",
    "new_call_id",
    "parse_tool_output",
    "template_inputs",
]
