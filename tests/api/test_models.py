"""Model management routes: load, current, available; a failed load leaves the old model serving."""

from __future__ import annotations

import threading
from pathlib import Path

from locallab.engines.base import Engine
from locallab.engines.fake import FakeEngine, fake_model_info
from locallab.errors import ModelLoadError
from tests.conftest import AppFactory, poll


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
        "capabilities",
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


def test_replaced_model_is_closed_when_only_one_fits(make_client: AppFactory, model_file: Path) -> None:
    old, new = FakeEngine(), FakeEngine(info=fake_model_info("new"))
    client = make_client(
        loader=lambda path: new if path == model_file.resolve() else old, max_loaded_models=1
    )
    client.post("/models/load", json={"model_id": str(model_file)})
    client.get("/health")  # lets the event loop run the retirement task
    assert old.closed and not new.closed


def test_bare_gguf_name_is_looked_up_in_the_models_dir(make_client: AppFactory, model_file: Path) -> None:
    client = make_client(models_dir=model_file.parent)
    r = client.post("/models/load", json={"model_id": model_file.name})
    assert r.status_code == 200
    assert r.json()["model_id"] == str(model_file.resolve())


def _files(tmp_path: Path, *names: str) -> list[Path]:
    paths = []
    for name in names:
        path = tmp_path / f"{name}.gguf"
        path.write_bytes(b"GGUF")
        paths.append(path)
    return paths


def _by_name(path: Path) -> Engine:
    return FakeEngine([path.stem.encode()], info=fake_model_info(path.stem))


def test_several_models_serve_side_by_side(make_client: AppFactory, tmp_path: Path) -> None:
    a, b = _files(tmp_path, "model-a", "model-b")
    client = make_client(loader=_by_name, max_loaded_models=3)
    answers = {
        str(p): client.post("/generate", json={"prompt": "x", "model_id": str(p)}).json()["response"]
        for p in (a, b)
    }
    assert answers == {str(a): "model-a", str(b): "model-b"}
    assert client.post("/generate", json={"prompt": "x"}).json()["model"] == "fake-chat"  # the default
    loaded = client.get("/system/info").json()["loaded_models"]
    assert sorted(loaded) == sorted(["fake-chat", str(a), str(b)])


def test_the_least_recently_used_model_makes_room(make_client: AppFactory, tmp_path: Path) -> None:
    a, b = _files(tmp_path, "model-a", "model-b")
    client = make_client(loader=_by_name, max_loaded_models=2)
    client.post("/generate", json={"prompt": "x", "model_id": str(a)})
    client.post("/generate", json={"prompt": "x"})  # the default was used after model-a
    client.post("/generate", json={"prompt": "x", "model_id": str(b)})
    loaded = client.get("/system/info").json()["loaded_models"]
    assert sorted(loaded) == sorted(["fake-chat", str(b)])


def test_idle_models_unload_after_keep_alive(make_client: AppFactory, tmp_path: Path) -> None:
    (a,) = _files(tmp_path, "model-a")
    # long enough that a loaded machine still sees the model between the request and the check
    client = make_client(loader=_by_name, keep_alive=2.0)
    client.post("/generate", json={"prompt": "x", "model_id": str(a)})
    assert str(a) in client.get("/system/info").json()["loaded_models"]
    loaded = poll(lambda: client.get("/system/info").json()["loaded_models"], lambda m: str(a) not in m)
    assert loaded == ["fake-chat"]  # the default model stays


def test_unload_route(make_client: AppFactory, tmp_path: Path) -> None:
    (a,) = _files(tmp_path, "model-a")
    client = make_client(loader=_by_name)
    client.post("/models/load", json={"model_id": str(a), "wait": True})
    r = client.post("/models/unload", json={"model_id": str(a)})
    assert r.status_code == 200 and r.json()["message"] == f"Model '{a}' unloaded."
    assert client.get("/models/status/" + str(a)).json()["status"] == "not_loaded"
    again = client.post("/models/unload", json={"model_id": str(a)})
    assert again.status_code == 409 and "not loaded" in again.json()["detail"]


def test_load_without_waiting_answers_202_and_reports_progress(
    make_client: AppFactory, tmp_path: Path
) -> None:
    (a,) = _files(tmp_path, "model-a")
    release = threading.Event()

    def slow(path: Path) -> Engine:
        if path.stem == "model-a":
            release.wait(10)
        return _by_name(path)

    client = make_client(loader=slow)
    r = client.post("/models/load", json={"model_id": str(a), "wait": False})
    assert r.status_code == 202 and r.json()["status"] == "loading"
    assert client.get(f"/models/status/{a}").json()["status"] == "loading"
    assert client.get("/health").json()["model_status"] == "loading"
    release.set()
    status = poll(lambda: client.get(f"/models/status/{a}").json()["status"], lambda s: s == "ready")
    assert status == "ready"
    assert client.get("/models/current").json()["id"] == str(a)


def test_failed_background_load_shows_in_status(make_client: AppFactory, tmp_path: Path) -> None:
    (a,) = _files(tmp_path, "model-a")

    def broken(path: Path) -> Engine:
        if path.stem == "model-a":
            raise ModelLoadError("model-a.gguf is not a valid GGUF file: forged.")
        return _by_name(path)

    client = make_client(loader=broken)
    client.post("/models/load", json={"model_id": str(a), "wait": False})
    state = poll(lambda: client.get(f"/models/status/{a}").json(), lambda s: s["status"] == "failed")
    assert "forged" in state["error"]
    assert client.get("/models/current").json()["id"] == "fake-chat"


def test_a_failed_load_evicts_nothing(make_client: AppFactory, tmp_path: Path) -> None:
    good, bad = _files(tmp_path, "model-a", "broken")

    def loader(path: Path) -> Engine:
        if path.stem == "broken":
            raise ModelLoadError("broken.gguf is not a valid GGUF file.")
        return _by_name(path)

    client = make_client(loader=loader, max_loaded_models=2)
    client.post("/generate", json={"prompt": "x", "model_id": str(good)})
    assert client.post("/models/load", json={"model_id": str(bad)}).status_code == 400
    assert sorted(client.get("/system/info").json()["loaded_models"]) == sorted(["fake-chat", str(good)])
