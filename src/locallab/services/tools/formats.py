"""How a model family writes tool calls, and which family a chat template belongs to.

Three native formats are recognised from the template's text: Hermes (Qwen 2.5/3, Hermes: each call in
`<tool_call>` tags), Llama 3.1+ (a bare JSON object with "parameters") and Mistral (`[TOOL_CALLS]` then
a JSON list). Any other template gets the generic format: tools described in the system prompt, calls
written in Hermes tags (plain text to models that never saw them, and unambiguous to find).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FormatName = Literal["hermes", "llama3", "mistral", "generic"]


@dataclass(frozen=True)
class ToolFormat:
    name: FormatName
    native: bool  # the chat template renders tools and tool turns itself (its `tools` variable)
    marker: str  # the text that starts the calls...
    marker_pattern: str  # ...as a regular expression (Llama 3's JSON may have spaces in it)
    anchored: bool  # calls only count at the very start of the answer (Llama 3's bare JSON)
    prefix: str  # constrained output: prefix call (separator call)* suffix
    separator: str
    suffix: str
    arguments_key: str  # the key of a call object that holds its arguments
    parallel: bool  # the family can write several calls in one answer

    @property
    def trigger(self) -> str:
        """A regular expression over the whole output that matches once a call has begun; its group
        marks where the call markup starts (ECMAScript and Python syntax alike, for llama.cpp)."""
        if self.anchored:
            return rf"\s*({self.marker_pattern})[\s\S]*"
        return rf"[\s\S]*?({self.marker_pattern})[\s\S]*"


HERMES = ToolFormat(
    "hermes", True, "<tool_call>", "<tool_call>", False, "<tool_call>\n", "\n</tool_call>\n<tool_call>\n",
    "\n</tool_call>", "arguments", True,
)  # fmt: skip
GENERIC = ToolFormat(
    "generic", False, "<tool_call>", "<tool_call>", False, "<tool_call>\n", "\n</tool_call>\n<tool_call>\n",
    "\n</tool_call>", "arguments", True,
)  # fmt: skip
# Llama 3.1's template refuses more than one call per assistant turn, so one call it is.
LLAMA3 = ToolFormat("llama3", True, '{"name"', r'\{\s*"name"', True, "", "", "", "parameters", False)
MISTRAL = ToolFormat(
    "mistral", True, "[TOOL_CALLS]", r"\[TOOL_CALLS\]", False, "[TOOL_CALLS][", ", ", "]", "arguments", True
)
FORMATS = {f.name: f for f in (HERMES, LLAMA3, MISTRAL, GENERIC)}


def detect_format(template: str | None) -> ToolFormat:
    """The tool-call format a chat template teaches its model; GENERIC when it has none we know."""
    if not template or "tools" not in template:
        return GENERIC
    if "[TOOL_CALLS]" in template:
        return MISTRAL
    if "<tool_call>" in template:
        return HERMES
    if "<|start_header_id|>" in template and ("<|python_tag|>" in template or '"parameters"' in template):
        return LLAMA3
    return GENERIC
