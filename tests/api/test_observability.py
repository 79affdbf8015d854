"""/metrics and request ids: what an operator sees."""

from __future__ import annotations

import contextlib
import json
import logging
import re

import httpx

from locallab.engines.fake import FakeEngine
from locallab.logs import JsonFormatter, RequestIdFilter, request_id_var
from tests.conftest import AppFactory, FakeClock, LiveServerFactory, poll


def _value(text: str, series: str) -> float:
    match = re.search(rf"^{re.escape(series)} ([0-9.e+-]+)$", text, flags=re.MULTILINE)
    assert match is not None, f"{series} not in /metrics"
    return float(match.group(1))


def test_metrics_move_while_requests_run(make_client: AppFactory) -> None:
    client = make_client(FakeEngine([b"a", b"b", b"c"]))
    before = client.get("/metrics").text
    assert _value(before, "locallab_generated_tokens_total") == 0
    client.post("/generate", json={"prompt": "x"})
    client.post("/chat", json={"messages": [{"role": "user", "content": "x"}], "max_length": 2})
    after = client.get("/metrics")
    assert after.headers["content-type"].startswith("text/plain")
    text = after.text
    assert _value(text, "locallab_generated_tokens_total") == 5
    assert _value(text, "locallab_prompt_tokens_total") > 0
    assert _value(text, 'locallab_requests_total{method="POST",route="/generate",status="200"}') == 1
    assert _value(text, "locallab_time_to_first_token_seconds_count") == 2
    assert _value(text, "locallab_inter_token_latency_seconds_count") == 3
    assert _value(text, 'locallab_generations_total{finish_reason="length"}') == 1
    assert _value(text, "locallab_models_loaded") == 1
    assert _value(text, "locallab_model_load_seconds_count") == 1
    assert _value(text, "locallab_requests_active") == 0


def test_rate_limited_requests_are_counted(make_client: AppFactory) -> None:
    clock = FakeClock()
    client = make_client(clock=clock, rate_limit_per_minute=60, rate_limit_burst=2)
    assert [client.get("/models/current").status_code for _ in range(3)] == [200, 200, 429]
    clock.advance(10)  # /metrics counts against the limit too
    assert _value(client.get("/metrics").text, "locallab_rate_limited_total") == 1


def test_failed_model_loads_are_counted(make_client: AppFactory, model_file: object) -> None:
    from locallab.errors import ModelLoadError

    def loader(path: object) -> FakeEngine:
        if path == model_file:
            raise ModelLoadError("broken")
        return FakeEngine()

    client = make_client(loader=loader)
    client.post("/models/load", json={"model_id": str(model_file)})
    assert _value(client.get("/metrics").text, "locallab_model_load_failures_total") == 1


def test_active_and_queued_gauges_follow_live_streams(serve_app: LiveServerFactory) -> None:
    engine = FakeEngine([b"x"] * 5000, delay=0.002, parallel=1, max_queue=4)
    url = serve_app(engine)
    with contextlib.ExitStack() as stack:
        for _ in range(2):
            stack.enter_context(httpx.stream("POST", f"{url}/generate", json={"prompt": "x", "stream": True}))
        text = poll(
            lambda: httpx.get(f"{url}/metrics").text, lambda t: _value(t, "locallab_requests_queued") == 1
        )
        assert _value(text, "locallab_requests_active") == 1
    text = poll(
        lambda: httpx.get(f"{url}/metrics").text, lambda t: _value(t, "locallab_requests_active") == 0
    )
    assert _value(text, 'locallab_generations_total{finish_reason="cancelled"}') == 2


def test_every_response_has_a_request_id(make_client: AppFactory) -> None:
    client = make_client()
    ids = {
        client.get(path).headers["x-request-id"]
        for path in ("/health", "/models/current", "/nope", "/metrics")
    }
    assert len(ids) == 4 and all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)


def test_incoming_request_id_is_kept_and_reported_in_errors(make_client: AppFactory) -> None:
    client = make_client()
    r = client.post("/generate", json={"prompt": 5}, headers={"X-Request-ID": "trace-42.a"})
    assert r.headers["x-request-id"] == "trace-42.a"
    assert r.json()["request_id"] == "trace-42.a"
    odd = client.get("/health", headers={"X-Request-ID": "bad id\twith spaces"})
    assert odd.headers["x-request-id"] != "bad id\twith spaces"


def test_log_lines_carry_the_request_id_as_json() -> None:
    record = logging.LogRecord("locallab.test", logging.INFO, __file__, 1, "model %s loaded", ("m",), None)
    token = request_id_var.set("req-7")
    try:
        RequestIdFilter().filter(record)
    finally:
        request_id_var.reset(token)
    line = json.loads(JsonFormatter().format(record))
    assert line["request_id"] == "req-7" and line["message"] == "model m loaded" and line["level"] == "info"
