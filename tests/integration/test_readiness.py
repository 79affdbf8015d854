"""A real server whose default model cannot load keeps running, says why on /health/ready, and is
made ready by POST /models/load."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import poll
from tests.integration.conftest import Server

pytestmark = pytest.mark.integration


def test_a_broken_default_model_leaves_the_server_up_and_not_ready(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\x00" * 8)  # a header cut short
    server = Server(tmp_path, LOCALLAB_MODEL=str(broken), LOCALLAB_PARALLEL="2")
    try:

        def readiness() -> httpx.Response | None:
            try:
                return httpx.get(f"{server.url}/health/ready", timeout=2)
            except httpx.HTTPError:
                return None

        r = poll(readiness, lambda r: r is not None and r.json().get("status") == "failed", timeout=60)
        assert r is not None and r.status_code == 503, server.log.read_text()
        assert "broken.gguf" in r.json()["detail"] and "POST /models/load" in r.json()["detail"]
        assert server.process.poll() is None
        assert httpx.get(f"{server.url}/health").json()["status"] == "healthy"
        assert httpx.post(f"{server.url}/generate", json={"prompt": "hi"}).status_code == 503

        load = httpx.post(
            f"{server.url}/models/load", json={"model_id": "smollm2-135m-instruct"}, timeout=120
        )
        assert load.status_code == 200, load.text
        r = httpx.get(f"{server.url}/health/ready")
        assert r.status_code == 200 and r.json() == {"status": "ready", "model": "smollm2-135m-instruct"}
    finally:
        server.stop()
