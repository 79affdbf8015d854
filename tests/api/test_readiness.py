"""GET /health/ready: 200 once the default model serves, 503 with the reason while it loads, after it
failed, once it was unloaded, and while the server drains; /models/load makes a failed server ready."""

from __future__ import annotations

import threading
from pathlib import Path

from fastapi.testclient import TestClient

from locallab.api.app import create_app
from locallab.config.catalog import CatalogEntry
from locallab.config.settings import Settings
from locallab.engines.fake import FakeEngine
from tests.conftest import AppFactory, poll


def test_ready_once_the_default_model_is_loaded(make_client: AppFactory) -> None:
    r = make_client().get("/health/ready")
    assert r.status_code == 200
    assert r.json() == {"status": "ready", "model": "fake-chat"}


def test_ready_without_a_configured_model(make_client: AppFactory) -> None:
    r = make_client(model="").get("/health/ready")
    assert r.status_code == 200 and r.json() == {"status": "ready", "model": None}


def test_not_ready_while_the_default_model_loads(catalog: dict[str, CatalogEntry], tmp_path: Path) -> None:
    release = threading.Event()

    def slow_loader(model: object) -> FakeEngine:
        release.wait(10)
        return FakeEngine()

    settings = Settings(model="fake-chat", rate_limit_per_minute=0, models_dir=tmp_path)
    app = create_app(settings, engine_loader=slow_loader, catalog=catalog)
    with TestClient(app, base_url="http://localhost") as client:
        try:
            r = client.get("/health/ready")
            assert r.status_code == 503
            assert r.json()["status"] == "loading" and "still loading" in r.json()["detail"]
            assert r.headers["retry-after"] == "5" and r.json()["request_id"]
            assert client.get("/health").status_code == 200  # alive all the same
        finally:
            release.set()
        r = poll(lambda: client.get("/health/ready"), lambda r: r.status_code == 200)
        assert r.json() == {"status": "ready", "model": "fake-chat"}


def test_a_default_model_that_cannot_load_leaves_the_server_up_and_says_why(make_client: AppFactory) -> None:
    client = make_client(model="fake-missing")  # in the catalog, its file not installed
    r = client.get("/health/ready")
    assert r.status_code == 503 and r.json()["status"] == "failed"
    assert "fake-missing" in r.json()["detail"] and "not installed" in r.json()["detail"]
    assert "POST /models/load" in r.json()["detail"]
    assert "retry-after" not in r.headers
    assert client.get("/health").json()["model_status"] == "none"

    assert client.post("/models/load", json={"model_id": "fake-chat"}).status_code == 200
    r = client.get("/health/ready")
    assert r.status_code == 200 and r.json() == {"status": "ready", "model": "fake-chat"}


def test_a_loader_bug_is_a_failed_state_not_a_dead_server(make_client: AppFactory) -> None:
    def broken_loader(path: Path) -> FakeEngine:
        raise RuntimeError("boom")

    client = make_client(loader=broken_loader)
    r = client.get("/health/ready")
    assert r.status_code == 503 and r.json()["status"] == "failed"
    assert "server log" in r.json()["detail"] and "boom" not in r.json()["detail"]


def test_not_ready_after_the_default_model_is_unloaded(make_client: AppFactory) -> None:
    client = make_client()
    assert client.post("/models/unload", json={"model_id": "fake-chat"}).status_code == 200
    r = client.get("/health/ready")
    assert r.status_code == 503 and r.json()["status"] == "unloaded"
    assert "POST /models/load" in r.json()["detail"]


def test_not_ready_while_draining(make_client: AppFactory) -> None:
    client = make_client()
    client.app.state.services.generation.shutdown.begin(30)  # type: ignore[attr-defined]
    r = client.get("/health/ready")
    assert r.status_code == 503 and r.json()["status"] == "draining"
    assert "shutting down" in r.json()["detail"]


def test_readiness_needs_no_key(make_client: AppFactory) -> None:
    client = make_client(api_keys="secret-key-1234")
    assert client.get("/health/ready").status_code == 200
    assert client.get("/models/current").status_code == 401


def test_a_load_after_a_failed_start_reports_loading(make_client: AppFactory) -> None:
    release = threading.Event()

    def slow_loader(path: Path) -> FakeEngine:
        release.wait(10)
        return FakeEngine()

    client = make_client(loader=slow_loader, model="fake-missing")
    assert client.get("/health/ready").json()["status"] == "failed"
    try:
        r = client.post("/models/load", json={"model_id": "fake-chat", "wait": False})
        assert r.status_code == 202
        r = poll(lambda: client.get("/health/ready"), lambda r: r.json()["status"] == "loading")
        assert r.status_code == 503 and r.json()["status"] == "loading"
    finally:
        release.set()
    r = poll(lambda: client.get("/health/ready"), lambda r: r.status_code == 200)
    assert r.json() == {"status": "ready", "model": "fake-chat"}
