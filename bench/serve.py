"""LocalLab against llama.cpp's own C++ server (llama-server), side by side, on the same GGUF and threads.

Both servers run at once (each idle while the other is measured); runs alternate between them. Each
run sends N concurrent streamed chat completions that count to the token limit, with greedy decoding
and the repetition penalty off on both sides, and measures aggregate tokens/s (content events), time
to first token, a liveness probe's latency under load and peak RSS. The raw llama.cpp decode speed
(C API, no sampling, no HTTP) is measured in the same run as the ceiling.

    .venv/bin/python bench/serve.py --llama-server /path/to/llama-server   # build: bench/README.md
    .venv/bin/python bench/serve.py --levels 1 8 --rounds 1
    .venv/bin/python bench/serve.py --llama-cpp-python   # also llama-cpp-python's server (bench/.venv-peer)
    .venv/bin/python bench/serve.py --transformers   # also LocalLab's transformers engine, same model
    .venv/bin/python bench/serve.py --proxy-hop --no-llama-server --skip-locallab --skip-raw   # the hop only

With --proxy-hop it also measures the remote engine's hop (see proxy_hop.py): the TTFT it adds and
its tokens/s against calling the upstream LocalLab directly.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import proxy_hop
from load import RunResult, pct, run_level
from servers import (
    DEFAULT_LLAMA_SERVER,
    ROOT,
    Server,
    start_llama_cpp_python,
    start_llama_server,
    start_locallab,
    wait_ready,
)

PEERS = ("llama-server", "llama-cpp-python")


def start_servers(args: argparse.Namespace, model: Path, logs: Path) -> list[Server]:
    servers = []
    if not args.skip_locallab:
        servers.append(start_locallab("locallab", logs / "locallab.log", model=str(model), args=args))
    if args.transformers:
        servers.append(start_transformers(args, model, logs))
    if args.llama_server is not None:
        servers.append(
            start_llama_server(
                args.llama_server,
                model,
                logs,
                threads=args.threads,
                parallel=args.parallel,
                context=args.context,
            )
        )
    if args.llama_cpp_python:
        servers.append(start_llama_cpp_python(args, model, logs))
    for server in servers:
        wait_ready(server)
    return servers


def start_transformers(args: argparse.Namespace, model: Path, logs: Path) -> Server:
    """LocalLab serving the same model through its transformers engine: the GGUF converted (dequantized
    to float32) into a safetensors folder by transformers' GGUF loader."""
    from locallab.engines.transformers.convert import convert_gguf

    folder = logs / f"{model.stem}-transformers"
    if not (folder / "model.safetensors").exists():
        print(f"converting {model.name} to {folder} (about 25 s)", flush=True)
        convert_gguf(model, folder)
    return start_locallab("transformers", logs / "locallab-transformers.log", model=str(folder), args=args)


