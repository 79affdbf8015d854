"""Ollama's POST /api/copy: an alias that serves the same weights, listed, persisted, deleted alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from locallab.engines.fake import FakeEngine
from tests.conftest import AppFactory


def names(client: object) -> list[str]:
    return [m["name"] for m in client.get("/api/tags").json()["models"]]  # type: ignore[attr-defined]


def openai_ids(client: object) -> list[str]:
    return [m["id"] for m in client.get("/v1/models").json()["data"]]  # type: ignore[attr-defined]


def test_copy_makes_an_alias_that_answers_and_is_listed(make_client: AppFactory) -> None:
    engine = FakeEngine([b"hi"])
    client = make_client(engine)
    response = client.post("/api/copy", json={"source": "fake-chat", "destination": "Mine:latest"})
    assert response.status_code == 200, response.text
    assert "mine:latest" in names(client) and "fake-chat:latest" in names(client)
    assert "mine" in openai_ids(client) and "fake-chat" in openai_ids(client)
    assert client.get("/v1/models/mine").json()["id"] == "mine"
    chat = {"model": "mine", "messages": [{"role": "user", "content": "x"}], "stream": False}
    answer = client.post("/api/chat", json=chat).json()
    assert answer["model"] == "mine" and answer["message"]["content"] == "hi"
    # the same weights: the alias shares the one loaded model
    assert [m["name"] for m in client.get("/api/ps").json()["models"]] == ["fake-chat:latest"]
    shown = client.post("/api/show", json={"model": "mine"}).json()
    assert shown["details"] == client.post("/api/show", json={"model": "fake-chat"}).json()["details"]


def test_aliases_persist_across_restarts(make_client: AppFactory, tmp_path: Path) -> None:
    first = make_client(FakeEngine())
    assert first.post("/api/copy", json={"source": "fake-chat", "destination": "kept"}).status_code == 200
    assert json.loads((tmp_path / "models" / "aliases.json").read_text()) == {
        "aliases": {"kept": "fake-chat"}
    }
    second = make_client(FakeEngine())
    assert "kept:latest" in names(second)


def test_copy_onto_an_alias_points_it_anew_and_alias_of_alias_names_the_model(
    make_client: AppFactory, tmp_path: Path
) -> None:
    (tmp_path / "models").mkdir(parents=True, exist_ok=True)
    (tmp_path / "models" / "other.gguf").write_bytes(b"GGUF")
    client = make_client(FakeEngine())
    assert client.post("/api/copy", json={"source": "fake-chat", "destination": "a"}).status_code == 200
    assert client.post("/api/copy", json={"source": "a", "destination": "b"}).status_code == 200
    assert client.post("/api/copy", json={"source": "other.gguf", "destination": "a"}).status_code == 200
    stored = json.loads((tmp_path / "models" / "aliases.json").read_text())["aliases"]
    assert stored == {"a": str((tmp_path / "models" / "other.gguf").resolve()), "b": "fake-chat"}


def test_deleting_an_alias_keeps_the_model(make_client: AppFactory, tmp_path: Path) -> None:
    (tmp_path / "models").mkdir(parents=True, exist_ok=True)
    model = tmp_path / "models" / "weights.gguf"
    model.write_bytes(b"GGUF")
    client = make_client(FakeEngine())
    assert client.post("/api/copy", json={"source": "weights.gguf", "destination": "w"}).status_code == 200
    assert "w:latest" in names(client)
    # the seed API's delete refuses to remove the file through an alias, and says what to do
    refused = client.delete("/models/w")
    assert refused.status_code == 400 and "/api/delete" in refused.json()["detail"]
    assert client.request("DELETE", "/api/delete", json={"model": "w"}).status_code == 200
    assert model.exists() and "w:latest" not in names(client) and "weights.gguf:latest" in names(client)
    missing = client.request("DELETE", "/api/delete", json={"model": "w"})
    assert missing.status_code == 404 and "model 'w' not found" in missing.json()["error"]


def test_deleting_the_model_removes_its_aliases(make_client: AppFactory, tmp_path: Path) -> None:
    (tmp_path / "models").mkdir(parents=True, exist_ok=True)
    (tmp_path / "models" / "weights.gguf").write_bytes(b"GGUF")
    client = make_client(FakeEngine())
    assert client.post("/api/copy", json={"source": "weights.gguf", "destination": "w"}).status_code == 200
    deleted = client.request("DELETE", "/api/delete", json={"model": "weights.gguf"})
    assert deleted.status_code == 200
    assert "w:latest" not in names(client)
    assert json.loads((tmp_path / "models" / "aliases.json").read_text()) == {"aliases": {}}


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"source": "nope", "destination": "x"}, 404, ["model 'nope' not found"]),
        ({"source": "fake-missing", "destination": "x"}, 404, ["fake-missing", "not installed"]),
        ({"source": "fake-chat", "destination": "mine:v2"}, 400, ["'mine-v2'"]),
        ({"source": "fake-chat", "destination": "has space"}, 400, ["lowercase letters"]),
        ({"source": "fake-chat", "destination": "dir/name"}, 400, ["cannot be a model name"]),
        ({"source": "fake-chat", "destination": "x.gguf"}, 400, [".gguf"]),
        ({"source": "fake-chat", "destination": "fake-missing"}, 400, ["model of its own"]),
        ({"source": "fake-chat", "destination": "fake-chat"}, 400, ["model of its own"]),
    ],
)
def test_bad_copies_say_why(
    make_client: AppFactory, body: dict[str, str], status: int, words: list[str]
) -> None:
    client = make_client(FakeEngine())
    response = client.post("/api/copy", json=body)
    assert response.status_code == status, response.text
    for word in words:
        assert word in response.json()["error"]
    assert names(client) == ["fake-chat:latest"]


def test_a_damaged_aliases_file_is_ignored(make_client: AppFactory, tmp_path: Path) -> None:
    (tmp_path / "models").mkdir(parents=True, exist_ok=True)
    (tmp_path / "models" / "aliases.json").write_text("{not json")
    client = make_client(FakeEngine())
    assert names(client) == ["fake-chat:latest"]
    assert client.post("/api/copy", json={"source": "fake-chat", "destination": "x"}).status_code == 200
    assert "x:latest" in names(client)
