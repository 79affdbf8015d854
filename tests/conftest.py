"""Shared fixtures: an app on a scripted FakeEngine, driven through Starlette's TestClient."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from locallab.api.app import create_app
from locallab.config.catalog import CatalogEntry, PackageSource
from locallab.config.settings import Settings
from locallab.engines.base import Engine
from locallab.engines.fake import FakeEngine


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def wait_until_ready(client: TestClient, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get("/health").json()["model_status"]
        if status != "loading":
            return
        time.sleep(0.01)
    raise AssertionError("the model did not finish loading")


@pytest.fixture(autouse=True)
def _data_dir_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Apps built in tests keep their database (stored responses) in the test's directory."""
    monkeypatch.setenv("LOCALLAB_DATA_DIR", str(tmp_path / "locallab-data"))


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    """A file the registry accepts as a model path; the fake loader never parses it."""
    path = tmp_path / "fake-model.gguf"
    path.write_bytes(b"GGUF")
    return path


@pytest.fixture
def catalog(tmp_path: Path) -> dict[str, CatalogEntry]:
    """One installed entry (a file inside the `locallab` package itself) and one not installed."""

    def entry(model_id: str, package: str, file: str) -> CatalogEntry:
        return CatalogEntry(
            id=model_id,
            name=model_id.title(),
            description=f"{model_id} for tests",
            engine="fake",
            format="gguf",
            parameters="1K",
            quantization="F32",
            context_length=2048,
            license="MIT",
            size_bytes=1234,
            source=PackageSource(package=package, file=file, pip=f"{model_id}==1.0"),
        )

    return {
        "fake-chat": entry("fake-chat", "locallab", "py.typed"),
        "fake-missing": entry("fake-missing", "no_such_package_here", "model.gguf"),
    }


AppFactory = Callable[..., TestClient]


@pytest.fixture
def make_client(catalog: dict[str, CatalogEntry], tmp_path: Path) -> Iterator[AppFactory]:
    """Builds a started TestClient; `engine` (or `loader`) decides what a loaded model does."""
    clients: list[TestClient] = []

    def factory(
        engine: FakeEngine | None = None,
        *,
        loader: Callable[[Path], Engine] | None = None,
        clock: FakeClock | None = None,
        **settings: Any,
    ) -> TestClient:
        fake = engine or FakeEngine()
        options: dict[str, Any] = {
            "model": "fake-chat",
            "rate_limit_per_minute": 0,
            "models_dir": tmp_path / "models",
            "model_dirs": str(tmp_path),  # where the tests' model files are made
            **settings,
        }
        app = create_app(
            Settings(**options),
            engine_loader=(lambda model: loader(model.path)) if loader else (lambda model: fake),
            catalog=catalog,
            clock=clock,
        )
        client = TestClient(app, base_url="http://localhost", raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        wait_until_ready(client)
        return client

    yield factory
    for client in clients:
        client.__exit__(None, None, None)


T = TypeVar("T")


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def poll(read: Callable[[], T], done: Callable[[T], bool], timeout: float = 10.0) -> T:
    """Reads until `done` holds or the deadline passes; returns the last value read."""
    deadline = time.monotonic() + timeout
    value = read()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(0.01)
        value = read()
    return value


LiveServerFactory = Callable[..., str]


@pytest.fixture
def serve_app(catalog: dict[str, CatalogEntry], tmp_path: Path) -> Iterator[LiveServerFactory]:
    """Runs the app on a FakeEngine in uvicorn on a free port (real sockets: streaming, disconnects)."""
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(engine: FakeEngine, **options: Any) -> str:
        settings = Settings(
            **{"model": "fake-chat", "rate_limit_per_minute": 0, "data_dir": tmp_path / "data", **options}
        )
        app = create_app(settings, engine_loader=lambda path: engine, catalog=catalog)
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append((server, thread))
        url = f"http://127.0.0.1:{port}"

        def health() -> str:
            try:
                return str(httpx.get(f"{url}/health").json()["model_status"])
            except httpx.HTTPError:
                return "down"

        assert poll(health, lambda status: status == "ready") == "ready"
        return url

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(10)


def sse_events(text: str) -> list[Any]:
    """The JSON payloads of a server-sent event stream, `[DONE]` as the string "[DONE]"."""
    import json

    events: list[Any] = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        assert block.startswith("data: "), block
        data = block[len("data: ") :]
        events.append(data if data == "[DONE]" else json.loads(data))
    return events
