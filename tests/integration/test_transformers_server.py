"""`locallab start --model <folder>`: a safetensors chat model (SmolLM2, converted from the shipped
GGUF) served by the transformers engine, on /chat and /v1, streaming, eight requests at once."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable

import httpx
import pytest

from tests.integration.conftest import Server

pytestmark = pytest.mark.integration

QUESTIONS = [
    "What is the capital of France?",
    "Name three colours.",
    "Count from 1 to 5.",
    "Write a haiku about rain.",
]


@pytest.fixture(scope="module")
def server(start_server: Callable[..., Server], tmp_path_factory: pytest.TempPathFactory) -> Server:
    pytest.importorskip("transformers")
    from tests.transformers_models import smollm2_folder

    folder = smollm2_folder(tmp_path_factory)
    return start_server(
        LOCALLAB_MODEL=str(folder),
        LOCALLAB_RATE_LIMIT_PER_MINUTE="0",
        LOCALLAB_PARALLEL="8",
        LOCALLAB_CONTEXT_LENGTH="1024",
    )


def test_chat_answers_with_the_models_own_template(server: Server) -> None:
    current = httpx.get(f"{server.url}/models/current").json()
    assert current["engine"] == "transformers"
    body = {"messages": [{"role": "user", "content": QUESTIONS[0]}], "do_sample": False, "max_length": 30}
    r = httpx.post(f"{server.url}/chat", json=body, timeout=60)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert "Paris" in answer["choices"][0]["message"]["content"]
    assert answer["choices"][0]["finish_reason"] == "stop"  # the model's end of turn ended it


async def _stream(client: httpx.AsyncClient, model: str, question: str) -> tuple[str, str | None]:
    body = {
        "model": model,
        "stream": True,
        "max_tokens": 24,
        "temperature": 0,
        "messages": [{"role": "user", "content": question}],
    }
    text, finish = "", None
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            choice = json.loads(line[6:])["choices"]
            if choice:
                text += choice[0]["delta"].get("content") or ""
                finish = choice[0]["finish_reason"] or finish
    return text, finish


def test_eight_concurrent_streams_answer_as_if_alone_while_health_stays_fast(server: Server) -> None:
    model = httpx.get(f"{server.url}/models/current").json()["id"]
    questions = QUESTIONS * 2

    async def run(batch: list[str]) -> list[tuple[str, str | None]]:
        async with httpx.AsyncClient(base_url=server.url, timeout=300) as client:
            return list(await asyncio.gather(*(_stream(client, model, q) for q in batch)))

    alone = {q: asyncio.run(run([q]))[0][0] for q in QUESTIONS}
    slowest = 0.0
    done = threading.Event()

    def watch_health() -> None:
        nonlocal slowest
        while not done.is_set():
            started = time.monotonic()
            assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200
            slowest = max(slowest, time.monotonic() - started)
            time.sleep(0.05)

    watcher = threading.Thread(target=watch_health)
    watcher.start()
    try:
        results = asyncio.run(run(questions))
    finally:
        done.set()
        watcher.join()
    for question, (text, finish) in zip(questions, results, strict=True):
        assert finish in ("stop", "length")
        assert text == alone[question]
    assert slowest < 0.5, f"/health took {slowest:.3f} s during generation"
