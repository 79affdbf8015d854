"""The remote engine through the API: a front LocalLab whose model is served by other LocalLab servers
(real HTTP on loopback, each on a scripted FakeEngine), with failover, a circuit breaker and metrics."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from locallab.api.app import create_app
from locallab.config.catalog import CatalogEntry
from locallab.config.settings import Settings
from locallab.engines.fake import CHATML_TEMPLATE, FakeEngine
from locallab.services.chat_template import render_chat
from tests.conftest import LiveServerFactory, free_port, poll, sse_events, wait_until_ready

Front = Callable[..., TestClient]


@pytest.fixture
def front(tmp_path: Path, catalog: dict[str, CatalogEntry]) -> Iterator[Front]:
    """A LocalLab whose default model "team-model" is served by the given upstream URLs."""
    clients: list[TestClient] = []

    def start(upstreams: list[str], **options: Any) -> TestClient:
        config = write_config(tmp_path / f"remote-{len(clients)}.toml", upstreams, **options)
        settings = Settings(model="team-model", rate_limit_per_minute=0, remote_models=config)
        app = create_app(settings, catalog=catalog)
        client = TestClient(app, base_url="http://localhost", raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        wait_until_ready(client)
        return client

    yield start
    for client in clients:
        client.__exit__(None, None, None)


def write_config(path: Path, upstreams: list[str], **options: Any) -> Path:
    lines = ['[models."team-model"]', "upstreams = " + json.dumps(upstreams), 'upstream_model = "fake-chat"']
    lines += [f"{k} = {v!r}" for k, v in options.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


def upstream_series(client: TestClient, name: str) -> dict[str, float]:
    """`locallab_upstream_<name>` samples by their label text."""
    out: dict[str, float] = {}
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(f"locallab_upstream_{name}{{"):
            labels, value = line.rsplit(" ", 1)
            out[labels[labels.index("{") :]] = float(value)
    return out


def test_chat_goes_upstream_as_messages_in_the_upstreams_template(
    serve_app: LiveServerFactory, front: Front
) -> None:
    engine = FakeEngine([b"Hello", b",", b" world"])
    client = front([serve_app(engine)])
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    r = client.post("/chat", json={"messages": messages})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "Hello, world"
    upstream_prompt = render_chat(CHATML_TEMPLATE, messages)
    assert engine.prompts[-1] == upstream_prompt  # the upstream applied its own template
    assert r.json()["usage"]["prompt_tokens"] == len(upstream_prompt)  # and counted the tokens
    assert r.json()["usage"]["completion_tokens"] == 3
    assert r.json()["model"] == "team-model"


def test_anthropic_and_responses_apis_reach_a_remote_model(
    serve_app: LiveServerFactory, front: Front
) -> None:
    engine = FakeEngine([b"Hello", b",", b" world"])
    client = front([serve_app(engine)])
    body = {
        "model": "team-model",
        "max_tokens": 8,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "Hi"}],
    }
    message = client.post("/v1/messages", json=body)
    assert message.status_code == 200, message.text
    assert message.json()["content"] == [{"type": "text", "text": "Hello, world"}]
    assert message.json()["usage"]["input_tokens"] > 0  # the upstream counted them
    upstream_prompt = render_chat(
        CHATML_TEMPLATE, [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    )
    assert engine.prompts[-1] == upstream_prompt
    events = client.post("/v1/messages", json={**body, "stream": True}).text
    assert "event: message_stop" in events and '"text":"Hello"' in events
    response = client.post("/v1/responses", json={"model": "team-model", "input": "Hi"})
    assert (
        response.status_code == 200 and response.json()["output"][0]["content"][0]["text"] == "Hello, world"
    )
    counted = client.post(
        "/v1/messages/count_tokens", json={"model": "team-model", "messages": body["messages"]}
    )
    assert counted.status_code == 400 and "counts tokens itself" in counted.json()["error"]["message"]


def test_raw_generate_goes_upstream_as_text(serve_app: LiveServerFactory, front: Front) -> None:
    engine = FakeEngine([b" blue", b"."])
    client = front([serve_app(engine)])
    r = client.post("/generate", json={"prompt": "The sky is", "raw": True, "max_length": 5})
    assert r.json()["response"] == " blue."
    assert engine.prompts[-1] == "The sky is"
    assert engine.requests[-1].sampling.max_tokens == 5


def test_openai_stream_is_passed_through_piece_by_piece(serve_app: LiveServerFactory, front: Front) -> None:
    client = front([serve_app(FakeEngine([b"a", b"b", b"c"]))])
    body = {
        "model": "team-model",
        "messages": [{"role": "user", "content": "x"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    events = sse_events(client.post("/v1/chat/completions", json=body).text)
    pieces = [e["choices"][0]["delta"].get("content") for e in events[:-1] if e["choices"]]
    assert pieces == ["", "a", "b", "c", None]  # role first, then one event per upstream event
    assert events[-2]["usage"]["completion_tokens"] == 3
    assert events[-1] == "[DONE]"


def test_a_dead_upstream_is_skipped_before_the_first_token(
    serve_app: LiveServerFactory, front: Front
) -> None:
    dead = dead_url()
    client = front([dead, serve_app(FakeEngine())], health_interval=0)
    for _ in range(4):
        r = client.post("/chat", json={"messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "Hello, world!"
    errors = upstream_series(client, "errors_total")
    assert any(f"{dead}/v1" in k and 'kind="connect"' in k for k in errors)


def test_an_upstream_failing_before_its_first_token_is_retried_elsewhere(
    serve_app: LiveServerFactory, front: Front
) -> None:
    failing, working = FakeEngine(fail_after=0), FakeEngine([b"fine"])
    client = front([serve_app(failing), serve_app(working)], health_interval=0)
    for _ in range(4):
        r = client.post("/generate", json={"prompt": "hi", "stream": True})
        events = sse_events(r.text)
        assert [e["response"] for e in events[:-1]] == ["fine", ""], events
    assert failing.requests and working.requests


def test_an_upstream_failing_after_its_first_token_ends_the_stream_with_an_error_event(
    serve_app: LiveServerFactory, front: Front
) -> None:
    client = front([serve_app(FakeEngine([b"one", b" two", b" three"], fail_after=2))])
    events = sse_events(client.post("/generate", json={"prompt": "hi", "stream": True}).text)
    assert [e["response"] for e in events[:2]] == ["one", " two"]
    assert "failed while answering" in events[2]["detail"] and events[3] == "[DONE]"
    # a client that does not stream gets a 502 for the same failure
    r = client.post("/generate", json={"prompt": "hi"})
    assert r.status_code == 502 and "failed while answering" in r.json()["detail"]


def test_no_upstream_answers_503_with_retry_after(front: Front) -> None:
    dead = dead_url()
    client = front([dead], health_interval=0)
    r = client.post("/chat", json={"messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 503 and r.headers["Retry-After"] == "5"
    assert "upstream 1: cannot connect" in r.json()["detail"]
    assert "127.0.0.1" not in r.json()["detail"]  # internal addresses stay in the log and /metrics
    r = client.post("/v1/completions", json={"model": "team-model", "prompt": "hi"})
    assert r.status_code == 503 and r.json()["error"]["type"] == "service_unavailable"


def test_an_open_circuit_keeps_requests_off_a_failing_upstream(
    serve_app: LiveServerFactory, front: Front
) -> None:
    dead = dead_url()
    client = front([dead, serve_app(FakeEngine())], health_interval=0, max_failures=2, cooldown=60.0)
    for _ in range(8):
        assert client.post("/generate", json={"prompt": "hi"}).status_code == 200
    tries = upstream_series(client, "requests_total")
    failed = sum(v for k, v in tries.items() if dead in k)
    assert failed == 2  # then the circuit opened and no more requests went there
    available = upstream_series(client, "available")
    assert available[next(k for k in available if dead in k)] == 0


def test_requests_spread_by_least_outstanding(serve_app: LiveServerFactory, front: Front) -> None:
    engines = [FakeEngine([b"x"] * 20, delay=0.02) for _ in range(2)]
    client = front([serve_app(e) for e in engines], health_interval=0)
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: client.post("/generate", json={"prompt": "hi"}), range(6)))
    codes = [r.status_code for r in answers]
    assert codes == [200] * 6
    assert sorted(len(e.requests) for e in engines) == [3, 3]


def test_an_upstream_refusal_is_the_clients_400(serve_app: LiveServerFactory, front: Front) -> None:
    upstreams = [serve_app(FakeEngine(context_length=16)) for _ in range(2)]
    client = front(upstreams, health_interval=0)
    r = client.post("/generate", json={"prompt": "a prompt longer than sixteen tokens", "raw": True})
    assert r.status_code == 400 and "refused the request" in r.json()["detail"]
    assert "context" in r.json()["detail"]
    tries = upstream_series(client, "requests_total")
    assert sum(tries.values()) == 1 and 'outcome="refused"' in next(iter(tries))  # not retried


def test_model_ids_never_name_upstream_addresses(serve_app: LiveServerFactory, front: Front) -> None:
    engine = FakeEngine()
    url = serve_app(engine)
    client = front([serve_app(FakeEngine())])
    r = client.post("/v1/completions", json={"model": f"{url}/v1", "prompt": "hi"})
    assert r.status_code in (400, 404)
    assert engine.requests == []


def test_upstreams_are_health_checked(serve_app: LiveServerFactory, front: Front) -> None:
    dead = dead_url()
    client = front([dead, serve_app(FakeEngine())], health_interval=0.05)
    client.post("/generate", json={"prompt": "hi"})  # the first request starts the checks

    def dead_available() -> float:
        available = upstream_series(client, "available")
        return available.get(next((k for k in available if dead in k), ""), 1.0)

    deadline = time.monotonic() + 10
    while dead_available() != 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert dead_available() == 0
    assert any(dead in k and 'kind="health"' in k for k in upstream_series(client, "errors_total"))


def test_the_remote_model_is_described_like_any_other(serve_app: LiveServerFactory, front: Front) -> None:
    client = front([serve_app(FakeEngine())])
    current = client.get("/models/current").json()
    assert current["id"] == "team-model" and current["engine"] == "remote"
    assert "team-model" in [m["id"] for m in client.get("/v1/models").json()["data"]]
    assert client.get("/system/info").status_code == 200
    assert client.get("/health").json()["model_status"] == "ready"


def test_max_time_ends_a_stalled_upstream_answer_with_finish_reason_time(
    serve_app: LiveServerFactory, front: Front
) -> None:
    client = front([serve_app(FakeEngine([b"slow"] * 5, delay=2.0))])
    started = time.monotonic()
    r = client.post("/generate", json={"prompt": "hi", "max_time": 0.3})
    assert r.status_code == 200 and r.json()["finish_reason"] == "time"
    assert time.monotonic() - started < 1.5


def test_a_client_leaving_cancels_the_upstream_generation(
    serve_app: LiveServerFactory, tmp_path: Path, catalog: dict[str, CatalogEntry]
) -> None:
    engine = FakeEngine([b"x"] * 500, delay=0.01)
    config = write_config(tmp_path / "remote.toml", [serve_app(engine)])
    settings = Settings(model="team-model", rate_limit_per_minute=0, remote_models=config)
    port = free_port()
    config_ = uvicorn.Config(create_app(settings, catalog=catalog), port=port, log_level="warning")
    server = uvicorn.Server(config_)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{port}"

        def health() -> str:
            try:
                return str(httpx.get(f"{url}/health").json()["model_status"])
            except httpx.HTTPError:
                return "down"

        assert poll(health, lambda status: status == "ready") == "ready"
        with httpx.stream("POST", f"{url}/generate", json={"prompt": "hi", "stream": True}) as r:
            first = next(line for line in r.iter_lines() if line.startswith("data: "))
            assert "x" in first
        assert poll(lambda: engine.cancelled, lambda n: n == 1) == 1  # the upstream stopped generating
        assert len(engine.requests) == 1
    finally:
        server.should_exit = True
        thread.join(10)


def test_the_upstream_key_comes_from_the_configuration(serve_app: LiveServerFactory, front: Front) -> None:
    upstream = serve_app(FakeEngine(), api_keys="upstream-key")
    good, bad = front([upstream], api_key="upstream-key"), front([upstream], api_key="wrong-key")
    assert good.post("/generate", json={"prompt": "hi"}).status_code == 200
    r = bad.post("/generate", json={"prompt": "hi"})
    assert r.status_code == 503 and "HTTP 401" in r.json()["detail"]


def test_configured_remote_models_are_listed_before_they_load(
    serve_app: LiveServerFactory, tmp_path: Path, catalog: dict[str, CatalogEntry]
) -> None:
    config = write_config(tmp_path / "remote.toml", [serve_app(FakeEngine())])
    settings = Settings(model="", rate_limit_per_minute=0, remote_models=config)
    with TestClient(create_app(settings, catalog=catalog), base_url="http://localhost") as client:
        listed = {m["id"]: m for m in client.get("/models/available").json()["models"]}
        assert listed["team-model"]["engine"] == "remote" and listed["team-model"]["installed"] is True
        assert listed["team-model"]["is_loaded"] is False
        assert "team-model" in [m["id"] for m in client.get("/v1/models").json()["data"]]
        chat = {"messages": [{"role": "user", "content": "Hi"}], "model_id": "team-model"}
        assert client.post("/chat", json=chat).status_code == 200  # loads on demand
        listed = {m["id"]: m for m in client.get("/models/available").json()["models"]}
        assert listed["team-model"]["is_loaded"] is True
        assert [m["id"] for m in client.get("/models/available").json()["models"]].count("team-model") == 1


def test_tools_go_upstream_and_its_calls_come_back(serve_app: LiveServerFactory, front: Front) -> None:
    markup = b'<tool_call>\n{"name": "get_time", "arguments": {"tz": "UTC"}}\n</tool_call>'
    engine = FakeEngine([markup[:20], markup[20:]])
    client = front([serve_app(engine)])
    tool = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
    history = [
        {"role": "user", "content": "Time?"},
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "noon"},
        {"role": "user", "content": "And now?"},
    ]
    body = {"model": "team-model", "messages": history, "tools": [tool], "tool_choice": "required"}
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    assert [(c["function"]["name"], c["function"]["arguments"]) for c in choice["message"]["tool_calls"]] == [
        ("get_time", '{"tz": "UTC"}')
    ]
    sent = engine.requests[-1].sampling.call_grammar  # the upstream got the tools and the choice
    assert sent is not None and not sent.triggers
    assert "<tool_response>\nnoon\n</tool_response>" in engine.prompts[-1]  # and the history
    events = sse_events(client.post("/v1/chat/completions", json={**body, "stream": True}).text)
    deltas = [d for e in events[:-1] if e["choices"] for d in e["choices"][0]["delta"].get("tool_calls", [])]
    assert deltas[0]["function"]["name"] == "get_time" and deltas[0]["id"].startswith("call_")
    assert "".join(d["function"]["arguments"] for d in deltas) == '{"tz": "UTC"}'
    assert [e["choices"][0]["finish_reason"] for e in events[:-1] if e["choices"]][-1] == "tool_calls"


def test_streamed_calls_of_a_remote_model_reach_anthropic_and_responses_clients(
    serve_app: LiveServerFactory, front: Front
) -> None:
    from tests.api.test_anthropic import named_events

    markup = b'<tool_call>\n{"name": "get_time", "arguments": {"tz": "UTC"}}\n</tool_call>'
    client = front([serve_app(FakeEngine([markup[:20], markup[20:]]))])
    schema = {"type": "object", "properties": {"tz": {"type": "string"}}}
    ask = [{"role": "user", "content": "Time?"}]
    anthropic_body = {
        "model": "team-model", "max_tokens": 64, "messages": ask, "stream": True,
        "tools": [{"name": "get_time", "input_schema": schema}], "tool_choice": {"type": "any"},
    }  # fmt: skip
    events = named_events(client.post("/v1/messages", json=anthropic_body).text)
    [start] = [p["content_block"] for n, p in events if n == "content_block_start"]
    assert start["type"] == "tool_use" and start["name"] == "get_time"
    json_parts = [p["delta"]["partial_json"] for n, p in events if n == "content_block_delta"]
    assert json.loads("".join(json_parts)) == {"tz": "UTC"}
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"
    responses_body = {
        "model": "team-model", "input": "Time?", "stream": True, "tool_choice": "required",
        "tools": [{"type": "function", "name": "get_time", "parameters": schema}],
    }  # fmt: skip
    events = named_events(client.post("/v1/responses", json=responses_body).text)
    [call] = events[-1][1]["response"]["output"]
    assert call["type"] == "function_call" and json.loads(call["arguments"]) == {"tz": "UTC"}
    arguments = [p["delta"] for n, p in events if n == "response.function_call_arguments.delta"]
    assert "".join(arguments) == call["arguments"]
