"""LocalLab against llama-cpp-python's own server, side by side, on the same GGUF and threads.

Both servers run at once (each idle while the other is measured); runs alternate between them. Each
run sends N concurrent streamed chat completions that count to the token limit, with greedy decoding
and the repetition penalty off on both sides, and measures aggregate tokens/s (content events), time
to first token, a liveness probe's latency under load and peak RSS. The raw llama.cpp decode speed
(C API, no sampling, no HTTP) is measured in the same run as the ceiling.

    .venv/bin/python bench/serve.py                 # sets up bench/.venv-peer on first use
    .venv/bin/python bench/serve.py --levels 1 8 --rounds 1
    .venv/bin/python bench/serve.py --transformers   # also LocalLab's transformers engine, same model
    .venv/bin/python bench/serve.py --proxy-hop --skip-peer --skip-locallab --skip-raw   # the hop only

With --proxy-hop it also measures the remote engine's hop (see proxy_hop.py): the TTFT it adds and
its tokens/s against calling the upstream LocalLab directly.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
PEER_VENV = ROOT / "bench" / ".venv-peer"
# Counting runs to the token limit on the default model; each stream counts from its own number, so
# that prompts differ (as different users' would) and no server answers from a cached prompt alone.
PROMPT = "Write the numbers from {start} to {end} separated by commas."


@dataclass
class Server:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    chat_path: str
    probe_path: str  # what answers "are you alive?" on this server
    log: Path

    def rss(self) -> int:
        try:
            proc = psutil.Process(self.process.pid)
            return proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True))
        except psutil.Error:
            return 0


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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ensure_peer_venv() -> Path:
    python = PEER_VENV / "bin" / "python"
    if python.exists():
        return python
    from importlib.metadata import version

    wanted = f"llama-cpp-python[server]=={version('llama_cpp_python')}"
    print(f"setting up {PEER_VENV} with {wanted} (compiles llama.cpp unless pip has the wheel)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
    cmake_args = subprocess.run(
        [str(ROOT / "scripts" / "llama-cmake-args.sh")], capture_output=True, text=True, check=True
    ).stdout.strip()
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", wanted],
        check=True,
        env={**os.environ, "CMAKE_ARGS": cmake_args},
    )
    return python


def start_servers(args: argparse.Namespace, model: Path, logs: Path) -> list[Server]:
    servers = []
    if not args.skip_locallab:
        servers.append(start_locallab("locallab", logs / "locallab.log", model=str(model), args=args))
    if args.transformers:
        servers.append(start_transformers(args, model, logs))
    if not args.skip_peer:
        python = ensure_peer_venv()
        port = _free_port()
        log = logs / "llama-cpp-python.log"
        command = [
            str(python), "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1",
            "--port", str(port), "--n_ctx", str(args.context), "--n_threads", str(args.threads),
            "--n_threads_batch", str(args.threads), "--interrupt_requests", "False",
        ]  # fmt: skip
        process = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT)
        servers.append(
            Server(
                "llama-cpp-python",
                f"http://127.0.0.1:{port}",
                process,
                "/v1/chat/completions",
                "/v1/models",
                log,
            )
        )
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


def start_locallab(
    name: str, log: Path, *, model: str, args: argparse.Namespace | None, extra: list[str] | None = None
) -> Server:
    """A LocalLab server on a free port, limiter off. With `args`: the run's threads, slots and KV cache
    (the same total context as the peer's); without: the server's defaults."""
    port = _free_port()
    command = [sys.executable, "-m", "locallab", "start", "--port", str(port), "--model", model]
    if args is not None:
        command += [
            "--threads", str(args.threads), "--parallel", str(args.parallel),
            "--context-length", str(args.context // args.parallel),
        ]  # fmt: skip
    command += ["--rate-limit-per-minute", "0", "--log-level", "warning", *(extra or [])]
    process = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    return Server(name, f"http://127.0.0.1:{port}", process, "/chat", "/health", log)


def wait_ready(server: Server, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise SystemExit(f"{server.name} exited:\n{server.log.read_text()[-3000:]}")
        try:
            r = httpx.get(server.url + server.probe_path, timeout=2)
            locallab = server.probe_path == "/health"
            if r.status_code == 200 and (not locallab or r.json()["model_status"] == "ready"):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{server.name} did not start in {timeout}s")


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
        for name in ("locallab", "llama-cpp-python", "transformers"):
            mine = [r for r in runs if r.server == name and r.streams == level]
            if not mine:
                continue
            row[name] = {
                "tok_s": statistics.median(r.tokens_per_second for r in mine),
                "completed": f"{sum(r.completed for r in mine)}/{sum(r.streams for r in mine)}",
                "ttft_p50_s": _pct([t for r in mine for t in r.ttft], 0.5),
                "ttft_p95_s": _pct([t for r in mine for t in r.ttft], 0.95),
                "probe_p99_ms": _pct([p for r in mine for p in r.probe_ms], 0.99),
                "peak_rss_mb": max(r.peak_rss for r in mine) / 2**20,
            }
        rows.append(row)
    return rows


def print_table(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(
        f"\nmodel {args.model_name}, {args.threads} threads, KV cache {args.context} tokens in all on both "
        f"(LocalLab: {args.parallel} slots x {args.context // args.parallel}), "
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
        ours, peer = row.get("locallab"), row.get("llama-cpp-python")
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
    if any("transformers" in row for row in rows):
        print_transformers_table(rows)


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
    parser.add_argument("--parallel", type=int, default=8, help="LocalLab's slots")
    parser.add_argument("--context", type=int, default=16384, help="KV cache tokens in all, on both servers")
    parser.add_argument("--model", type=Path, default=None, help="GGUF file (default: the embedded model)")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "serve.json")
    parser.add_argument("--skip-peer", action="store_true")
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
                        f"{result.completed}/{level} to the limit, TTFT p50 {_pct(result.ttft, 0.5):.2f}s",
                        flush=True,
                    )
    finally:
        for server in servers:
            server.process.terminate()
            server.process.wait(30)
    rows = summarise(runs, raw)
    if runs:
        print_table(rows, args)
    proxy = None
    if args.proxy_hop:
        import proxy_hop

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
