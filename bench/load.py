"""The load the benchmarks send: N concurrent streamed chat completions, with time to first token, a
liveness probe's latency and the server's peak RSS measured while they run."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from servers import Server

# Counting runs to the token limit on the default model; each stream counts from its own number, so
# that prompts differ (as different users' would) and no server answers from a cached prompt alone.
PROMPT = "Write the numbers from {start} to {end} separated by commas."


@dataclass
class RunResult:
    server: str
    streams: int
    completed: int  # streams that reached the token limit
    tokens: int
    seconds: float
    ttft: list[float] = field(default_factory=list)
    probe_ms: list[float] = field(default_factory=list)
    peak_rss: int = 0

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def request_body(server: Server, max_tokens: int, index: int) -> dict[str, Any]:
    start = 1 + 10 * index
    messages = [{"role": "user", "content": PROMPT.format(start=start, end=start + 1000)}]
    if server.chat_path == "/chat":  # LocalLab, whichever engine
        return {
            "messages": messages, "stream": True, "max_length": max_tokens,
            "do_sample": False, "repetition_penalty": 1.0,
        }  # fmt: skip
    return {
        "messages": messages, "stream": True, "max_tokens": max_tokens,
        "temperature": 0.0, "repeat_penalty": 1.0,
    }  # fmt: skip


async def one_stream(
    client: httpx.AsyncClient, server: Server, max_tokens: int, index: int
) -> tuple[int, float, str | None]:
    """Returns (content events, seconds to the first one, finish_reason)."""
    start = time.perf_counter()
    first = float("nan")
    tokens = 0
    finish = None
    async with client.stream(
        "POST", server.url + server.chat_path, json=request_body(server, max_tokens, index)
    ) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            choice = (event.get("choices") or [{}])[0]
            if choice.get("delta", {}).get("content"):
                if tokens == 0:
                    first = time.perf_counter() - start
                tokens += 1
            finish = choice.get("finish_reason") or finish
    return tokens, first, finish


def probe(server: Server, stop: threading.Event, out: list[float]) -> None:
    with httpx.Client(timeout=60) as client:
        while not stop.is_set():
            t = time.perf_counter()
            client.get(server.url + server.probe_path)
            out.append((time.perf_counter() - t) * 1000)
            stop.wait(0.05)


def sample_rss(server: Server, stop: threading.Event, peak: list[int]) -> None:
    while not stop.is_set():
        peak[0] = max(peak[0], server.rss())
        stop.wait(0.1)


async def run_level(server: Server, streams: int, max_tokens: int, offset: int = 0) -> RunResult:
    stop = threading.Event()
    probe_ms: list[float] = []
    peak = [server.rss()]
    threads = [
        threading.Thread(target=probe, args=(server, stop, probe_ms), daemon=True),
        threading.Thread(target=sample_rss, args=(server, stop, peak), daemon=True),
    ]
    for t in threads:
        t.start()
    start = time.perf_counter()
    try:
        async with httpx.AsyncClient(timeout=600) as client:
            results = await asyncio.gather(
                *(one_stream(client, server, max_tokens, offset + i) for i in range(streams))
            )
    finally:
        seconds = time.perf_counter() - start
        stop.set()
        for t in threads:
            t.join()
    done = [r for r in results if r[2] == "length" and r[0] >= max_tokens - 2]
    return RunResult(
        server=server.name,
        streams=streams,
        completed=len(done),
        tokens=sum(r[0] for r in done),
        seconds=seconds,
        ttft=[r[1] for r in results],
        probe_ms=probe_ms,
        peak_rss=peak[0],
    )
