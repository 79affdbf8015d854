"""Model management routes: load, current, available; a failed load leaves the old model serving."""

from __future__ import annotations

from pathlib import Path

from locallab.engines.base import Engine
from locallab.engines.fake import FakeEngine, fake_model_info
from locallab.errors import ModelLoadError
from tests.conftest import AppFactory


def test_current_model_describes_the_loaded_model(make_client: AppFactory) -> None:
    client = make_client()
    body = client.get("/models/current").json()
    assert body["id"] == "fake-chat" and body["name"] == "Fake-Chat" and body["engine"] == "fake"
    assert body["is_loaded"] is True
    assert (body["context_length"], body["parameters"], body["quantization"], body["size_bytes"]) == (
        2048,
        1000,
        "F32",
        1234,
    )
    assert body["loaded_at"].endswith("+00:00")


def test_current_model_is_404_when_none_is_loaded(make_client: AppFactory) -> None:
    client = make_client(model="")
    r = client.get("/models/current")
    assert r.status_code == 404
    assert "No model is loaded" in r.json()["detail"]


def test_available_lists_catalog_with_installed_and_loaded_flags(make_client: AppFactory) -> None:
    client = make_client()
    body = client.get("/models/available").json()
    assert body["current_model"] == "fake-chat"
    by_id = {m["id"]: m for m in body["models"]}
    assert by_id["fake-chat"]["installed"] is True and by_id["fake-chat"]["is_loaded"] is True
    assert by_id["fake-missing"]["installed"] is False and by_id["fake-missing"]["is_loaded"] is False
    assert set(by_id["fake-chat"]) == {
        "id",
        "name",
        "description",
        "engine",
        "size_bytes",
        "installed",
        "is_loaded",
    }


def test_loading_a_gguf_path_switches_the_current_model(make_client: AppFactory, model_file: Path) -> None:
    engines = {"fake-model": FakeEngine([b"new"], info=fake_model_info("fake-model"))}
    client = make_client(loader=lambda path: engines.get(path.stem, FakeEngine([b"old"])))
    assert client.post("/generate", json={"prompt": "x"}).json()["response"] == "old"
    r = client.post("/models/load", json={"model_id": str(model_file)})
    assert r.status_code == 200
    assert r.json() == {
        "status": "success",
        "model_id": str(model_file),
        "message": f"Model '{model_file}' loaded with fake.",
    }
    assert client.get("/models/current").json()["id"] == str(model_file)
    assert client.post("/generate", json={"prompt": "x"}).json()["response"] == "new"
    listed = client.get("/models/available").json()
    assert listed["current_model"] == str(model_file)
    assert any(m["id"] == str(model_file) and m["is_loaded"] for m in listed["models"])


def test_failed_load_keeps_the_previous_model_serving(make_client: AppFactory, model_file: Path) -> None:
    old = FakeEngine([b"still here"])

    def loader(path: Path) -> Engine:
        if path == model_file:
            raise ModelLoadError(f"{path.name} is not a valid GGUF file: it is only 4 bytes long.")
        return old

    client = make_client(loader=loader)
    r = client.post("/models/load", json={"model_id": str(model_file)})
    assert r.status_code == 400
    assert "not a valid GGUF" in r.json()["detail"]
    assert client.get("/models/current").json()["id"] == "fake-chat"
    assert client.post("/generate", json={"prompt": "x"}).json()["response"] == "still here"
    assert not old.closed


def test_replaced_model_is_closed(make_client: AppFactory, model_file: Path) -> None:
    old, new = FakeEngine(), FakeEngine(info=fake_model_info("new"))
    client = make_client(loader=lambda path: new if path == model_file.resolve() else old)
    client.post("/models/load", json={"model_id": str(model_file)})
    client.get("/health")  # lets the event loop run the retirement task
    assert old.closed and not new.closed


def test_bare_gguf_name_is_looked_up_in_the_models_dir(make_client: AppFactory, model_file: Path) -> None:
    client = make_client(models_dir=model_file.parent)
    r = client.post("/models/load", json={"model_id": model_file.name})
    assert r.status_code == 200
    assert r.json()["model_id"] == str(model_file.resolve())
