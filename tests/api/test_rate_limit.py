"""The seed's rate limit: 60 requests a minute with bursts of 10, per client, /health exempt."""

from __future__ import annotations

import pytest

from locallab.api.middleware.rate_limit import TokenBucketLimiter
from tests.conftest import AppFactory, FakeClock


def test_burst_of_ten_then_429_with_retry_after(make_client: AppFactory) -> None:
    clock = FakeClock()
    client = make_client(clock=clock, rate_limit_per_minute=60, rate_limit_burst=10)
    statuses = [client.get("/models/current").status_code for _ in range(12)]
    assert statuses == [200] * 10 + [429] * 2
    r = client.get("/models/current")
    assert r.headers["retry-after"] == "1"
    assert "Rate limit exceeded" in r.json()["detail"]


def test_tokens_come_back_at_one_per_second(make_client: AppFactory) -> None:
    clock = FakeClock()
    client = make_client(clock=clock, rate_limit_per_minute=60, rate_limit_burst=10)
    for _ in range(10):
        client.get("/models/current")
    assert client.get("/models/current").status_code == 429
    clock.advance(2.0)
    assert [client.get("/models/current").status_code for _ in range(3)] == [200, 200, 429]


def test_health_is_exempt(make_client: AppFactory) -> None:
    clock = FakeClock()
    client = make_client(clock=clock, rate_limit_per_minute=60, rate_limit_burst=2)
    for _ in range(2):
        client.get("/models/current")
    assert client.get("/models/current").status_code == 429
    assert all(client.get("/health").status_code == 200 for _ in range(20))


def test_zero_per_minute_turns_the_limiter_off(make_client: AppFactory) -> None:
    client = make_client(rate_limit_per_minute=0, rate_limit_burst=1)
    assert {client.get("/models/current").status_code for _ in range(30)} == {200}


def test_clients_have_separate_buckets() -> None:
    clock = FakeClock()
    limiter = TokenBucketLimiter(per_minute=60, burst=1, clock=clock)
    assert limiter.acquire("10.0.0.1") == 0
    assert limiter.acquire("10.0.0.1") > 0
    assert limiter.acquire("10.0.0.2") == 0


def test_retry_after_tells_when_a_token_is_back() -> None:
    clock = FakeClock()
    limiter = TokenBucketLimiter(per_minute=6, burst=1, clock=clock)
    limiter.acquire("a")
    assert limiter.acquire("a") == 10.0
    clock.advance(4)
    assert limiter.acquire("a") == pytest.approx(6.0)
