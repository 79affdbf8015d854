"""Ollama's API end to end: the official `ollama` package and raw NDJSON against a real server on the
default model; pull (the packaged embedding model, converted here), embed, ps, keep-alive unload, delete."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import httpx
import numpy as np
import ollama
import pytest

from tests.embedding_model import MODEL_ID as EMBEDDER
from tests.integration.conftest import Server

pytestmark = pytest.mark.integration

MODEL = "smollm2-135m-instruct"
HI = [{"role": "user", "content": "Say hello."}]
SHORT = {"num_predict": 64}


@pytest.fixture(scope="module")
def server(start_server: Callable[..., Server]) -> Server:
    # its own server: these tests unload and delete models
    return start_server(LOCALLAB_RATE_LIMIT_PER_MINUTE="0", HF_ENDPOINT="http://127.0.0.1:9")


@pytest.fixture
def client(server: Server) -> Iterator[ollama.Client]:
    with ollama.Client(host=server.url, timeout=120) as c:
        yield c


def test_chat_answers_streamed_and_not(client: ollama.Client) -> None:
    answer = client.chat(model=MODEL, messages=HI, options={"num_predict": 16, "temperature": 0})
    assert answer.message.role == "assistant" and answer.message.content
    assert answer.done and answer.done_reason in ("stop", "length")
    assert answer.eval_count and answer.prompt_eval_count and answer.total_duration
    chunks = list(client.chat(model=MODEL, messages=HI, stream=True, options={"num_predict": 16}))
    assert len(chunks) > 2 and all(not c.done for c in chunks[:-1]) and chunks[-1].done
    assert "".join(c.message.content for c in chunks).strip()
    assert isinstance(chunks[-1].eval_duration, int) and 0 < (chunks[-1].eval_count or 0) <= 16


def test_generate_with_num_predict_stops_at_length(client: ollama.Client) -> None:
    answer = client.generate(
        model=f"{MODEL}:latest", prompt="Count: 1, 2, 3,", options={"num_predict": 5, "temperature": 0}
    )
    assert answer.model == f"{MODEL}:latest"
    assert answer.done_reason == "length" and answer.eval_count == 5 and answer.response
    chunks = list(
        client.generate(model=MODEL, prompt="Hi", stream=True, options={"num_predict": 4, "temperature": 0})
    )
    assert chunks[-1].done and chunks[-1].eval_count == 4


def test_format_schema_gives_matching_json(client: ollama.Client) -> None:
    schema = {"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]}
    messages = [{"role": "user", "content": "How old is a ten-year-old? Answer in JSON."}]
    options = {"num_predict": 64, "temperature": 0}
    answer = client.chat(model=MODEL, messages=messages, format=schema, options=options)
    assert isinstance(json.loads(answer.message.content)["age"], int)


def test_list_show_and_version(client: ollama.Client, server: Server) -> None:
    names = [m.model for m in client.list().models]
    assert f"{MODEL}:latest" in names
    shown = client.show(MODEL)
    assert shown.capabilities == ["completion", "tools"]
    assert shown.modelinfo is not None and shown.modelinfo["general.architecture"] == "llama"
    assert isinstance(shown.modelinfo["llama.context_length"], int)
    assert shown.details is not None and shown.details.family == "llama"
    assert "<|im_start|>" in (shown.template or "")
    assert httpx.get(f"{server.url}/api/version").json()["version"] == "0.6.4"


def test_errors_are_typed_response_errors(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as missing:
        client.chat(model="no-such-model", messages=HI)
    assert missing.value.status_code == 404 and "model 'no-such-model' not found" in missing.value.error
    with pytest.raises(ollama.ResponseError) as images:
        client.chat(model=MODEL, messages=[{"role": "user", "content": "hi", "images": ["aGk="]}])
    assert images.value.status_code == 400 and "images" in images.value.error
    with pytest.raises(ollama.ResponseError) as create:
        client.create(model="mine", from_=MODEL)
    assert create.value.status_code == 400
    # the rest of the client's calls that LocalLab refuses: each a 400 that says what to do instead
    with pytest.raises(ollama.ResponseError) as push:
        client.push(MODEL)
    assert push.value.status_code == 400 and "LocalLab" in push.value.error
    with pytest.raises(ollama.ResponseError) as blob:
        client.create_blob(__file__)
    assert blob.value.status_code == 400 and "Modelfiles" in blob.value.error


def get_weather(city: str) -> str:
    """Get the current weather in a city.

    Args:
      city: The city's name
    """
    return "sunny"


def test_tools_give_calls_with_object_arguments_or_text(client: ollama.Client) -> None:
    # Ollama has no tool_choice: the model decides; whatever it does must come back in Ollama's shapes
    messages = [{"role": "user", "content": "What is the weather in Paris? Use the get_weather tool."}]
    for stream in (False, True):
        if stream:
            chunks = list(
                client.chat(model=MODEL, messages=messages, tools=[get_weather], stream=True, options=SHORT)
            )
            calls = [c for chunk in chunks for c in (chunk.message.tool_calls or [])]
            assert chunks[-1].done
        else:
            answer = client.chat(model=MODEL, messages=messages, tools=[get_weather], options=SHORT)
            calls = list(answer.message.tool_calls or [])
            assert calls or answer.message.content
        for call in calls:
            assert call.function.name == "get_weather" and isinstance(call.function.arguments, dict)
            assert isinstance(call.function.arguments.get("city"), str)
    result = {"role": "tool", "content": "sunny, 21 C", "tool_name": "get_weather"}
    history = [*messages, {"role": "assistant", "content": "", "tool_calls": [
        {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]}, result]  # fmt: skip
    answer = client.chat(model=MODEL, messages=history, tools=[get_weather], options={"num_predict": 24})
    assert answer.done and (answer.message.content or answer.message.tool_calls)


def test_raw_stream_is_ndjson_with_integer_durations(server: Server) -> None:
    body = {"model": MODEL, "messages": HI, "options": {"num_predict": 8, "temperature": 0}}
    with httpx.stream("POST", f"{server.url}/api/chat", json=body, timeout=120) as response:
        assert response.headers["content-type"] == "application/x-ndjson"
        lines = [json.loads(line) for line in response.iter_lines() if line]
    final = lines[-1]
    assert final["done"] is True and final["done_reason"] == "length"
    for key in ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration"):
        assert isinstance(final[key], int) and final[key] >= 0
    assert final["total_duration"] >= final["eval_duration"]


def test_root_is_ollama_for_clients_and_the_page_for_browsers(server: Server) -> None:
    assert httpx.get(server.url).text == "Ollama is running"
    assert httpx.head(server.url).status_code == 200
    page = httpx.get(server.url, headers={"Accept": "text/html"})
    assert page.headers["content-type"].startswith("text/html")


def test_langchain_chat_ollama_streams_with_usage(server: Server) -> None:
    from langchain_ollama import ChatOllama

    chat = ChatOllama(model=MODEL, base_url=server.url, num_predict=16, temperature=0)
    try:
        chunks = list(chat.stream("Say hello."))
        answer = chat.invoke([("system", "Answer briefly."), ("human", "Name a colour.")])
    finally:
        chat._client.close()  # ChatOllama never closes its ollama.Client
    text = "".join(str(c.content) for c in chunks)
    usage = next(c.usage_metadata for c in reversed(chunks) if c.usage_metadata)
    assert text.strip() and usage["output_tokens"] > 0 and usage["input_tokens"] > 0
    assert str(answer.content).strip()
    assert answer.response_metadata["done_reason"] in ("stop", "length")


def test_pull_embed_ps_unload_and_delete(client: ollama.Client, server: Server) -> None:
    from langchain_ollama import OllamaEmbeddings

    progress = list(client.pull(EMBEDDER, stream=True))
    assert progress[0].status == "pulling manifest" and progress[-1].status == "success"
    vectors = np.array(client.embed(model=EMBEDDER, input=["a cat", "a dog"]).embeddings)
    assert vectors.shape == (2, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    short = np.array(client.embed(model=EMBEDDER, input=["a cat"], dimensions=64).embeddings)
    head = vectors[0, :64]
    assert short.shape == (1, 64) and np.allclose(short[0], head / np.linalg.norm(head), atol=1e-5)
    legacy = client.embeddings(model=EMBEDDER, prompt="a cat")
    assert np.allclose(legacy.embedding, vectors[0], atol=1e-6)
    retriever = OllamaEmbeddings(model=EMBEDDER, base_url=server.url)  # what a LangChain RAG app uses
    try:
        assert np.allclose(retriever.embed_documents(["a cat", "a dog"]), vectors, atol=1e-5)
        assert np.allclose(retriever.embed_query("a dog"), vectors[1], atol=1e-5)
    finally:
        retriever._client.close()  # LangChain never closes its ollama.Client
    assert f"{EMBEDDER}:latest" in [m.model for m in client.ps().models]
    unloaded = client.generate(model=EMBEDDER, keep_alive=0)
    assert unloaded.done_reason == "unload"
    assert f"{EMBEDDER}:latest" not in [m.model for m in client.ps().models]
    assert f"{EMBEDDER}:latest" in [m.model for m in client.list().models]
    assert client.delete(EMBEDDER).status == "success"
    assert f"{EMBEDDER}:latest" not in [m.model for m in client.list().models]
    with pytest.raises(ollama.ResponseError) as gone:
        client.delete("no-such-model")
    assert gone.value.status_code == 404


def test_empty_chat_loads_and_keep_alive_zero_unloads(client: ollama.Client) -> None:
    loaded = client.chat(model=MODEL, messages=[])
    assert loaded.done_reason == "load"
    running = {m.model: m for m in client.ps().models}
    assert running[f"{MODEL}:latest"].context_length and running[f"{MODEL}:latest"].expires_at
    assert client.chat(model=MODEL, messages=[], keep_alive=0).done_reason == "unload"
    assert f"{MODEL}:latest" not in [m.model for m in client.ps().models]
    assert client.chat(model=MODEL, messages=HI, options={"num_predict": 4}).message.content


def test_copy_is_an_alias_that_answers_and_deletes_alone(client: ollama.Client, server: Server) -> None:
    assert client.copy(MODEL, "my-chat").status == "success"
    assert "my-chat:latest" in [m.model for m in client.list().models]
    assert "my-chat" in [m["id"] for m in httpx.get(f"{server.url}/v1/models").json()["data"]]
    answer = client.chat(model="my-chat", messages=HI, options={"num_predict": 8})
    assert answer.model == "my-chat" and answer.message.content
    with pytest.raises(ollama.ResponseError) as tagged:
        client.copy(MODEL, "my-chat:v2")
    assert tagged.value.status_code == 400 and "my-chat-v2" in tagged.value.error
    assert client.delete("my-chat").status == "success"
    names = [m.model for m in client.list().models]
    assert "my-chat:latest" not in names and f"{MODEL}:latest" in names
