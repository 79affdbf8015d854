"""Soak: a LocalLab server under steady mixed load for a while; reports errors and RSS growth.

    .venv/bin/python bench/soak.py                  # 10 minutes, 8 concurrent clients
    .venv/bin/python bench/soak.py --minutes 1

Each client loops over streamed and plain /generate and /chat calls, some abandoned mid-stream, plus
/health and /system/info. Only loopback traffic; it stops by itself. Exit status 1 if any request got
a 5xx or an unexpected error, or RSS grew more than --max-growth.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def client_loop(url: str, deadline: float, seed: int, counts: Counter[str]) -> None:
    rng = random.Random(seed)
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        while time.monotonic() < deadline:
            kind = rng.choice(["generate", "chat", "stream", "abandon", "health", "info"])
            try:
                if kind == "generate":
                    r = await http.post(
                        "/generate", json={"prompt": f"Tell me about {rng.random()}", "max_length": 32}
                    )
                elif kind == "chat":
                    messages = [{"role": "user", "content": f"Count to {rng.randint(3, 9)}"}]
                    r = await http.post("/chat", json={"messages": messages, "max_length": 32})
                elif kind in ("stream", "abandon"):
                    body = {"prompt": "Write a story", "stream": True, "max_length": 64}
                    async with http.stream("POST", "/generate", json=body) as r:
                        async for _ in r.aiter_lines():
                            if kind == "abandon" and rng.random() < 0.2:
                                break
                elif kind == "health":
                    r = await http.get("/health")
                else:
                    r = await http.get("/system/info")
                counts[f"{kind} {r.status_code}"] += 1
                if r.status_code >= 500:
                    counts["server errors"] += 1
            except httpx.HTTPError as exc:
                counts[f"error {exc.__class__.__name__}"] += 1


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--max-growth", type=float, default=0.10, help="allowed RSS growth after warm-up")
    args = parser.parse_args()
    port = _free_port()
    env = {**os.environ, "LOCALLAB_PORT": str(port), "LOCALLAB_RATE_LIMIT_PER_MINUTE": "0"}
    server = subprocess.Popen([sys.executable, "-m", "locallab", "start", "--log-level", "warning"], env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/health").json()["model_status"] == "ready":
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        process = psutil.Process(server.pid)
        counts: Counter[str] = Counter()
        asyncio.run(client_loop(url, time.monotonic() + 20, 0, counts))  # warm-up
        rss_start = process.memory_info().rss
        samples = []
        end = time.monotonic() + args.minutes * 60

        async def run_all() -> None:
            async def sample() -> None:
                while time.monotonic() < end:
                    samples.append(process.memory_info().rss)
                    await asyncio.sleep(5)

            await asyncio.gather(
                sample(), *(client_loop(url, end, i + 1, counts) for i in range(args.clients))
            )

        asyncio.run(run_all())
        rss_end = process.memory_info().rss
    finally:
        server.terminate()
        server.wait(30)
    growth = rss_end / rss_start - 1
    print(f"requests: {sum(v for k, v in counts.items() if k != 'server errors')}")
    for key, value in sorted(counts.items()):
        print(f"  {key}: {value}")
    mb = 2**20
    print(
        f"RSS after warm-up {rss_start / mb:.0f} MB, peak {max(samples) / mb:.0f} MB, "
        f"end {rss_end / mb:.0f} MB ({growth:+.1%})"
    )
    failed = (
        counts["server errors"] > 0 or any(k.startswith("error") for k in counts) or growth > args.max_growth
    )
    print("FAIL" if failed else "OK")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
