"""The remote engine's hop: one LocalLab upstream called directly, and through a front LocalLab whose
model is that upstream (the remote engine), alternating.

Reports the time to first token the hop adds (the median of paired differences: each pair is one
request straight to the upstream and one through the front, in alternating order, with prompts of the
same length) and the tokens/s through the hop against calling the upstream directly.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from pathlib import Path
from typing import Any

from load import pct, run_level
from servers import Server, start_locallab, wait_ready


def start_pair(args: argparse.Namespace, model: Path, logs: Path) -> tuple[Server, Server]:
    upstream = start_locallab("locallab", logs / "proxy-upstream.log", model=str(model), args=args)
    config = logs / "proxy-remote.toml"
    config.write_text(f'[models."proxied"]\nupstreams = ["{upstream.url}"]\nupstream_model = "{model}"\n')
    front = start_locallab(
        "locallab-proxy",
        logs / "proxy-front.log",
        model="proxied",
        args=None,
        extra=["--remote-models", str(config)],
    )
    wait_ready(upstream)
    wait_ready(front)
    return upstream, front


def measure(args: argparse.Namespace, model: Path, logs: Path) -> dict[str, Any]:
    upstream, front = start_pair(args, model, logs)
    pair = [upstream, front]
    try:
        for server in pair:  # warm-up
            asyncio.run(run_level(server, 1, 8, offset=50))
        # TTFT: short answers, prompts "from 1001+10i to 2001+10i": the same number of tokens each
        added: list[float] = []
        ttft: dict[str, list[float]] = {"locallab": [], "locallab-proxy": []}
        for i in range(args.proxy_pairs):
            order = pair if i % 2 == 0 else pair[::-1]
            seen = {}
            for j, server in enumerate(order):
                result = asyncio.run(run_level(server, 1, 4, offset=100 + 2 * i + j))
                seen[server.name] = result.ttft[0]
                ttft[server.name].append(result.ttft[0])
            added.append(seen["locallab-proxy"] - seen["locallab"])
        levels = []
        for level in args.levels:
            speeds: dict[str, list[float]] = {"locallab": [], "locallab-proxy": []}
            for round_ in range(args.rounds):
                for server in pair if round_ % 2 == 0 else pair[::-1]:
                    result = asyncio.run(run_level(server, level, args.max_tokens, offset=round_ * level))
                    speeds[server.name].append(result.tokens_per_second)
            direct = statistics.median(speeds["locallab"])
            through = statistics.median(speeds["locallab-proxy"])
            levels.append(
                {
                    "streams": level,
                    "direct_tok_s": direct,
                    "proxy_tok_s": through,
                    "ratio": through / direct if direct else float("nan"),
                }
            )
    finally:
        for server in pair:
            server.process.terminate()
            server.process.wait(30)
    return {
        "pairs": args.proxy_pairs,
        "ttft_added_ms_p50": statistics.median(added) * 1000,
        "ttft_direct_ms_p50": pct(ttft["locallab"], 0.5) * 1000,
        "ttft_proxy_ms_p50": pct(ttft["locallab-proxy"], 0.5) * 1000,
        "levels": levels,
    }


def print_rows(result: dict[str, Any]) -> None:
    print(
        f"\nproxy hop (LocalLab -> remote engine -> LocalLab upstream), {result['pairs']} TTFT pairs: "
        f"added TTFT p50 {result['ttft_added_ms_p50']:.1f} ms "
        f"(direct {result['ttft_direct_ms_p50']:.1f} ms, "
        f"through the hop {result['ttft_proxy_ms_p50']:.1f} ms)"
    )
    print("| streams | direct tok/s | through the hop tok/s | ratio |")
    print("| --- | --- | --- | --- |")
    for row in result["levels"]:
        cells = [str(row["streams"]), f"{row['direct_tok_s']:.1f}", f"{row['proxy_tok_s']:.1f}"]
        print("| " + " | ".join([*cells, f"{row['ratio']:.2f}x"]) + " |")
