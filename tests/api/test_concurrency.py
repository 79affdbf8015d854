"""Many requests at once on a scripted engine: streams stay apart, the queue is bounded, batch works."""

from __future__ import annotations

import asyncio
import contextlib
import time

import httpx
import pytest

from locallab.engines.fake import FakeEngine
from tests.conftest import AppFactory, LiveServerFactory, poll


def test_concurrent_streams_never_mix(make_client: AppFactory) -> None:
    # The echo engine answers each prompt with the prompt itself, so any mixing shows in the text.
    client = make_client(FakeEngine(None, delay=0.001, parallel=8, max_queue=8))
    prompts = [f"<{i}:{'abcdefghij'[i] * 20}>" for i in range(10)]

    async def one(http: httpx.AsyncClient, prompt: str) -> str:
        r = await http.post("/generate", json={"prompt": prompt, "raw": True, "stream": False})
        return str(r.json()["response"])

    async def all_at_once() -> list[str]:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
            return list(await asyncio.gather(*(one(http, p) for p in prompts)))

    assert client.portal.call(all_at_once) == prompts  # type: ignore[union-attr]


def test_queue_overflow_answers_503_with_retry_after(make_client: AppFactory) -> None:
    engine = FakeEngine([b"x"] * 200, delay=0.005, parallel=2, max_queue=1)
    client = make_client(engine)

    async def flood() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
            return list(
                await asyncio.gather(*(http.post("/generate", json={"prompt": "x"}) for _ in range(6)))
            )

    responses = client.portal.call(flood)  # type: ignore[union-attr]
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 200, 200, 503, 503, 503]
    busy = next(r for r in responses if r.status_code == 503)
    assert busy.headers["retry-after"] == "2"
    assert "busy" in busy.json()["detail"]


def test_system_info_reports_active_queued_and_parallel(serve_app: LiveServerFactory) -> None:
    engine = FakeEngine([b"x"] * 5000, delay=0.002, parallel=2, max_queue=8)
    url = serve_app(engine)
    with contextlib.ExitStack() as stack:
        for _ in range(3):
            r = stack.enter_context(
                httpx.stream("POST", f"{url}/generate", json={"prompt": "x", "stream": True})
            )
            assert r.status_code == 200
        requests = poll(
            lambda: httpx.get(f"{url}/system/info").json()["requests"], lambda r: r["queued"] == 1
        )
        assert (requests["active"], requests["queued"]) == (2, 1)
        assert httpx.get(f"{url}/system/info").json()["parallel"] == 2
    # the three clients hung up: their sequences are freed
    poll(lambda: engine.in_flight, lambda n: n == 0)
    assert engine.cancelled == 3
    requests = httpx.get(f"{url}/system/info").json()["requests"]
    assert (requests["active"], requests["queued"]) == (0, 0)


def test_disconnect_during_a_plain_request_cancels_it(serve_app: LiveServerFactory) -> None:
    engine = FakeEngine([b"x"] * 5000, delay=0.002, parallel=2, max_queue=8)
    url = serve_app(engine)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{url}/generate", json={"prompt": "x"}, timeout=0.3)
    poll(lambda: engine.cancelled, lambda n: n == 1)
    assert engine.in_flight == 0


def test_batch_answers_every_prompt_in_order(make_client: AppFactory) -> None:
    engine = FakeEngine(None, parallel=4, max_queue=32)
    client = make_client(engine)
    prompts = ["alpha", "beta", "gamma"]
    r = client.post("/generate/batch", json={"prompts": prompts, "raw": True})
    assert r.status_code == 200
    body = r.json()
    assert body["responses"] == prompts
    assert body["finish_reasons"] == ["stop"] * 3
    assert body["model"] == "fake-chat"
    assert body["usage"]["completion_tokens"] == sum(len(p) for p in prompts)
    assert body["usage"]["prompt_tokens"] == sum(len(p) for p in prompts)


def test_batch_applies_sampling_fields_to_every_prompt(make_client: AppFactory) -> None:
    engine = FakeEngine([b"a", b"b", b"c"], parallel=4, max_queue=32)
    client = make_client(engine)
    r = client.post("/generate/batch", json={"prompts": ["x", "y"], "max_length": 2, "seed": 3})
    assert r.json()["responses"] == ["ab", "ab"] and r.json()["finish_reasons"] == ["length", "length"]
    assert {req.sampling.seed for req in engine.requests} == {3}


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"prompts": ["ok", ""]}, ["prompts[1]"]),
        ({"prompts": ["ok", 5]}, ["prompts[1]", "string"]),
        ({"prompts": []}, ["prompts", "at least 1"]),
        ({"prompts": ["x"] * 33}, ["prompts", "at most 32"]),
        ({"prompts": ["x"], "stream": True}, ["stream", "cannot stream"]),
        ({"prompt": "x"}, ["prompts", "required"]),
    ],
)
def test_batch_refuses_bad_input_naming_the_prompt(
    make_client: AppFactory, body: object, words: list[str]
) -> None:
    r = make_client().post("/generate/batch", json=body)
    assert r.status_code == 400
    for word in words:
        assert word in r.json()["detail"]


def test_batch_prompt_too_long_names_its_index(make_client: AppFactory) -> None:
    client = make_client(FakeEngine(context_length=40))
    r = client.post("/generate/batch", json={"prompts": ["short", "x" * 100], "raw": True})
    assert r.status_code == 400
    assert r.json()["detail"].startswith("prompts[1]: The prompt is 100 tokens")


def test_batch_larger_than_the_free_capacity_is_refused_whole(make_client: AppFactory) -> None:
    engine = FakeEngine(parallel=2, max_queue=1)
    client = make_client(engine)
    r = client.post("/generate/batch", json={"prompts": ["a", "b", "c", "d"]})
    assert r.status_code == 503
    deadline = time.monotonic() + 5
    while engine.in_flight and time.monotonic() < deadline:
        time.sleep(0.01)
    assert engine.in_flight == 0
