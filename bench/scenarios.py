"""Work users share, LocalLab against llama.cpp's own C++ server (llama-server), side by side.

Both servers run at once on the same GGUF and threads, each idle while the other is measured. Both
speak OpenAI's chat completions here (greedy: temperature 0; llama-server also gets repeat_penalty 1).
Scenarios:

- shared-prefix: 16 users send at once, one ~500-token system prompt, different questions; 8 run at a
  time. TTFT p50/p95 and the total time to the last token.
- multi-turn: 8 conversations of 6 turns each run at once; every turn resends the whole history with
  the previous answers. Prompt tokens sent against prompt tokens computed (LocalLab: prompt_tokens -
  cached_tokens; llama-server: its timings.prompt_n).
- long-prompt: 4 users at once with different ~2,000-token prompts.

Peak RSS of each server under each scenario, and RSS after start (idle), are reported too.

    .venv/bin/python bench/scenarios.py --llama-server /path/to/llama-server
    .venv/bin/python bench/scenarios.py --scenarios shared-prefix --locallab-env LOCALLAB_PREFIX_CACHE=false
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from load import pct, sample_rss
from servers import DEFAULT_LLAMA_SERVER, ROOT, Server, start_llama_server, start_locallab, wait_ready

SYSTEM = (
    "You are the support assistant of ACME Networks. ACME sells home routers (the R100, R200 and R300), "
    "mesh extenders (M10 and M20) and a fibre modem (F1). Answer in two or three sentences. Be polite, "
    "never promise refunds, and send hardware faults to the repair desk at repair@acme.example. "
)
FACTS = [
    f"Fact {i}: the {model} supports {feature} since firmware {i // 3}.{i % 7}."
    for i, (model, feature) in enumerate(
        (m, f)
        for m in ("R100", "R200", "R300", "M10", "M20", "F1")
        for f in ("WPA3", "guest networks", "parental controls", "IPv6", "VPN passthrough")
    )
]
SYSTEM_PROMPT = SYSTEM + " ".join(FACTS)  # ~500 tokens on SmolLM2's tokenizer
QUESTIONS = [
    "How do I reset my R100?", "Does the M20 support WPA3?", "My F1 light is red, what now?",
    "Can I use the R300 with fibre?", "How do I add a guest network?", "Is IPv6 on by default?",
    "Where do I send a broken M10?", "Can I get a refund?", "What is the newest firmware for the R200?",
    "Does the R100 do VPN passthrough?", "How many extenders can I add?", "Is the F1 a router too?",
    "How do I turn on parental controls?", "Why is my wifi slow upstairs?", "What is mesh?",
    "Which router should I buy for a big house?",
]  # fmt: skip
FOLLOW_UPS = [
    "Tell me more.",
    "Why?",
    "And for the R300?",
    "How long does that take?",
    "Thanks, anything else?",
]


def _client() -> httpx.AsyncClient:
    # No keep-alive: a turn that reuses a connection the server has just closed as idle fails
    # ("Server disconnected without sending a response"), which is the client's race, not the server's.
    return httpx.AsyncClient(timeout=900, limits=httpx.Limits(max_keepalive_connections=0))


def _body(server: Server, messages: list[dict[str, str]], max_tokens: int, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "default", "messages": messages, "max_tokens": max_tokens, "temperature": 0.0,
        "stream": stream,
    }  # fmt: skip
    if server.name == "llama-server":
        body["repeat_penalty"] = 1.0
        body["cache_prompt"] = True
    else:
        body["model"] = "smollm2-135m-instruct"
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


def _computed(server: Server, usage: dict[str, Any], timings: dict[str, Any] | None) -> int:
    """Prompt tokens the server actually computed for one request."""
    if timings and "prompt_n" in timings:
        return int(timings["prompt_n"])
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    return int(usage["prompt_tokens"]) - int(cached)


async def _chat(
    client: httpx.AsyncClient, server: Server, messages: list[dict[str, str]], max_tokens: int
) -> dict[str, Any]:
    """One streamed chat completion: TTFT, end time, text, prompt tokens sent and computed."""
    start = time.perf_counter()
    first = float("nan")
    text: list[str] = []
    usage: dict[str, Any] = {}
    timings: dict[str, Any] | None = None
    async with client.stream(
        "POST", server.url + "/v1/chat/completions", json=_body(server, messages, max_tokens, True)
    ) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            for choice in event.get("choices") or []:
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    if not text:
                        first = time.perf_counter() - start
                    text.append(piece)
            usage = event.get("usage") or usage
            timings = event.get("timings") or timings
    return {
        "ttft": first,
        "end": time.perf_counter(),
        "text": "".join(text),
        "sent": int(usage.get("prompt_tokens", 0)),
        "computed": _computed(server, usage, timings) if usage else 0,
    }


async def shared_prefix(server: Server, args: argparse.Namespace) -> dict[str, Any]:
    async with _client() as client:
        start = time.perf_counter()
        results = await asyncio.gather(
            *(
                _chat(
                    client,
                    server,
                    [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": q}],
                    32,
                )
                for q in QUESTIONS
            )
        )
    ttft = [r["ttft"] for r in results]
    return {
        "ttft_p50_s": pct(ttft, 0.5),
        "ttft_p95_s": pct(ttft, 0.95),
        "total_s": max(r["end"] for r in results) - start,
        "prompt_sent": sum(r["sent"] for r in results),
        "prompt_computed": sum(r["computed"] for r in results),
    }


async def multi_turn(server: Server, args: argparse.Namespace) -> dict[str, Any]:
    async def conversation(client: httpx.AsyncClient, index: int) -> list[dict[str, Any]]:
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTIONS[index]}]
        turns = []
        for turn in range(6):
            result = await _chat(client, server, messages, 48)
            turns.append(result)
            messages += [{"role": "assistant", "content": result["text"]}]
            if turn < 5:
                messages += [{"role": "user", "content": FOLLOW_UPS[turn]}]
        return turns

    async with _client() as client:
        start = time.perf_counter()
        conversations = await asyncio.gather(*(conversation(client, i) for i in range(8)))
    turns = [t for c in conversations for t in c]
    sent = sum(t["sent"] for t in turns)
    computed = sum(t["computed"] for t in turns)
    return {
        "ttft_p50_s": pct([t["ttft"] for t in turns], 0.5),
        "total_s": time.perf_counter() - start,
        "prompt_sent": sent,
        "prompt_computed": computed,
        "computed_ratio": computed / sent if sent else float("nan"),
    }


def _long_prompt(index: int) -> str:
    lines = [
        f"Line {n}: sensor {index}-{n % 17} read {(n * 37 + index * 11) % 1000} units." for n in range(160)
    ]
    return "Here is a sensor log.\n" + "\n".join(lines) + "\nWhich sensor read the most units?"


async def long_prompt(server: Server, args: argparse.Namespace) -> dict[str, Any]:
    async with _client() as client:
        start = time.perf_counter()
        results = await asyncio.gather(
            *(_chat(client, server, [{"role": "user", "content": _long_prompt(i)}], 32) for i in range(4))
        )
    return {
        "ttft_p50_s": pct([r["ttft"] for r in results], 0.5),
        "total_s": max(r["end"] for r in results) - start,
        "prompt_sent": sum(r["sent"] for r in results),
        "prompt_computed": sum(r["computed"] for r in results),
    }


SCENARIOS = {"shared-prefix": shared_prefix, "multi-turn": multi_turn, "long-prompt": long_prompt}


def measure(server: Server, name: str, args: argparse.Namespace) -> dict[str, Any]:
    stop = threading.Event()
    peak = [server.rss()]
    sampler = threading.Thread(target=sample_rss, args=(server, stop, peak), daemon=True)
    sampler.start()
    try:
        result = asyncio.run(SCENARIOS[name](server, args))
    finally:
        stop.set()
        sampler.join()
    result["peak_rss_mb"] = peak[0] / 2**20
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=list(SCENARIOS))
    parser.add_argument("--rounds", type=int, default=1, help="alternating runs per scenario and server")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--parallel", type=int, default=8, help="sequences at once, on both servers")
    parser.add_argument("--context", type=int, default=32768, help="llama-server's KV cells in all")
    parser.add_argument("--kv-tokens", type=int, default=0, help="LocalLab's KV pool (0: its automatic size)")
    parser.add_argument("--llama-server", type=Path, default=DEFAULT_LLAMA_SERVER)
    parser.add_argument("--llama-server-args", default="", help="extra llama-server flags, e.g. '-kvu'")
    parser.add_argument("--locallab-env", nargs="*", default=[], help="NAME=value settings for LocalLab")
    parser.add_argument("--skip-locallab", action="store_true")
    parser.add_argument("--model", type=Path, default=None, help="GGUF file (default: the embedded model)")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "scenarios.json")
    args = parser.parse_args()
    from locallab.config.catalog import load_catalog

    model = args.model or load_catalog()["smollm2-135m-instruct"].source.locate()
    logs = args.json.parent
    logs.mkdir(parents=True, exist_ok=True)
    for setting in args.locallab_env:
        key, _, value = setting.partition("=")
        os.environ[key] = value
    servers = []
    if not args.skip_locallab:
        servers.append(
            start_locallab("locallab", logs / "scenarios-locallab.log", model=str(model), args=args)
        )
    servers.append(
        start_llama_server(
            args.llama_server,
            model,
            logs,
            threads=args.threads,
            parallel=args.parallel,
            context=args.context,
            extra=args.llama_server_args.split(),
        )
    )
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    try:
        for server in servers:
            wait_ready(server)
        idle = {s.name: s.rss() / 2**20 for s in servers}
        print("RSS after start (MB): " + ", ".join(f"{k} {v:.0f}" for k, v in idle.items()), flush=True)
        for name in args.scenarios:
            for round_ in range(args.rounds):
                for server in servers if round_ % 2 == 0 else servers[::-1]:
                    result = measure(server, name, args)
                    results.setdefault(name, {}).setdefault(server.name, []).append(result)
                    print(f"{name:>13} {server.name:>12}: {json.dumps(result)}", flush=True)
    finally:
        for server in servers:
            server.process.terminate()
            server.process.wait(30)
    print_tables(results)
    args.json.write_text(
        json.dumps({"idle_rss_mb": idle, "results": results, "args": vars(args)}, default=str)
    )
    print(f"\nJSON: {args.json}")


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def _pair(ours: list[dict[str, Any]], peer: list[dict[str, Any]], key: str, digits: int) -> list[str]:
    a, b = _median(ours, key), _median(peer, key)
    return [f"{a:.{digits}f} / {b:.{digits}f}", f"{a / b:.2f}x" if b else "-"]


def _computed_share(runs: list[dict[str, Any]]) -> str:
    sent, done = _median(runs, "prompt_sent"), _median(runs, "prompt_computed")
    return f"{done:.0f} / {sent:.0f} ({done / sent:.2f})" if sent else "-"


def print_tables(results: dict[str, dict[str, list[dict[str, Any]]]]) -> None:
    print(
        "\n| scenario | TTFT p50 s LocalLab / llama-server | ratio | total s LocalLab / llama-server | ratio "
        "| prompt tokens computed / sent LocalLab | llama-server | peak RSS MB LocalLab / llama-server |"
    )
    print("|" + " --- |" * 8)
    for name, by_server in results.items():
        ours, peer = by_server.get("locallab"), by_server.get("llama-server")
        if not ours or not peer:
            continue

        cells = [name, *_pair(ours, peer, "ttft_p50_s", 2), *_pair(ours, peer, "total_s", 1)]
        cells += [_computed_share(ours), _computed_share(peer)]
        cells.append(f"{_median(ours, 'peak_rss_mb'):.0f} / {_median(peer, 'peak_rss_mb'):.0f}")
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
