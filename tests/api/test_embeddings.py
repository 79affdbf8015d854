"""POST /v1/embeddings on a FakeEmbedder: OpenAI's wire format, input order, encodings, and the 400s a
user can act on."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from locallab.api.app import create_app
from locallab.client import AsyncClient, BadRequestError, Client
from locallab.config.catalog import CatalogEntry, ConvertedSource
from locallab.config.settings import Settings
from locallab.engines.base import Engine
from locallab.engines.fake import FakeEmbedder, FakeEngine
from locallab.services.model_ids import ResolvedModel
from tests.conftest import LiveServerFactory, wait_until_ready


@pytest.fixture
def embedder() -> FakeEmbedder:
    return FakeEmbedder()


@pytest.fixture
def client(catalog: dict[str, CatalogEntry], tmp_path: Path, embedder: FakeEmbedder) -> Iterator[TestClient]:
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    (models_dir / "fake-embed.gguf").write_bytes(b"GGUF")  # "converted" already
    (models_dir / "fake-matryoshka.gguf").write_bytes(b"GGUF")
    entries = dict(catalog)
    entries["fake-embed"] = CatalogEntry(
        id="fake-embed",
        name="Fake Embed",
        description="an embedding model for tests",
        engine="fake",
        format="gguf",
        parameters="1K",
        quantization="F32",
        context_length=16,
        license="MIT",
        size_bytes=4,
        embedding=True,
        source=ConvertedSource(
            package="no_such_package_here", archive="model.zip", file="fake-embed.gguf", pip="x==1"
        ),
    )
    trained = ConvertedSource(
        package="no_such_package", archive="m.zip", file="fake-matryoshka.gguf", pip="x==1"
    )
    entries["fake-matryoshka"] = replace(
        entries["fake-embed"], id="fake-matryoshka", source=trained, matryoshka=True
    )

    def load(model: ResolvedModel) -> Engine:
        return embedder if model.entry is not None and model.entry.embedding else FakeEngine()

    settings = Settings(
        model="fake-chat", rate_limit_per_minute=0, models_dir=models_dir, max_embedding_inputs=600
    )
    app = create_app(settings, engine_loader=load, catalog=entries)
    with TestClient(app, base_url="http://localhost", raise_server_exceptions=False) as test_client:
        wait_until_ready(test_client)
        yield test_client


def embed(client: TestClient, **body: Any) -> Any:
    return client.post("/v1/embeddings", json={"model": "fake-embed", **body})


def test_one_vector_per_input_in_input_order(client: TestClient) -> None:
    texts = [f"word{i} common" for i in range(512)]
    response = embed(client, input=texts)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "list" and body["model"] == "fake-embed"
    assert [d["index"] for d in body["data"]] == list(range(512))
    assert all(d["object"] == "embedding" for d in body["data"])
    single = embed(client, input=texts[300]).json()["data"][0]["embedding"]
    assert body["data"][300]["embedding"] == single
    assert body["usage"] == {"prompt_tokens": 512 * 4, "total_tokens": 512 * 4}


def test_vectors_are_normalised(client: TestClient) -> None:
    vector = np.array(embed(client, input="some words here").json()["data"][0]["embedding"])
    assert abs(np.linalg.norm(vector) - 1.0) < 1e-6


def test_base64_is_little_endian_float32_of_the_same_vector(client: TestClient) -> None:
    floats = embed(client, input=["alpha beta", "gamma"]).json()["data"]
    encoded = embed(client, input=["alpha beta", "gamma"], encoding_format="base64").json()["data"]
    for as_float, as_base64 in zip(floats, encoded, strict=True):
        decoded = np.frombuffer(base64.b64decode(as_base64["embedding"]), dtype="<f4")
        assert np.array_equal(decoded, np.array(as_float["embedding"], dtype=np.float32))


def test_ollamas_embed_routes_answer_the_same_float32_vectors(client: TestClient) -> None:
    texts = ["alpha beta", "gamma"]
    openai = np.array([d["embedding"] for d in embed(client, input=texts).json()["data"]], dtype=np.float32)
    ollama = client.post("/api/embed", json={"model": "fake-embed", "input": texts})
    assert ollama.status_code == 200
    assert ollama.json()["prompt_eval_count"] > 0
    assert np.array_equal(np.array(ollama.json()["embeddings"], dtype=np.float32), openai)
    legacy = client.post("/api/embeddings", json={"model": "fake-embed", "prompt": "gamma"}).json()
    assert np.array_equal(np.array(legacy["embedding"], dtype=np.float32), openai[1])
    assert client.post("/api/embeddings", json={"model": "fake-embed", "prompt": ""}).json() == {
        "embedding": []
    }


def test_all_inputs_of_a_request_reach_the_engine_in_one_call(
    client: TestClient, embedder: FakeEmbedder
) -> None:
    embed(client, input=["a", "b", "c"])
    assert embedder.calls == [3]


def test_too_long_input_is_refused_naming_its_index(client: TestClient) -> None:
    long_text = " ".join(["word"] * 40)
    response = embed(client, input=["short", long_text])
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert message.startswith("input[1]:") and "truncate" in message
    assert response.json()["error"]["param"] == "input[1]"


def test_truncate_embeds_the_first_tokens(client: TestClient) -> None:
    long_text = " ".join(f"w{i}" for i in range(40))
    response = embed(client, input=long_text, truncate=True)
    assert response.status_code == 200
    assert response.json()["usage"]["prompt_tokens"] == 16


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"input": [[1, 2, 3]]}, ["token ids", "check_embedding_ctx_length=False"]),
        ({"input": [1, 2, 3]}, ["token ids"]),
        ({"input": ""}, ["empty string"]),
        ({"input": ["ok", ""]}, ["input[1]", "empty string"]),
        ({"input": []}, ["at least one"]),
        ({"input": ["x"] * 601}, ["601", "at most 600"]),
        ({"input": "x", "encoding_format": "hex"}, ["encoding_format", "'float' or 'base64'"]),
        ({"input": "x", "dimensions": 9}, ["dimensions", "at most 8"]),
        ({"input": "x", "model": "fake-chat"}, ["generates text", "fake-embed"]),
    ],
)
def test_bad_requests_get_a_400_saying_what_to_do(
    client: TestClient, body: dict[str, Any], words: list[str]
) -> None:
    response = embed(client, **body)
    assert response.status_code == 400, response.text
    message = response.json()["error"]["message"]
    for word in words:
        assert word in message


def test_unknown_model_is_404_in_openais_envelope(client: TestClient) -> None:
    response = embed(client, input="x", model="no-such-model")
    assert response.status_code == 404
    assert "no-such-model" in response.json()["error"]["message"]


def test_the_models_own_dimension_is_accepted(client: TestClient) -> None:
    full = embed(client, input="x y").json()["data"][0]["embedding"]
    assert embed(client, input="x y", dimensions=8).json()["data"][0]["embedding"] == full


def test_dimensions_shortens_a_matryoshka_models_vectors_and_renormalises(client: TestClient) -> None:
    text = "a b c d e f g h a b"  # the fake's bag of words: every dimension non-zero, two larger
    full = np.array(embed(client, input=text, model="fake-matryoshka").json()["data"][0]["embedding"])
    answer = embed(client, input=text, model="fake-matryoshka", dimensions=5)
    assert answer.status_code == 200, answer.text
    short = np.array(answer.json()["data"][0]["embedding"])
    assert short.shape == (5,) and abs(np.linalg.norm(short) - 1.0) < 1e-6
    assert np.allclose(short, full[:5] / np.linalg.norm(full[:5]), atol=1e-6)
    assert not np.allclose(short, full[:5], atol=1e-3)


def test_other_models_refuse_shorter_vectors_on_openais_route_and_shorten_on_ollamas(
    client: TestClient,
) -> None:
    refused = embed(client, input="x", dimensions=5)
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "dimensions"
    message = refused.json()["error"]["message"]
    assert (
        "not trained to make shorter vectors" in message and "send 8" in message and "/api/embed" in message
    )
    text = "a b c d e f g h a b"
    full = np.array(embed(client, input=text).json()["data"][0]["embedding"])
    ollama = client.post("/api/embed", json={"model": "fake-embed", "input": [text], "dimensions": 5})
    assert ollama.status_code == 200, ollama.text
    assert np.allclose(ollama.json()["embeddings"][0], full[:5] / np.linalg.norm(full[:5]), atol=1e-6)
    too_many = client.post("/api/embed", json={"model": "fake-embed", "input": "x", "dimensions": 9})
    assert too_many.status_code == 400 and "at most 8" in too_many.json()["error"]


def test_chat_on_an_embedding_model_is_a_400(client: TestClient) -> None:
    response = client.post(
        "/v1/chat/completions", json={"model": "fake-embed", "messages": [{"role": "user", "content": "hi"}]}
    )
    assert response.status_code == 400
    assert "embedding model" in response.json()["error"]["message"]


def test_listings_say_which_models_embed(client: TestClient) -> None:
    available = {m["id"]: m for m in client.get("/models/available").json()["models"]}
    assert available["fake-embed"]["capabilities"] == ["embeddings"]
    assert available["fake-chat"]["capabilities"] == ["completions"]
    listed = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
    assert listed["fake-embed"]["capabilities"] == ["embeddings"]
    assert listed["fake-chat"]["capabilities"] == ["completions"]


def test_metrics_count_embedding_requests_and_inputs(client: TestClient) -> None:
    embed(client, input=["one", "two", "three"])
    embed(client, input="four")
    metrics = client.get("/metrics").text
    assert "locallab_embedding_requests_total 2.0" in metrics
    assert "locallab_embedding_inputs_total 4.0" in metrics


def test_python_clients_embed(serve_app: LiveServerFactory) -> None:
    url = serve_app(FakeEmbedder())  # type: ignore[arg-type]  # every model id is served by the embedder

    async def embed_async() -> dict[str, Any]:
        async with AsyncClient(url) as client:
            return await client.embed(["alpha beta", "gamma"], model="fake-chat")

    with Client(url) as client:
        sync_answer = client.embed("alpha beta", model="fake-chat")
        with pytest.raises(BadRequestError, match="empty string"):
            client.embed([""], model="fake-chat")
    async_answer = asyncio.run(asyncio.wait_for(embed_async(), 30))
    assert sync_answer["data"][0]["embedding"] == async_answer["data"][0]["embedding"]
    assert len(async_answer["data"]) == 2
