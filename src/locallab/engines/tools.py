"""Tool calling as it crosses the engine boundary, in no API's wire format: the tools a request offers,
what it lets the model do with them, the calls that come back, and the output constraint that forces
a call's shape (`CallGrammar`). The formats, prompting and parsing live in `locallab.services.tools`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

ToolChoiceMode = Literal["none", "auto", "required", "named"]


@dataclass(frozen=True)
class ToolDefinition:
    """A function the model may call; `parameters` is a JSON schema of its arguments object."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class ToolChoice:
    """none: no tools; auto: text or calls, as the model likes; required: at least one call; named: a
    call of `name`."""

    mode: ToolChoiceMode
    name: str | None = None


@dataclass(frozen=True)
class ToolUse:
    """The tools of one request and what the model may, or must, do with them."""

    tools: tuple[ToolDefinition, ...]
    choice: ToolChoice
    parallel: bool = True

    def tool(self, name: str) -> ToolDefinition | None:
        return next((t for t in self.tools if t.name == name), None)

    @property
    def forced(self) -> bool:
        """Whether the answer must be a call from its first token."""
        return self.choice.mode in ("required", "named")


@dataclass(frozen=True)
class ToolCall:
    """One call the model made; `arguments` is the JSON text of its arguments object."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ToolCallDelta:
    """A piece of a streamed call: the first piece of call `index` carries its id and name, later
    pieces only argument text."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True)
class CallGrammar:
    """An output made of JSON objects matching `item_schema`, written as
    `prefix item (separator item)* suffix` (one item unless `repeat`) and nothing after it.

    Without `triggers` the constraint holds from the first token. With them the model writes free text
    until a trigger pattern (a regular expression over the whole output so far; its first group marks
    where the constrained part starts) matches, and the constraint holds from there on.
    """

    item_schema: dict[str, Any]
    prefix: str
    separator: str
    suffix: str
    repeat: bool
    triggers: tuple[str, ...] = ()