def raw_ceiling(args: argparse.Namespace, model: Path) -> dict[str, float]:
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "raw_decode.py"),
            "--model",
            str(model),
            "--threads",
            str(args.threads),
            "--steps",
            str(args.max_tokens),
            "--context",
            str(args.context // args.parallel),
            "--slots",
            str(args.parallel),
            "--sequences",
            *map(str, sorted(set(args.levels))),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(out.stdout)["tokens_per_second"]
    return result


def summarise(runs: list[RunResult], raw: dict[str, float]) -> list[dict[str, Any]]:
    rows = []
    for level in sorted({r.streams for r in runs}):
        row: dict[str, Any] = {"streams": level, "raw_decode_tok_s": raw.get(str(level))}
        for name in ("locallab", *PEERS, "transformers"):
            mine = [r for r in runs if r.server == name and r.streams == level]
            if not mine:
                continue
            row[name] = {
                "tok_s": statistics.median(r.tokens_per_second for r in mine),
                "completed": f"{sum(r.completed for r in mine)}/{sum(r.streams for r in mine)}",
                "ttft_p50_s": pct([t for r in mine for t in r.ttft], 0.5),
                "ttft_p95_s": pct([t for r in mine for t in r.ttft], 0.95),
                "probe_p99_ms": pct([p for r in mine for p in r.probe_ms], 0.99),
                "peak_rss_mb": max(r.peak_rss for r in mine) / 2**20,
            }
        rows.append(row)
    return rows


def print_table(rows: list[dict[str, Any]], args: argparse.Namespace, peer_name: str) -> None:
    pool = f"a KV pool of {args.kv_tokens} tokens" if args.kv_tokens else "its automatic KV pool"
    print(
        f"\nmodel {args.model_name}, {args.threads} threads; peer {peer_name} with {args.parallel} slots and "
        f"{args.context} KV cells; LocalLab at parallel {args.parallel} with {pool}; "
        f"{args.max_tokens} tokens a stream, greedy, repetition penalty off"
    )
    header = (
        "| streams | LocalLab tok/s | peer tok/s | ratio | raw decode tok/s | LocalLab/raw "
        "| TTFT p50 LocalLab / peer (s) | ratio | TTFT p95 LocalLab / peer (s) "
        "| /health p99 ms (peer: /v1/models) | peak RSS MB LocalLab / peer | ratio |"
    )
    print(header)
    print("|" + " --- |" * (header.count("|") - 1))
    for row in rows:
        ours, peer = row.get("locallab"), row.get(peer_name)
        raw = row["raw_decode_tok_s"]

        def ratio(a: float | None, b: float | None) -> str:
            return f"{a / b:.2f}x" if a and b else "-"

        cells = [
            str(row["streams"]),
            f"{ours['tok_s']:.1f} ({ours['completed']})" if ours else "-",
            f"{peer['tok_s']:.1f} ({peer['completed']})" if peer else "-",
            ratio(ours and ours["tok_s"], peer and peer["tok_s"]),
            f"{raw:.1f}" if raw else "-",
            ratio(ours and ours["tok_s"], raw),
            f"{ours['ttft_p50_s']:.2f} / {peer['ttft_p50_s']:.2f}" if ours and peer else "-",
            ratio(ours and ours["ttft_p50_s"], peer and peer["ttft_p50_s"]),
            f"{ours['ttft_p95_s']:.2f} / {peer['ttft_p95_s']:.2f}" if ours and peer else "-",
            f"{ours['probe_p99_ms']:.1f} / {peer['probe_p99_ms']:.0f}" if ours and peer else "-",
            f"{ours['peak_rss_mb']:.0f} / {peer['peak_rss_mb']:.0f}" if ours and peer else "-",
            ratio(ours and ours["peak_rss_mb"], peer and peer["peak_rss_mb"]),
        ]
        print("| " + " | ".join(cells) + " |")


def print_transformers_table(rows: list[dict[str, Any]]) -> None:
    print("\nLocalLab on the same model through the transformers engine (float32 safetensors, dequantized)")
    header = (
        "| streams | transformers tok/s | llama.cpp tok/s | ratio | TTFT p50 transformers / llama.cpp (s) "
        "| /health p99 ms | peak RSS MB transformers / llama.cpp |"
    )
    print(header)
    print("|" + " --- |" * (header.count("|") - 1))
    for row in rows:
        hf, cpp = row.get("transformers"), row.get("locallab")
        if not hf:
            continue
        cells = [
            str(row["streams"]),
            f"{hf['tok_s']:.1f} ({hf['completed']})",
            f"{cpp['tok_s']:.1f} ({cpp['completed']})" if cpp else "-",
            f"{hf['tok_s'] / cpp['tok_s']:.2f}x" if cpp and cpp["tok_s"] else "-",
            f"{hf['ttft_p50_s']:.2f} / {cpp['ttft_p50_s']:.2f}" if cpp else f"{hf['ttft_p50_s']:.2f}",
            f"{hf['probe_p99_ms']:.1f}",
            f"{hf['peak_rss_mb']:.0f} / {cpp['peak_rss_mb']:.0f}" if cpp else f"{hf['peak_rss_mb']:.0f}",
        ]
        print("| " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 4, 8], help="concurrent streams")
    parser.add_argument("--rounds", type=int, default=2, help="alternating runs per level and server")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--parallel", type=int, default=8, help="sequences at once, on both servers")
    parser.add_argument("--context", type=int, default=32768, help="the peers' KV cache tokens in all")
    parser.add_argument("--kv-tokens", type=int, default=0, help="LocalLab's KV pool (0: its automatic size)")
    parser.add_argument(
        "--llama-server",
        type=Path,
        default=DEFAULT_LLAMA_SERVER if DEFAULT_LLAMA_SERVER.exists() else None,
        help="llama.cpp's llama-server binary (build: bench/README.md)",
    )
    parser.add_argument("--no-llama-server", dest="llama_server", action="store_const", const=None)
    parser.add_argument("--llama-cpp-python", action="store_true", help="also llama-cpp-python's server")
    parser.add_argument("--model", type=Path, default=None, help="GGUF file (default: the embedded model)")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "serve.json")
    parser.add_argument("--skip-locallab", action="store_true")
    parser.add_argument("--skip-raw", action="store_true")
    parser.add_argument("--proxy-hop", action="store_true", help="also measure the remote engine's hop")
    parser.add_argument("--proxy-pairs", type=int, default=30, help="TTFT pairs for --proxy-hop")
    parser.add_argument(
        "--transformers", action="store_true", help="also LocalLab's transformers engine on the same model"
    )
    args = parser.parse_args()
    from locallab.config.catalog import load_catalog

    model = args.model or load_catalog()["smollm2-135m-instruct"].source.locate()
    args.model_name = model.name
    args.json.parent.mkdir(parents=True, exist_ok=True)
    raw = {} if args.skip_raw else raw_ceiling(args, model)
    servers = start_servers(args, model, args.json.parent)
    runs: list[RunResult] = []
    try:
        for server in servers:  # warm-up: first requests pay one-time costs
            asyncio.run(run_level(server, 1, 8, offset=50))
        for level in args.levels:
            for round_ in range(args.rounds):
                order = servers if round_ % 2 == 0 else servers[::-1]
                for server in order:
                    result = asyncio.run(run_level(server, level, args.max_tokens, offset=round_ * level))
                    runs.append(result)
                    print(
                        f"{server.name:>16} {level} streams: {result.tokens_per_second:6.1f} tok/s, "
                        f"{result.completed}/{level} to the limit, TTFT p50 {pct(result.ttft, 0.5):.2f}s",
                        flush=True,
                    )
    finally:
        for server in servers:
            server.process.terminate()
            server.process.wait(30)
    rows = summarise(runs, raw)
    if runs:
        for peer_name in PEERS:
            if any(peer_name in row for row in rows):
                print_table(rows, args, peer_name)
        if any("transformers" in row for row in rows):
            print_transformers_table(rows)
    proxy = None
    if args.proxy_hop:
        proxy = proxy_hop.measure(args, model, args.json.parent)
        proxy_hop.print_rows(proxy)
    args.json.write_text(
        json.dumps(
            {
                "machine": {
                    "cpu": platform.processor() or platform.machine(),
                    "cores": os.cpu_count(),
                    "python": platform.python_version(),
                },
                "settings": {k: str(v) for k, v in vars(args).items()},
                "raw_decode_tok_s": raw,
                "rows": rows,
                "proxy_hop": proxy,
                "runs": [{**asdict(r), "tokens_per_second": r.tokens_per_second} for r in runs],
            },
            indent=2,
        )
    )
    print(f"\nJSON: {args.json}")


if __name__ == "__main__":
    main()
