"""Serving a transformers model folder through the API (a tiny random Llama built in the test), and
the server without the transformers extra."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from locallab.api.app import create_app
from locallab.config.catalog import CatalogEntry
from locallab.config.settings import Settings
from locallab.engines.fake import CHATML_TEMPLATE
from locallab.services.chat_template import render_chat
from tests.conftest import sse_events, wait_until_ready


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("transformers")
    from tests.transformers_models import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture
def client(tiny_folder: Path, catalog: dict[str, CatalogEntry]) -> Iterator[TestClient]:
    settings = Settings(model=str(tiny_folder), rate_limit_per_minute=0, parallel=4, context_length=256)
    with TestClient(create_app(settings, catalog=catalog), base_url="http://localhost") as test_client:
        wait_until_ready(test_client, timeout=60)
        yield test_client


def test_model_folder_loads_with_the_transformers_engine(client: TestClient, tiny_folder: Path) -> None:
    current = client.get("/models/current").json()
    assert current["engine"] == "transformers"
    assert current["id"] == str(tiny_folder)
    assert current["context_length"] == 256 and current["quantization"] == "F32"


def test_chat_uses_the_tokenizers_own_template(client: TestClient, tiny_folder: Path) -> None:
    from transformers import AutoTokenizer

    messages = [{"role": "user", "content": "Hello, world!"}]
    r = client.post("/chat", json={"messages": messages, "max_length": 6, "do_sample": False})
    assert r.status_code == 200, r.text
    body = r.json()
    tokenizer = AutoTokenizer.from_pretrained(tiny_folder)
    expected = tokenizer(render_chat(CHATML_TEMPLATE, messages)).input_ids
    assert body["usage"]["prompt_tokens"] == len(expected)
    assert body["usage"]["completion_tokens"] <= 6
    assert body["choices"][0]["finish_reason"] in ("length", "stop")


def test_openai_chat_streams_chunks_then_done(client: TestClient) -> None:
    # Greedy: the weights are random, and sampling can pick the end token within 8 tokens.
    r = client.post(
        "/v1/chat/completions",
        json={"model": client.get("/models/current").json()["id"], "stream": True, "max_tokens": 8,
              "temperature": 0, "messages": [{"role": "user", "content": "Count to five"}]},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    events = sse_events(r.text)
    assert events[-1] == "[DONE]"
    finals = [e for e in events[:-1] if e["choices"] and e["choices"][0]["finish_reason"]]
    assert finals and finals[-1]["choices"][0]["finish_reason"] == "length"


def test_structured_output_and_logprobs_are_refused_by_name(client: TestClient) -> None:
    messages = [{"role": "user", "content": "hi"}]
    r = client.post("/chat", json={"messages": messages, "format": "json"})
    assert r.status_code == 400 and "format" in r.json()["detail"]
    model = client.get("/models/current").json()["id"]
    r = client.post("/v1/chat/completions", json={"model": model, "messages": messages, "logprobs": True})
    assert r.status_code == 400 and r.json()["error"]["param"] == "logprobs"
    tool = {"type": "function", "function": {"name": "get_time"}}
    r = client.post("/v1/chat/completions", json={"model": model, "messages": messages, "tools": [tool]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "tools", r.text
    assert "cannot constrain decoding" in r.json()["error"]["message"]


def test_without_the_extra_a_folder_gets_a_400_naming_the_install(
    tiny_folder: Path, catalog: dict[str, CatalogEntry], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "locallab.engines.transformers", None)  # as if torch were missing
    settings = Settings(model="", rate_limit_per_minute=0, model_dirs=str(tiny_folder.parent))
    with TestClient(create_app(settings, catalog=catalog), base_url="http://localhost") as test_client:
        r = test_client.post("/models/load", json={"model_id": str(tiny_folder)})
    assert r.status_code == 400
    assert "pip install locallab[transformers]" in r.json()["detail"]


def test_starting_the_server_does_not_import_torch() -> None:
    code = (
        "import sys; from locallab.api.app import create_app; from locallab.cli import main; create_app(); "
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
