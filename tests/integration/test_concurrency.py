"""Many users at once on the real model: batching keeps answers right, the queue is bounded, and a
client that hangs up frees its slot."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest

from locallab.engines.base import GenerationChunk, TokenLogprob
from tests.conftest import poll
from tests.integration.conftest import Server
from tests.real_model import assert_same_greedy_text

pytestmark = pytest.mark.integration

QUESTIONS = [
    "What is the capital of France?",
    "Name three colours.",
    "Count from 1 to 5.",
    "Write a haiku about rain.",
]


def _ask(question: str) -> dict[str, object]:
    return {"messages": [{"role": "user", "content": question}], "do_sample": False, "max_length": 16}


async def _many(url: str, bodies: list[dict[str, object]], path: str = "/chat") -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=300) as client:
        return list(await asyncio.gather(*(client.post(path, json=b) for b in bodies)))


def _answer(response: httpx.Response) -> str:
    return str(response.json()["choices"][0]["message"]["content"])


def _openai_ask(question: str) -> dict[str, object]:
    return {
        "model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": question}],
        "temperature": 0, "max_tokens": 16, "logprobs": True, "top_logprobs": 5,
    }  # fmt: skip


def _as_chunks(response: httpx.Response) -> list[GenerationChunk]:
    """An OpenAI answer's token log-probabilities, in the shape assert_same_greedy_text compares."""
    entries = response.json()["choices"][0]["logprobs"]["content"]
    logprobs = tuple(
        TokenLogprob(
            bytes(e["bytes"]),
            e["logprob"],
            tuple((bytes(t["bytes"]), t["logprob"]) for t in e["top_logprobs"]),
        )
        for e in entries
    )
    return [GenerationChunk("", 0, len(logprobs), "length", 0, logprobs)]


def test_32_concurrent_requests_on_8_slots_all_answer_as_if_alone(server_8: Server) -> None:
    # Equal up to near ties: batches of other shapes round differently (see assert_same_greedy_text).
    url = f"{server_8.url}/v1/chat/completions"
    alone = {q: _as_chunks(httpx.post(url, json=_openai_ask(q), timeout=60)) for q in QUESTIONS}
    responses = asyncio.run(
        _many(server_8.url, [_openai_ask(q) for q in QUESTIONS * 8], "/v1/chat/completions")
    )
    assert [r.status_code for r in responses] == [200] * 32
    for question, response in zip(QUESTIONS * 8, responses, strict=True):
        assert_same_greedy_text(alone[question], _as_chunks(response))


def test_queue_overflow_gets_503_and_nothing_hangs(start_server: Callable[..., Server]) -> None:
    server = start_server(LOCALLAB_RATE_LIMIT_PER_MINUTE="0", LOCALLAB_PARALLEL="8", LOCALLAB_MAX_QUEUE="8")
    responses = asyncio.run(_many(server.url, [_ask(q) for q in QUESTIONS * 8]))
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 16 and statuses.count(503) == 16
    busy = next(r for r in responses if r.status_code == 503)
    assert "busy" in busy.json()["detail"] and int(busy.headers["retry-after"]) >= 1
    requests = httpx.get(f"{server.url}/system/info").json()["requests"]
    assert (requests["active"], requests["queued"]) == (0, 0)


def _active(url: str) -> int:
    requests = httpx.get(f"{url}/system/info").json()["requests"]
    return int(requests["active"]) + int(requests["queued"])


def test_disconnect_during_prompt_processing_frees_the_slot(server_8: Server) -> None:
    long_prompt = "Summarise this text. " + "The quick brown fox jumps over the lazy dog. " * 300
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{server_8.url}/generate", json={"prompt": long_prompt, "raw": True}, timeout=0.5)
    assert poll(lambda: _active(server_8.url), lambda n: n == 0, timeout=5) == 0


def test_disconnect_during_streaming_frees_the_slot(server_8: Server) -> None:
    body = {"prompt": "Tell me a very long story.", "stream": True, "max_length": 2000, "stop": ["zzzz"]}
    with httpx.stream("POST", f"{server_8.url}/generate", json=body, timeout=60) as r:
        lines = r.iter_lines()
        assert next(lines).startswith("data: ")
        assert _active(server_8.url) == 1
    assert poll(lambda: _active(server_8.url), lambda n: n == 0, timeout=5) == 0


def test_batch_route_answers_every_prompt_in_order(server_8: Server) -> None:
    """Each prompt gets its own answer, in order. Batched sequences share llama.cpp's KV pool, so a
    batched greedy answer may part from the solo one at a near tie (docs/features/performance.md):
    the check is that every answer, batched or solo, says what only its own prompt asks for."""
    prompts = {
        "What is the capital of France?": ("paris",),
        "Name three colours.": ("red", "blue", "green", "yellow", "black", "white"),
        "What is the capital of Germany?": ("berlin",),
    }
    request = {"prompts": list(prompts), "do_sample": False, "max_length": 16}
    r = httpx.post(f"{server_8.url}/generate/batch", json=request, timeout=60)
    assert r.status_code == 200
    body = r.json()
    singles = [
        httpx.post(
            f"{server_8.url}/generate", json={"prompt": p, "do_sample": False, "max_length": 16}
        ).json()
        for p in prompts
    ]
    for answer, single, words in zip(body["responses"], singles, prompts.values(), strict=True):
        assert any(w in answer.lower() for w in words) and any(w in single["response"].lower() for w in words)
    assert body["usage"]["prompt_tokens"] == sum(s["usage"]["prompt_tokens"] for s in singles)
    assert len(body["finish_reasons"]) == 3 and 3 <= body["usage"]["completion_tokens"] <= 3 * 16
