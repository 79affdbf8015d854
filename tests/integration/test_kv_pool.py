"""The KV pool through the HTTP API: cached-token counts, pool use in /system/info and /metrics, and a
pool too small for everyone that pauses requests instead of failing them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import openai
import pytest

from tests.integration.conftest import Server

pytestmark = pytest.mark.integration

SYSTEM = "You are the support assistant of ACME routers. Answer briefly and politely. " * 8


def _messages(question: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]


def _metric(text: str, name: str) -> float:
    return next(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))


def test_cached_tokens_tell_how_much_of_the_prompt_was_reused(start_server: Callable[..., Server]) -> None:
    server = start_server(
        LOCALLAB_RATE_LIMIT_PER_MINUTE="0",
        LOCALLAB_PARALLEL="2",
        LOCALLAB_KV_TOKENS="4096",
        LOCALLAB_DETERMINISTIC="false",  # keep the first request's prefix for the second
    )
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0) as client:
        first = client.chat.completions.create(
            model="smollm2-135m-instruct",
            messages=_messages("How do I reset it?"),
            max_tokens=8,  # type: ignore[arg-type]
        )
        second = client.chat.completions.create(
            model="smollm2-135m-instruct",
            messages=_messages("Is it waterproof?"),
            max_tokens=8,  # type: ignore[arg-type]
        )
    assert first.usage is not None and second.usage is not None
    assert first.usage.prompt_tokens_details is not None and second.usage.prompt_tokens_details is not None
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert (
        cached is not None and 100 < cached < second.usage.prompt_tokens
    )  # the system prompt, not the question
    info = httpx.get(f"{server.url}/system/info").json()["kv_pool"]
    assert info["size_tokens"] == 4096 and 0 < info["used_tokens"] < 4096
    assert (info["kv_type"], info["prefix_cache"], info["deterministic"]) == ("f16", True, False)
    metrics = httpx.get(f"{server.url}/metrics").text
    assert _metric(metrics, "locallab_kv_pool_tokens") == 4096
    assert _metric(metrics, "locallab_kv_pool_used_tokens") == info["used_tokens"]
    assert _metric(metrics, "locallab_cached_prompt_tokens_total") == cached


async def _stream_all(url: str, questions: list[str]) -> list[str]:
    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=300)

    async def one(question: str) -> str:
        stream = await client.chat.completions.create(
            model="smollm2-135m-instruct",
            messages=[{"role": "user", "content": question}],
            max_tokens=120,
            temperature=0,
            stream=True,
        )
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    try:
        return list(await asyncio.gather(*(one(q) for q in questions)))
    finally:
        await client.close()


def test_a_pool_too_small_for_everyone_pauses_requests_instead_of_failing(
    start_server: Callable[..., Server],
) -> None:
    server = start_server(LOCALLAB_RATE_LIMIT_PER_MINUTE="0", LOCALLAB_PARALLEL="4", LOCALLAB_KV_TOKENS="256")
    questions = [f"Count from 1 to {n}, separated by commas." for n in (70, 80, 90, 99)]
    answers = asyncio.run(_stream_all(server.url, questions))  # an error would raise in the client
    assert all(answer.strip() for answer in answers)
    info = httpx.get(f"{server.url}/system/info").json()["kv_pool"]
    assert info["preemptions"] >= 1 and info["size_tokens"] == 256
    too_long = httpx.post(
        f"{server.url}/v1/chat/completions",
        json={"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "word " * 400}]},
        timeout=60,
    )
    assert too_long.status_code == 400 and "context" in too_long.text  # the pool bounds one request too
