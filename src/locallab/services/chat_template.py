"""Rendering a model's own chat template (Jinja2 from its metadata) in a sandbox.

A chat template is code supplied by whoever made the model file; rendering it in Jinja2's
ImmutableSandboxedEnvironment keeps it from reaching Python internals (CVE-2024-34359).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, NoReturn

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from locallab.errors import ChatTemplateError


def _raise_exception(message: str) -> NoReturn:
    raise ChatTemplateError(f"The model's chat template refused the conversation: {message}")


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: Any = None,
    sort_keys: bool = False,
) -> str:
    """Hugging Face's `tojson`: plain JSON. Jinja2's own escapes <, > and & for HTML, which would put
    `\u003c` into prompts that show tools."""
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


@functools.lru_cache(maxsize=16)
def _compile(source: str) -> jinja2.Template:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    env.filters["tojson"] = _tojson
    try:
        return env.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise ChatTemplateError(f"The model's chat template is not valid Jinja2: {exc}") from exc


def render_chat(
    template: str,
    messages: Sequence[Mapping[str, Any]],
    *,
    bos_token: str = "",
    eos_token: str = "",
    add_generation_prompt: bool = True,
    tools: list[dict[str, Any]] | None = None,
) -> str:
    """The prompt text for `messages`, exactly as the model's authors format a conversation. `tools`
    (function definitions, as Hugging Face templates read them) is set only when tools are offered."""
    compiled = _compile(template)
    context: dict[str, Any] = {
        "messages": [dict(m) for m in messages],
        "add_generation_prompt": add_generation_prompt,
        "bos_token": bos_token,
        "eos_token": eos_token,
    }
    if tools is not None:
        context["tools"] = tools
    try:
        return compiled.render(**context)
    except ChatTemplateError:
        raise
    except jinja2.exceptions.SecurityError as exc:
        raise ChatTemplateError(f"The model's chat template tried an unsafe operation: {exc}") from exc
    except jinja2.TemplateError as exc:
        raise ChatTemplateError(f"The model's chat template failed to render: {exc}") from exc
