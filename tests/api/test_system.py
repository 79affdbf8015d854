"""GET /health and GET /system/info."""

from __future__ import annotations

import threading

from locallab.engines.fake import FakeEngine
from tests.conftest import AppFactory


def test_health_reports_the_model_and_its_status(make_client: AppFactory) -> None:
    client = make_client()
    assert client.get("/health").json() == {
        "status": "healthy",
        "model": "fake-chat",
        "model_status": "ready",
    }


def test_health_without_a_model_says_none(make_client: AppFactory) -> None:
    client = make_client(model="")
    assert client.get("/health").json() == {"status": "healthy", "model": None, "model_status": "none"}


def test_health_reports_loading_while_the_default_model_loads(make_client: AppFactory) -> None:
    release = threading.Event()

    def slow_loader(path: object) -> FakeEngine:
        release.wait(10)
        return FakeEngine()

    client = make_client(loader=slow_loader, model="")
    client.portal.start_task_soon(client.app.state.services.registry.load, "fake-chat")  # type: ignore[attr-defined]
    try:
        for _ in range(1000):
            if client.get("/health").json()["model_status"] == "loading":
                break
        assert client.get("/health").json()["model_status"] == "loading"
        r = client.post("/generate", json={"prompt": "x"})
        assert r.status_code == 503 and "still loading" in r.json()["detail"]
    finally:
        release.set()


def test_system_info_has_the_original_fields_and_details(make_client: AppFactory) -> None:
    client = make_client()
    client.post("/generate", json={"prompt": "hello"})
    info = client.get("/system/info").json()
    for key in ("cpu_usage", "memory_usage", "gpu_info", "active_model", "uptime", "request_count"):
        assert key in info
    assert info["gpu_info"] is None
    assert info["active_model"] == "fake-chat"
    assert info["cpu"]["cores"] >= 1 and info["cpu"]["model"]
    assert info["memory"]["total"] > info["memory"]["available"] > 0 and info["memory"]["process_rss"] > 0
    assert info["versions"]["python"].count(".") == 2
    assert info["requests"]["active"] == 0 and info["requests"]["total"] >= 2
    assert info["tokens"]["generated"] == 4 and info["tokens"]["prompt"] > 0
    assert info["parallel"] >= 1


def test_request_count_counts_every_request(make_client: AppFactory) -> None:
    client = make_client()
    before = client.get("/system/info").json()["request_count"]
    client.get("/models/current")
    client.get("/nope")
    assert client.get("/system/info").json()["request_count"] == before + 3
