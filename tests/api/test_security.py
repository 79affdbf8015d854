"""Safe to expose: API keys on every route, Host allow-list, CORS, JSON-only bodies, size and time limits."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from starlette.routing import Route

from locallab.engines.fake import FakeEngine
from tests.conftest import AppFactory, FakeClock

KEY = "sk-test-0123456789abcdef"


def _walk(routes: list[Any], prefix: str = "") -> list[tuple[str, str]]:
    found = []
    for route in routes:
        if isinstance(route, APIRoute | Route):
            for method in sorted(route.methods or []):
                if method != "HEAD":
                    path = route.path.replace("{model_id:path}", "fake-chat").replace("{name}", "app.js")
                    found.append((method, prefix + path))
        elif hasattr(route, "original_router"):  # a router included with include_router
            found += _walk(route.original_router.routes, prefix + route.include_context.prefix)
    return found


def _routes(client: Any) -> list[tuple[str, str]]:
    """Every (method, path) the app serves, including routes hidden from the schema."""
    return _walk(client.app.routes)


# Open without a key, and not rate limited: liveness, and the chat page's static files (the page asks
# for the key itself).
OPEN = {"/health", "/health/ready", "/", "/ui/app.js"}


def test_every_route_but_health_needs_the_key(make_client: AppFactory) -> None:
    client = make_client(api_keys=KEY)
    routes = _routes(client)
    assert len(routes) >= 14
    for method, path in routes:
        r = client.request(method, path, json={} if method == "POST" else None)
        if path in OPEN:
            assert r.status_code == 200
            continue
        assert r.status_code == 401, (method, path)
        assert r.headers["www-authenticate"].startswith("Bearer")
        body = r.json()
        error = body.get("error")  # OpenAI's envelope on /v1, Ollama's plain string on /api
        assert "API key" in (body.get("detail") or (error if isinstance(error, str) else error["message"]))
        authed = client.request(
            method, path, json={} if method == "POST" else None, headers={"Authorization": f"Bearer {KEY}"}
        )
        assert authed.status_code != 401, (method, path)


def test_every_route_but_health_counts_against_the_key_rate_limit(make_client: AppFactory) -> None:
    clock = FakeClock()
    client = make_client(api_keys=KEY, clock=clock, rate_limit_per_minute=60, rate_limit_burst=1)
    for method, path in _routes(client):
        clock.advance(120)  # a full bucket for each route
        statuses = [
            client.request(
                method, path, json={} if method == "POST" else None, headers={"X-API-Key": KEY}
            ).status_code
            for _ in range(2)
        ]
        if path in OPEN:
            assert statuses == [200, 200]
        else:
            assert statuses[1] == 429, (method, path, statuses)


def test_keys_are_compared_exactly(make_client: AppFactory) -> None:
    client = make_client(api_keys=f"{KEY},second-key")
    assert client.get("/models/current", headers={"X-API-Key": "second-key"}).status_code == 200
    for wrong in (KEY.upper(), KEY[:-1], KEY + "x", "", f"Basic {KEY}"):
        assert client.get("/models/current", headers={"Authorization": f"Bearer {wrong}"}).status_code == 401


def test_rate_limit_is_per_key(make_client: AppFactory) -> None:
    client = make_client(
        api_keys="key-a,key-b", clock=FakeClock(), rate_limit_per_minute=60, rate_limit_burst=1
    )
    assert client.get("/models/current", headers={"X-API-Key": "key-a"}).status_code == 200
    assert client.get("/models/current", headers={"X-API-Key": "key-a"}).status_code == 429
    assert client.get("/models/current", headers={"X-API-Key": "key-b"}).status_code == 200


def test_keys_file_is_reread_when_it_changes(make_client: AppFactory, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# team keys\nfirst\n")
    client = make_client(api_keys_file=keys)
    assert client.get("/models/current", headers={"X-API-Key": "first"}).status_code == 200
    keys.write_text("second-and-longer\n")
    assert client.get("/models/current", headers={"X-API-Key": "first"}).status_code == 401
    assert client.get("/models/current", headers={"X-API-Key": "second-and-longer"}).status_code == 200


def test_keys_never_reach_the_logs(make_client: AppFactory, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = make_client(FakeEngine(fail_after=0), api_keys=KEY)
    client.get("/models/current", headers={"Authorization": f"Bearer {KEY}"})
    client.get("/models/current", headers={"Authorization": f"Bearer {KEY}-wrong"})
    client.post("/generate", json={"prompt": "x"}, headers={"X-API-Key": KEY})  # an engine failure is logged
    assert KEY not in caplog.text


def test_foreign_host_header_is_refused_on_loopback(make_client: AppFactory) -> None:
    client = make_client()
    r = client.get("/models/current", headers={"Host": "attacker.example"})
    assert r.status_code == 403 and "attacker.example" in r.json()["detail"]
    for host in ("localhost:8000", "127.0.0.1:8000", "[::1]:8000", "localhost"):
        assert client.get("/models/current", headers={"Host": host}).status_code == 200, host


def test_allowed_hosts_add_names_and_non_loopback_binds_skip_the_check(make_client: AppFactory) -> None:
    assert (
        make_client(allowed_hosts="llm.internal")
        .get("/health", headers={"Host": "llm.internal:80"})
        .status_code
        == 200
    )
    exposed = make_client(host="0.0.0.0", api_keys=KEY)
    assert exposed.get("/health", headers={"Host": "my-server.lan"}).status_code == 200


def test_cors_is_off_by_default(make_client: AppFactory) -> None:
    r = make_client().get("/health", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers


def test_cors_allows_listed_origins_only(make_client: AppFactory) -> None:
    client = make_client(cors_origins="https://app.example")
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    ok = client.options("/generate", headers=preflight)
    assert ok.headers["access-control-allow-origin"] == "https://app.example"
    assert ok.headers.get("access-control-allow-credentials") == "true"
    other = client.options("/generate", headers={**preflight, "Origin": "https://evil.example"})
    assert other.headers.get("access-control-allow-origin") != "https://evil.example"


def test_cors_wildcard_never_comes_with_credentials(make_client: AppFactory) -> None:
    client = make_client(cors_origins="*")
    r = client.get("/health", headers={"Origin": "https://any.example"})
    assert r.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in r.headers


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/plain", b'{"prompt": "hi"}'),
        ("application/x-www-form-urlencoded", b"prompt=hi"),
        ("multipart/form-data; boundary=x", b"--x--"),
    ],
)
def test_browser_simple_requests_are_refused_without_side_effect(
    make_client: AppFactory, content_type: str, body: bytes
) -> None:
    engine = FakeEngine()
    client = make_client(engine)
    r = client.post("/generate", content=body, headers={"Content-Type": content_type})
    assert r.status_code == 400 and "application/json" in r.json()["detail"]
    assert engine.requests == []


def test_oversized_body_is_413(make_client: AppFactory) -> None:
    client = make_client(max_body_bytes=2048)
    r = client.post("/generate", json={"prompt": "x" * 5000})
    assert r.status_code == 413 and "2048 bytes" in r.json()["detail"]

    def chunks():  # no Content-Length: counted as it arrives
        yield b'{"prompt": "'
        for _ in range(10):
            yield b"y" * 500
        yield b'"}'

    r = client.post("/generate", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413


def test_max_length_beyond_the_cap_is_capped_and_reported(make_client: AppFactory) -> None:
    engine = FakeEngine()
    client = make_client(engine, max_length_cap=100)
    r = client.post("/generate", json={"prompt": "x", "max_length": 5000})
    assert r.status_code == 200 and r.headers["x-locallab-max-length-capped"] == "100"
    assert engine.requests[-1].sampling.max_tokens == 100
    assert (
        "x-locallab-max-length-capped"
        not in client.post("/generate", json={"prompt": "x", "max_length": 50}).headers
    )


def test_server_wide_max_time_applies_to_every_request(make_client: AppFactory) -> None:
    engine = FakeEngine()
    client = make_client(engine, max_time_cap=30)
    client.post("/generate", json={"prompt": "x"})
    client.post("/generate", json={"prompt": "x", "max_time": 100})
    client.post("/generate", json={"prompt": "x", "max_time": 5})
    assert [r.sampling.max_time for r in engine.requests] == [30, 30, 5]


def test_too_many_messages_are_refused(make_client: AppFactory) -> None:
    client = make_client(max_messages=3)
    messages = [{"role": "user", "content": "x"}] * 4
    r = client.post("/chat", json={"messages": messages})
    assert r.status_code == 400 and "LOCALLAB_MAX_MESSAGES" in r.json()["detail"]


def test_500_never_shows_internals(make_client: AppFactory) -> None:
    class Broken(FakeEngine):
        async def tokenize(self, text: str) -> list[int]:
            raise ValueError("/secret/models/private.gguf at 10.0.0.5")

    r = make_client(Broken()).post("/generate", json={"prompt": "x"})
    assert r.status_code == 500
    assert r.json() == {
        "detail": "Internal server error; the server log has the details.",
        "request_id": r.headers["x-request-id"],
    }


def test_start_refuses_a_public_address_without_a_key() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "locallab", "start", "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "--api-key" in out.stderr and "--allow-no-auth" in out.stderr


def test_a_body_trickling_in_too_slowly_is_408() -> None:
    import asyncio

    from locallab.api.middleware.body import BodyGuardMiddleware

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("the app must not run")

    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(10)  # a client that never finishes its body
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    guard = BodyGuardMiddleware(app, max_bytes=1024, read_timeout=0.05)
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/generate",
        "headers": [(b"content-type", b"application/json")],
    }
    asyncio.run(guard(scope, receive, send))
    assert sent[0]["status"] == 408
    assert b"did not arrive" in sent[1]["body"]
