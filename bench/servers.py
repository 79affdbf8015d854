"""Starting the servers the benchmarks compare: LocalLab, llama.cpp's own C++ server (llama-server) and
llama-cpp-python's server, each on a free port, with its RSS readable while it runs."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
PEER_VENV = ROOT / "bench" / ".venv-peer"
DEFAULT_LLAMA_SERVER = Path("/work/llama-server/build/bin/llama-server")


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


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


def start_llama_cpp_python(args: argparse.Namespace, model: Path, logs: Path) -> Server:
    python = ensure_peer_venv()
    port = free_port()
    log = logs / "llama-cpp-python.log"
    command = [
        str(python), "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1",
        "--port", str(port), "--n_ctx", str(args.context), "--n_threads", str(args.threads),
        "--n_threads_batch", str(args.threads), "--interrupt_requests", "False",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    return Server(
        "llama-cpp-python", f"http://127.0.0.1:{port}", process, "/v1/chat/completions", "/v1/models", log
    )


def start_llama_server(
    binary: Path,
    model: Path,
    logs: Path,
    *,
    threads: int,
    parallel: int,
    context: int,
    extra: list[str] | None = None,
) -> Server:
    """llama.cpp's C++ server (`-np` slots sharing `-c` cells; prompt caching on, its default)."""
    port = free_port()
    log = logs / "llama-server.log"
    command = [
        str(binary), "-m", str(model), "--host", "127.0.0.1", "--port", str(port), "-t", str(threads),
        "-tb", str(threads), "-np", str(parallel), "-c", str(context), "--no-webui", *(extra or []),
    ]  # fmt: skip
    env = {**os.environ, "LD_LIBRARY_PATH": str(binary.parent)}
    process = subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)
    return Server("llama-server", f"http://127.0.0.1:{port}", process, "/v1/chat/completions", "/health", log)


def start_locallab(
    name: str, log: Path, *, model: str, args: argparse.Namespace | None, extra: list[str] | None = None
) -> Server:
    """A LocalLab server on a free port, limiter off. With `args`: the run's threads and parallel
    sequences, and its KV pool when --kv-tokens is given (else LocalLab's automatic pool); without:
    the server's defaults."""
    port = free_port()
    command = [sys.executable, "-m", "locallab", "start", "--port", str(port), "--model", model]
    if args is not None:
        command += ["--threads", str(args.threads), "--parallel", str(args.parallel)]
        if args.kv_tokens:
            command += ["--kv-tokens", str(args.kv_tokens)]
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
            locallab = server.chat_path == "/chat"
            if r.status_code == 200 and (not locallab or r.json()["model_status"] == "ready"):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{server.name} did not start in {timeout}s")
