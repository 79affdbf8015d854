"""Pulling a transformers model repository (`hf://owner/repo`) as a folder, then serving it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from locallab.api.app import create_app
from locallab.config.catalog import CatalogEntry
from locallab.config.settings import Settings
from tests.conftest import wait_until_ready
from tests.hub_standin import HubStandIn

REPO = "test-org/tiny-llama"


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("transformers")
    from tests.transformers_models import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture
def hub(tiny_folder: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubStandIn]:
    standin = HubStandIn()
    standin.add_folder(REPO, tiny_folder)
    standin.add(REPO, "README.md", b"# tiny")  # not part of a model: never downloaded
    standin.add(REPO, "pytorch_model.bin", b"pickle")  # a pickle: never downloaded
    standin.add("test-org/gguf-only", "model.gguf", b"GGUF")
    monkeypatch.setenv("HF_ENDPOINT", standin.start())
    yield standin
    standin.stop()


@pytest.fixture
def client(tmp_path: Path, catalog: dict[str, CatalogEntry]) -> Iterator[TestClient]:
    settings = Settings(
        model="", rate_limit_per_minute=0, parallel=2, context_length=256, models_dir=tmp_path / "models"
    )
    with TestClient(create_app(settings, catalog=catalog), base_url="http://localhost") as test_client:
        wait_until_ready(test_client)
        yield test_client


def test_a_repository_pulls_as_a_folder_and_then_serves(
    client: TestClient, hub: HubStandIn, tmp_path: Path, tiny_folder: Path
) -> None:
    r = client.post("/models/pull", json={"model_id": f"hf://{REPO}"})
    events = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
    final = events[-1]
    assert final["status"] == "success", final
    assert final["model_id"] == "test-org--tiny-llama" and final["verified"] is True
    folder = tmp_path / "models" / "test-org--tiny-llama"
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in tiny_folder.iterdir())
    assert not (folder / "pytorch_model.bin").exists() and not (folder / "README.md").exists()
    assert list((tmp_path / "models" / ".partial").iterdir()) == []

    listed = {m["id"]: m for m in client.get("/models/available").json()["models"]}
    assert listed["test-org--tiny-llama"]["engine"] == "transformers"
    chat = {
        "messages": [{"role": "user", "content": "Hello"}],
        "max_length": 4,
        "model_id": final["model_id"],
    }
    answer = client.post("/chat", json=chat)
    assert answer.status_code == 200 and answer.json()["model"] == str(folder)

    r = client.delete("/models/test-org--tiny-llama")
    assert r.status_code == 200 and r.json()["freed_bytes"] > 0
    assert not folder.exists()


def test_a_repository_without_safetensors_is_refused(client: TestClient, hub: HubStandIn) -> None:
    r = client.post("/models/pull", json={"model_id": "hf://test-org/gguf-only", "stream": False})
    assert r.status_code == 400 and "safetensors" in r.json()["detail"]
    r = client.post("/models/pull", json={"model_id": "hf://test-org/nothing-here", "stream": False})
    assert r.status_code == 404 and "not on the Hub" in r.json()["detail"]
