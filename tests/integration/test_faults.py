"""Load and faults against a real server process: a burst at the rate limiter, and a graceful stop."""

from __future__ import annotations

import asyncio
import json
import math
import signal
import threading
import time
from collections.abc import Callable

import httpx
import psutil
import pytest

from tests.conftest import poll
from tests.integration.conftest import Server

pytestmark = pytest.mark.integration


def test_burst_of_1000_requests_from_50_clients(start_server: Callable[..., Server]) -> None:
    # 50 clients = 50 API keys (all traffic comes from 127.0.0.1; the limit is per key)
    keys = [f"client-key-{i:02d}" for i in range(50)]
    server = start_server(LOCALLAB_API_KEYS=",".join(keys))  # default limits: 60 a minute, bursts of 10
    process = psutil.Process(server.process.pid)
    httpx.get(f"{server.url}/health")  # warm up before measuring memory
    rss_before = process.memory_info().rss

    async def burst() -> list[int]:
        limits = httpx.Limits(max_connections=50)
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=60) as client:
            semaphore = asyncio.Semaphore(50)

            async def one(i: int) -> int:
                async with semaphore:
                    headers = {"X-API-Key": keys[i % 50]}
                    return (await client.get("/models/current", headers=headers)).status_code

            return list(await asyncio.gather(*(one(i) for i in range(1000))))

    started = time.monotonic()
    statuses = asyncio.run(burst())
    elapsed = time.monotonic() - started
    assert set(statuses) <= {200, 429}
    # each client's burst of 10 passes, plus one more for every second the burst took; no more
    assert 500 <= statuses.count(200) <= 50 * (10 + math.ceil(elapsed)), (statuses.count(200), elapsed)
    assert httpx.get(f"{server.url}/health").json()["status"] == "healthy"
    rss_after = poll(lambda: process.memory_info().rss, lambda rss: rss <= rss_before * 1.10, timeout=10)
    assert rss_after <= rss_before * 1.10, (rss_before, rss_after)


def test_sigterm_ends_long_generations_with_an_error_event_and_exits(
    start_server: Callable[..., Server],
) -> None:
    server = start_server(LOCALLAB_RATE_LIMIT_PER_MINUTE="0", LOCALLAB_SHUTDOWN_GRACE="3")
    long_events: list[str] = []
    short: dict[str, object] = {}

    def long_stream() -> None:
        # counting to 100000 does not end by itself before the token limit
        prompt = "Write the numbers from 1 to 100000 separated by commas."
        body = {
            "prompt": prompt,
            "stream": True,
            "max_length": 3000,
            "do_sample": False,
            "repetition_penalty": 1.0,
        }
        with httpx.stream("POST", f"{server.url}/generate", json=body, timeout=60) as r:
            long_events.extend(line for line in r.iter_lines() if line.startswith("data: "))

    worker = threading.Thread(target=long_stream)
    worker.start()
    assert poll(lambda: len(long_events), lambda n: n >= 3, timeout=30) >= 3

    def short_request() -> None:
        r = httpx.post(
            f"{server.url}/generate",
            json={"prompt": "Say hi", "max_length": 30, "stop": ["zzzz"]},
            timeout=60,
        )
        short.update(status=r.status_code, body=r.json())

    quick = threading.Thread(target=short_request)
    quick.start()

    def running() -> int:
        return int(httpx.get(f"{server.url}/system/info").json()["requests"]["active"])

    assert poll(running, lambda n: n == 2, timeout=30) == 2  # both generations are in flight
    server.process.send_signal(signal.SIGTERM)
    quick.join(30)
    worker.join(30)
    assert server.process.wait(30) == 0
    assert short["status"] == 200  # finished within the grace period
    assert long_events[-1] == "data: [DONE]"
    assert "shutting down" in json.loads(long_events[-2][6:]).get("detail", ""), long_events[-4:]
