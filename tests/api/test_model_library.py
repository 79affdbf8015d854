"""POST /models/pull, GET and DELETE /models/{id}, and path safety on every route that takes a model id."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from locallab.config.catalog import CatalogEntry, HubSource
from locallab.errors import LocalLabError
from locallab.services.registry import ModelRegistry
from tests.conftest import AppFactory
from tests.hub_standin import HubStandIn
from tests.real_model import default_model_path

REPO = "test-org/SmolLM2-GGUF"
FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
PAYLOAD = default_model_path().read_bytes()


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[HubStandIn]:
    standin = HubStandIn()
    standin.add(REPO, FILE, PAYLOAD)
    monkeypatch.setenv("HF_ENDPOINT", standin.start())
    yield standin
    standin.stop()


@pytest.fixture
def hub_catalog(catalog: dict[str, CatalogEntry]) -> dict[str, CatalogEntry]:
    catalog["hub-model"] = replace(
        catalog["fake-chat"],
        id="hub-model",
        source=HubSource(REPO, FILE),
        sha256=hashlib.sha256(PAYLOAD).hexdigest(),
        size_bytes=len(PAYLOAD),
    )
    return catalog


def _events(body: str) -> list[dict[str, Any]]:
    lines = [line[len("data: ") :] for line in body.splitlines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


def test_pull_streams_progress_then_the_model_is_installed_and_deletable(
    make_client: AppFactory, hub: HubStandIn, hub_catalog: dict[str, CatalogEntry], tmp_path: Path
) -> None:
    client = make_client()
    before = {m["id"]: m for m in client.get("/models/available").json()["models"]}
    assert before["hub-model"]["installed"] is False
    r = client.post("/models/load", json={"model_id": "hub-model"})
    assert r.status_code == 404 and "locallab models pull hub-model" in r.json()["detail"]

    r = client.post("/models/pull", json={"model_id": "hub-model"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = _events(r.text)
    progress = [e["completed"] for e in events if e["status"] in ("downloading", "verifying")]
    assert len(progress) >= 3 and progress == sorted(progress) and progress[-1] == len(PAYLOAD)
    assert all(e["total"] == len(PAYLOAD) for e in events if e["status"] == "downloading")
    final = events[-1]
    assert final["status"] == "success" and final["verified"] is True
    assert final["sha256"] == hashlib.sha256(PAYLOAD).hexdigest()

    after = {m["id"]: m for m in client.get("/models/available").json()["models"]}
    assert after["hub-model"]["installed"] is True
    info = client.get("/models/hub-model").json()
    assert info["installed"] is True and info["path"] == str(tmp_path / "models" / FILE)
    assert info["source"] == f"hf://{REPO}/{FILE}"
    assert client.post("/models/load", json={"model_id": "hub-model"}).status_code == 200

    r = client.delete("/models/hub-model")
    assert r.status_code == 200 and r.json()["freed_bytes"] == len(PAYLOAD)
    assert not (tmp_path / "models" / FILE).exists()
    assert client.get("/models/status/hub-model").status_code == 404  # its file is gone
    assert client.delete("/models/hub-model").status_code == 404


def test_pull_without_streaming_answers_the_outcome(
    make_client: AppFactory, hub: HubStandIn, hub_catalog: dict[str, CatalogEntry]
) -> None:
    hub.add(REPO, "sub/other.gguf", PAYLOAD)
    client = make_client()
    r = client.post("/models/pull", json={"model_id": f"hf://{REPO}/sub/other.gguf", "stream": False})
    assert r.status_code == 200, r.text
    assert r.json()["model_id"] == "other.gguf" and r.json()["completed"] == len(PAYLOAD)
    assert r.json()["verified"] is True  # against the Hub's own checksum
    listed = {m["id"]: m for m in client.get("/models/available").json()["models"]}
    assert listed["other.gguf"]["installed"] is True  # a pulled file outside the catalog is listed too
    assert client.post("/models/load", json={"model_id": "other.gguf"}).status_code == 200
    r = client.post("/models/pull", json={"model_id": f"hf://{REPO}/missing.gguf", "stream": False})
    assert r.status_code == 404 and "not on the Hub" in r.json()["detail"]


def test_a_failed_pull_ends_its_stream_with_an_error_event(
    make_client: AppFactory, hub: HubStandIn, hub_catalog: dict[str, CatalogEntry], tmp_path: Path
) -> None:
    hub.add(REPO, "evil.gguf", b"\x00" * 100)
    r = make_client().post("/models/pull", json={"model_id": f"hf://{REPO}/evil.gguf"})
    final = _events(r.text)[-1]
    assert final["status"] == "error" and "not a valid GGUF" in final["detail"]
    assert not (tmp_path / "models" / "evil.gguf").exists()


def test_packaged_models_are_not_deleted(make_client: AppFactory) -> None:
    r = make_client().delete("/models/fake-chat")
    assert r.status_code == 400 and "pip" in r.json()["detail"]


def test_files_outside_the_models_directory_are_never_deleted(
    make_client: AppFactory, model_file: Path
) -> None:
    # model_file lies in an allowed directory (LOCALLAB_MODEL_DIRS) but not in the models directory
    r = make_client().delete(f"/models/{model_file}")
    assert r.status_code == 400 and "not in the models directory" in r.json()["detail"]
    assert model_file.exists()


def test_a_symlink_out_of_the_models_directory_is_refused(make_client: AppFactory, tmp_path: Path) -> None:
    secret = tmp_path / "elsewhere" / "secret.gguf"
    secret.parent.mkdir()
    secret.write_bytes(b"GGUF")
    client = make_client(model_dirs="")
    link = tmp_path / "models" / "link.gguf"
    link.parent.mkdir(exist_ok=True)
    link.symlink_to(secret)
    for method, path, body in (
        ("POST", "/models/load", {"model_id": "link.gguf"}),
        ("DELETE", "/models/link.gguf", None),
    ):
        r = client.request(method, path, json=body)
        assert r.status_code == 400 and "outside" in r.json()["detail"], r.text
    assert secret.exists()


TRAVERSALS = [
    "../../../../etc/passwd.gguf",
    "/etc/passwd",
    "..%2f..%2fetc%2fshadow.gguf",
    "~/.ssh/id_rsa.gguf",
    "/proc/self/environ",
    "é" * 200 + ".gguf",
]


@pytest.mark.parametrize("name", TRAVERSALS)
def test_path_traversal_through_every_route_is_a_4xx(make_client: AppFactory, name: str) -> None:
    client = make_client(model_dirs="")
    requests = [
        ("POST", "/models/load", {"model_id": name}),
        ("POST", "/models/unload", {"model_id": name}),
        ("POST", "/models/pull", {"model_id": name}),
        ("POST", "/models/pull", {"model_id": f"hf://a/b/{name}"}),
        ("GET", f"/models/status/{name}", None),
        ("GET", f"/models/{name}", None),
        ("DELETE", f"/models/{name}", None),
        ("POST", "/generate", {"prompt": "x", "model_id": name}),
        ("POST", "/chat", {"messages": [{"role": "user", "content": "x"}], "model_id": name}),
        ("POST", "/v1/chat/completions", {"model": name, "messages": [{"role": "user", "content": "x"}]}),
        ("GET", f"/v1/models/{name}", None),
    ]
    for method, path, body in requests:
        r = client.request(method, path, json=body)
        assert 400 <= r.status_code < 500, (method, path, r.status_code, r.text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.lists(
        st.text(st.characters(blacklist_categories=["Cs"]), max_size=260)
        | st.sampled_from(["/", "..", ".", "~", "\\", ".gguf", "/etc", "%2e%2e", "\x00"])
        | st.sampled_from(["in.gguf", "outside.gguf", "link.gguf", "models", "../", "./", "/tmp/"]),
        min_size=1,
        max_size=8,
    ).map("".join)
)
def test_no_model_id_resolves_outside_the_models_directory(tmp_path: Path, name: str) -> None:
    models_dir = tmp_path / "models"
    models_dir.mkdir(exist_ok=True)
    (models_dir / "in.gguf").write_bytes(b"GGUF")
    (tmp_path / "outside.gguf").write_bytes(b"GGUF")
    if not (models_dir / "link.gguf").is_symlink():
        (models_dir / "link.gguf").symlink_to(tmp_path / "outside.gguf")
    registry = ModelRegistry({}, lambda model: None, models_dir)  # type: ignore[arg-type, return-value]
    try:
        resolved = registry.resolve(name)
    except LocalLabError:
        return  # refused with a 4xx detail: fine
    assert resolved.path.resolve().is_relative_to(models_dir.resolve())
