"""The chat template renderer process: same text as rendering in-process, and it survives bad templates."""

from __future__ import annotations

import asyncio

import pytest

from locallab.engines.fake import CHATML_TEMPLATE
from locallab.errors import ChatTemplateError
from locallab.services.chat_template import render_chat
from locallab.services.template_worker import TemplateRenderer

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi ✓"}]
LOOP = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
BOMB = "{% set s = 'x' * 3000000000 %}{{ s | length }}"


def test_renders_what_the_in_process_renderer_renders() -> None:
    async def go() -> str:
        renderer = TemplateRenderer(5.0)
        try:
            return await renderer.render("m", CHATML_TEMPLATE, MESSAGES, "<s>", "</s>")
        finally:
            await renderer.close()

    assert asyncio.run(go()) == render_chat(CHATML_TEMPLATE, MESSAGES, bos_token="<s>", eos_token="</s>")


@pytest.mark.parametrize(("template", "words"), [(LOOP, "took longer than 0.5 s"), (BOMB, "memory")])
def test_a_bad_template_costs_a_400_and_the_next_render_works(template: str, words: str) -> None:
    async def go() -> str:
        renderer = TemplateRenderer(0.5)
        try:
            with pytest.raises(ChatTemplateError, match=words):
                await renderer.render("m", template, MESSAGES, "", "")
            return await renderer.render("m", CHATML_TEMPLATE, MESSAGES, "", "")
        finally:
            await renderer.close()

    assert asyncio.run(go()).endswith("<|im_start|>assistant\n")


def test_a_cancelled_render_does_not_answer_the_next_one() -> None:
    async def go() -> str:
        renderer = TemplateRenderer(30.0)
        try:
            slow = asyncio.ensure_future(renderer.render("m", LOOP, MESSAGES, "", ""))
            await asyncio.sleep(0.5)
            slow.cancel()
            with pytest.raises(asyncio.CancelledError):
                await slow
            return await renderer.render("m", CHATML_TEMPLATE, MESSAGES, "", "")
        finally:
            await renderer.close()

    assert "Be brief." in asyncio.run(asyncio.wait_for(go(), 20))


def test_a_worker_that_died_between_renders_is_replaced() -> None:
    async def go() -> str:
        renderer = TemplateRenderer(5.0)
        try:
            await renderer.warm()
            assert renderer._process is not None
            renderer._process.kill()  # killed from outside (OOM killer, an operator)
            await renderer._process.wait()
            return await renderer.render("m", CHATML_TEMPLATE, MESSAGES, "", "")
        finally:
            await renderer.close()

    assert "Be brief." in asyncio.run(go())
