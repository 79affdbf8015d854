"""A real LocalLab server process on the default model, on a free loopback port."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import free_port


class Server:
    def __init__(self, tmp: Path, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp / f"server-{self.port}.log"
        environment = {k: v for k, v in os.environ.items() if not k.startswith("LOCALLAB_")}
        # each server its own models directory: assembled catalog models never touch the user's
        models_dir = str(tmp / "models")
        environment.update(
            {
                "LOCALLAB_PORT": str(self.port),
                "LOCALLAB_THREADS": "2",
                "LOCALLAB_MODELS_DIR": models_dir,
                # tests hand the server model files from their own temporary directories
                "LOCALLAB_MODEL_DIRS": tempfile.gettempdir(),
                **env,
            }
        )
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "locallab", "start"],
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited: {self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).json()["model_status"] == "ready":
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"server not ready after {timeout}s: {self.log.read_text()}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="session")
def start_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def start(**env: str) -> Server:
        server = Server(tmp_path_factory.mktemp("server"), **env)
        servers.append(server)
        server.wait_ready()
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def server(start_server: Callable[..., Server]) -> Server:
    """The default configuration, rate limiter off so tests don't share a budget."""
    return start_server(LOCALLAB_RATE_LIMIT_PER_MINUTE="0", LOCALLAB_PARALLEL="2")


@pytest.fixture(scope="session")
def server_8(start_server: Callable[..., Server]) -> Server:
    """Eight parallel sequences, limiter off."""
    return start_server(
        LOCALLAB_RATE_LIMIT_PER_MINUTE="0", LOCALLAB_PARALLEL="8", LOCALLAB_CONTEXT_LENGTH="4096"
    )


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=120) as c:
        yield c


@pytest.fixture
def oai(server: Server) -> Iterator[openai.OpenAI]:
    """The official `openai` package on the default server."""
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0) as client:
        yield client
