"""The chat page in headless Chromium (Debian's package, driven by Playwright): a message streams in,
Stop ends the generation on the server, and the page asks for the API key when the server needs one.
A screenshot lands in test-artifacts/."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from locallab.engines.fake import FakeEngine
from tests.conftest import LiveServerFactory, poll

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

if not Path(CHROMIUM).exists() and os.environ.get("CI") != "true":
    pytest.skip("Debian's chromium is not installed (make install-test installs it)", allow_module_level=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        flags = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        flags += ["--disable-component-update", "--disable-sync", "--no-first-run"]
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=flags)
        yield launched
        launched.close()


def test_chat_streams_renders_markdown_and_stop_cancels_on_the_server(
    browser: Any, serve_app: LiveServerFactory
) -> None:
    pieces = [b"Here is **bold** and `code`:\n\n", b"```python\n", b"def f():\n    return 1\n", b"```\n\n"]
    engine = FakeEngine(pieces + [b"word "] * 2000, delay=0.01)
    url = serve_app(engine)
    page = browser.new_page(viewport={"width": 390, "height": 800})  # a phone-sized screen
    page.goto(url)
    page.wait_for_selector("#model option", state="attached")
    assert page.locator("#model").input_value() == "fake-chat"
    page.fill("#input", "Show me some code")
    page.press("#input", "Enter")
    answer = page.locator(".msg.assistant").last
    answer.locator("text=word word word").wait_for()
    assert answer.locator("strong").inner_text() == "bold"
    assert "def" in answer.locator("pre code .tok-kw").first.inner_text()
    assert page.locator("#stop").is_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "chat-page.png"), full_page=True)
    page.click("#stop")
    page.wait_for_selector(".msg.assistant[data-done=true]")
    assert "(stopped)" in answer.inner_text()
    assert poll(lambda: engine.cancelled, lambda n: n == 1) == 1  # the server stopped generating
    assert engine.in_flight == 0
    # the settings panel shows the server's state
    page.click("#toggle-settings")
    page.wait_for_selector("#system-info dt")
    assert "Active" in page.locator("#system-info").inner_text()
    page.close()


def test_page_asks_for_the_api_key_and_uses_it(browser: Any, serve_app: LiveServerFactory) -> None:
    url = serve_app(FakeEngine([b"Hello", b" there"]), api_keys="page-key-123")
    page = browser.new_page()
    page.goto(url)
    page.wait_for_selector("#key-dialog[open]")
    page.fill("#key-input", "page-key-123")
    page.click("#key-dialog button")
    page.wait_for_selector("#model option", state="attached")
    page.fill("#input", "hi")
    page.press("#input", "Enter")
    page.wait_for_selector(".msg.assistant[data-done=true]")
    assert page.locator(".msg.assistant").last.inner_text().strip() == "Hello there"
    page.close()
