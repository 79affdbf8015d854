"""Chat templates render as the model's authors wrote them, inside Jinja2's sandbox."""

from __future__ import annotations

import pytest

from locallab.engines.fake import CHATML_TEMPLATE
from locallab.errors import ChatTemplateError
from locallab.services.chat_template import render_chat


def test_chatml_template_renders_the_conversation_and_generation_prompt() -> None:
    text = render_chat(CHATML_TEMPLATE, [{"role": "user", "content": "Hi"}])
    assert text == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


def test_template_sees_bos_and_eos_tokens() -> None:
    text = render_chat(
        "{{ bos_token }}{{ messages[0].content }}{{ eos_token }}",
        [{"role": "user", "content": "x"}],
        bos_token="<s>",
        eos_token="</s>",
    )
    assert text == "<s>x</s>"


@pytest.mark.parametrize(
    "template",
    [
        # CVE-2024-34359: templates that reach Python internals to run code
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ messages.__class__.__init__.__globals__ }}",
        "{% set x = messages.append({'role': 'user', 'content': 'injected'}) %}{{ x }}",
    ],
)
def test_template_cannot_escape_the_sandbox(template: str) -> None:
    with pytest.raises(ChatTemplateError):
        render_chat(template, [{"role": "user", "content": "x"}])


def test_template_syntax_error_is_reported() -> None:
    with pytest.raises(ChatTemplateError, match="not valid Jinja2"):
        render_chat("{% for %}", [{"role": "user", "content": "x"}])


def test_raise_exception_in_a_template_is_a_request_error() -> None:
    template = "{% if messages[0].role != 'user' %}{{ raise_exception('first must be user') }}{% endif %}ok"
    with pytest.raises(ChatTemplateError, match="first must be user"):
        render_chat(template, [{"role": "assistant", "content": "x"}])
    assert render_chat(template, [{"role": "user", "content": "x"}]) == "ok"
