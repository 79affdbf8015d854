"""The remote engine with real upstreams on loopback: a front LocalLab process whose model is served
by two more LocalLab servers on the default model and by llama-cpp-python's own OpenAI server."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from locallab.config.catalog import load_catalog
from tests.conftest import free_port, poll
from tests.integration.conftest import Server

pytestmark = pytest.mark.integration

SMALL = {"LOCALLAB_PARALLEL": "4", "LOCALLAB_THREADS": "1", "LOCALLAB_RATE_LIMIT_PER_MINUTE": "0"}


@dataclass
class Upstreams:
    locallab: list[Server]
    llama_cpp_url: str
    front: Server

    @property
    def urls(self) -> list[str]:
        return [s.url + "/v1" for s in self.locallab] + [self.llama_cpp_url + "/v1"]


@pytest.fixture(scope="module")
def llama_cpp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """llama-cpp-python's own server on the default model (it serialises requests)."""
    model = load_catalog()["smollm2-135m-instruct"].source.locate()
    port = free_port()
    log = tmp_path_factory.mktemp("llama-cpp") / "server.log"
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1",
        "--port", str(port), "--n_ctx", "2048", "--n_threads", "1", "--n_threads_batch", "1",
        "--interrupt_requests", "False",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"llama_cpp.server exited: {log.read_text()[-2000:]}")
        try:
            return httpx.get(f"{url}/v1/models", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    assert poll(up, bool, timeout=120), log.read_text()[-2000:]
    yield url
    process.terminate()
    process.wait(15)


@pytest.fixture(scope="module")
def pool(
    start_server: Callable[..., Server], llama_cpp_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Upstreams:
    locallab = [start_server(**SMALL) for _ in range(2)]
    config = tmp_path_factory.mktemp("front") / "remote.toml"
    urls = [s.url for s in locallab] + [llama_cpp_server]
    config.write_text(
        '[models."team-model"]\n'
        f"upstreams = {json.dumps(urls)}\n"
        'upstream_model = "smollm2-135m-instruct"\n'
        "health_interval = 1.0\n"
    )
    front = start_server(
        LOCALLAB_MODEL="team-model", LOCALLAB_REMOTE_MODELS=str(config), LOCALLAB_RATE_LIMIT_PER_MINUTE="0"
    )
    return Upstreams(locallab, llama_cpp_server, front)


@dataclass
class StreamResult:
    status: int = 0
    content: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    error: str | None = None
    done: bool = False


async def stream_chat(client: httpx.AsyncClient, url: str, index: int, max_tokens: int) -> StreamResult:
    result = StreamResult()
    body = {
        "model": "team-model",
        "messages": [{"role": "user", "content": f"Count from {index * 10} to {index * 10 + 100}."}],
        "stream": True,
        "max_tokens": max_tokens,
        "temperature": 0,
    }
    async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
        result.status = response.status_code
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                result.done = True
                continue
            event = json.loads(line[6:])
            if "error" in event:
                result.error = event["error"]["message"]
                continue
            for choice in event["choices"]:
                if choice["delta"].get("content"):
                    result.content.append(choice["delta"]["content"])
                result.finish_reason = choice["finish_reason"] or result.finish_reason
    return result


def metric_lines(server: Server, name: str) -> list[str]:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    return [line for line in text.splitlines() if line.startswith(name + "{")]


def test_concurrent_requests_spread_over_every_upstream(pool: Upstreams) -> None:
    async def run() -> list[StreamResult]:
        async with httpx.AsyncClient(timeout=300) as client:
            return await asyncio.gather(*(stream_chat(client, pool.front.url, i, 12) for i in range(12)))

    results = asyncio.run(run())
    assert all(r.status == 200 and r.done and r.error is None for r in results), results
    assert all(r.finish_reason in ("length", "stop") and r.content for r in results), results
    ok = metric_lines(pool.front, "locallab_upstream_requests_total")
    for url in pool.urls:
        assert any(f'upstream="{url}"' in line and 'outcome="ok"' in line for line in ok), (url, ok)
    # the LocalLab upstreams counted the tokens they generated
    for server in pool.locallab:
        generated = [
            line for line in httpx.get(f"{server.url}/metrics").text.splitlines()
            if line.startswith("locallab_generated_tokens_total")
        ]  # fmt: skip
        assert float(generated[0].split()[-1]) > 0


def test_killing_an_upstream_loses_no_request_that_had_not_started(pool: Upstreams) -> None:
    """16 concurrent streams over three upstreams; one upstream is killed while they run."""
    victim = pool.locallab[1]

    def first_tokens() -> float:
        lines = metric_lines(pool.front, "locallab_upstream_first_token_seconds_count")
        return sum(float(line.split()[-1]) for line in lines if victim.url in line)

    before = first_tokens()

    async def run() -> list[StreamResult]:
        async with httpx.AsyncClient(timeout=300) as client:
            tasks = [asyncio.create_task(stream_chat(client, pool.front.url, i, 48)) for i in range(16)]
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:  # kill it once it has sent two first tokens of these
                if first_tokens() >= before + 2:
                    break
                await asyncio.sleep(0.02)
            victim.process.kill()
            return await asyncio.gather(*tasks)

    results = asyncio.run(run())
    assert all(r.status == 200 and r.done for r in results), results
    for r in results:
        # every request is answered in full, or it had started streaming and ends with an error event
        assert (r.error is None and r.finish_reason in ("length", "stop")) or (r.error and r.content), r
    failed = [r for r in results if r.error]
    assert 1 <= len(failed) <= 4  # the victim's running streams (it has four slots), and only those
    assert all("failed while answering" in (r.error or "") for r in failed)

    # the pool goes on without it
    async def after() -> list[StreamResult]:
        async with httpx.AsyncClient(timeout=300) as client:
            return await asyncio.gather(*(stream_chat(client, pool.front.url, i, 8) for i in range(6)))

    assert all(r.error is None and r.finish_reason for r in asyncio.run(after()))
    victim_url = f'upstream="{victim.url}/v1"'
    tries = [
        line for line in metric_lines(pool.front, "locallab_upstream_requests_total") if victim_url in line
    ]
    print("\n".join(tries), f"\n{len(failed)} of 16 streams ended with an error event")
    # its queued requests had not started: they went to the other upstreams and were answered in full
    assert any('outcome="error_before_first_token"' in line for line in tries), tries
