"""The whole seed API over real HTTP against the real default model."""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import Server
from tests.real_model import default_model_path

pytestmark = pytest.mark.integration

GREEDY = {"do_sample": False}


def _sse(lines: list[str]) -> list[object]:
    return [
        line[6:] if line == "data: [DONE]" else json.loads(line[6:])
        for line in lines
        if line.startswith("data: ")
    ]


def test_seed_example_tells_an_english_story(client: httpx.Client) -> None:
    r = client.post("/generate", json={"prompt": "Write a story about a robot", "temperature": 0.8})
    assert r.status_code == 200
    story = r.json()["response"]
    words = story.split()
    assert len(words) > 30
    assert sum(w.strip(".,!?\"'").isalpha() for w in words) > 0.8 * len(words)
    assert r.json()["usage"]["completion_tokens"] > 30


def test_chat_applies_the_models_template(client: httpx.Client) -> None:
    question = "What is the capital of France?"
    chat = client.post("/chat", json={"messages": [{"role": "user", "content": question}], **GREEDY})
    raw = client.post("/generate", json={"prompt": question, "raw": True, **GREEDY, "max_length": 40})
    assert "Paris" in chat.json()["choices"][0]["message"]["content"]
    # the same words without the template do not make the model answer
    assert "Paris" not in raw.json()["response"]
    # and /generate wraps a plain prompt in the same template as /chat
    generated = client.post("/generate", json={"prompt": question, **GREEDY})
    assert generated.json()["response"] == chat.json()["choices"][0]["message"]["content"]
    tokens = ("prompt_tokens", "completion_tokens")
    assert [generated.json()["usage"][k] for k in tokens] == [chat.json()["usage"][k] for k in tokens]


def test_streamed_chat_matches_the_plain_answer(client: httpx.Client) -> None:
    body = {
        "messages": [{"role": "user", "content": "Translate 'thank you' to Japanese."}],
        **GREEDY,
        "max_length": 40,
    }
    plain = client.post("/chat", json=body).json()
    with client.stream("POST", "/chat", json={**body, "stream": True}) as r:
        events = _sse(list(r.iter_lines()))
    assert events[-1] == "[DONE]"
    chunks = [e for e in events[:-1] if isinstance(e, dict)]
    deltas = [c["choices"][0]["delta"].get("content", "") for c in chunks]
    assert all("\ufffd" not in d for d in deltas)
    assert "".join(deltas) == plain["choices"][0]["message"]["content"]
    tokens = ("prompt_tokens", "completion_tokens", "total_tokens")
    assert [chunks[-1]["usage"][k] for k in tokens] == [plain["usage"][k] for k in tokens]
    assert chunks[-1]["choices"][0]["finish_reason"] == plain["choices"][0]["finish_reason"]


def test_stop_and_max_length_work_end_to_end(client: httpx.Client) -> None:
    body = {"messages": [{"role": "user", "content": "Count from 1 to 10, one number per line."}], **GREEDY}
    short = client.post("/chat", json={**body, "max_length": 3}).json()
    assert short["choices"][0]["finish_reason"] == "length" and short["usage"]["completion_tokens"] == 3
    stopped = client.post("/chat", json={**body, "stop": ["4"]}).json()
    assert stopped["choices"][0]["finish_reason"] == "stop"
    assert (
        "4" not in stopped["choices"][0]["message"]["content"]
        and "3" in stopped["choices"][0]["message"]["content"]
    )


def test_health_answers_while_a_long_generation_runs(client: httpx.Client, server: Server) -> None:
    events: list[str] = []
    health_at: list[int] = []

    def generate() -> None:
        body = {
            "prompt": "Tell me a very long story.",
            "max_length": 256,
            "stream": True,
            **GREEDY,
            "stop": ["zzzz"],
        }
        with httpx.stream("POST", f"{server.url}/generate", json=body, timeout=120) as r:
            events.extend(line for line in r.iter_lines() if line.startswith("data: "))

    worker = threading.Thread(target=generate)
    worker.start()
    deadline = time.monotonic() + 60
    while len(events) < 3 and time.monotonic() < deadline:
        time.sleep(0.005)
    for _ in range(5):
        r = client.get("/health")
        assert r.json()["model_status"] == "ready"
        health_at.append(len(events))
    worker.join(120)
    assert len(events) > 100
    # every health answer came back while tokens were still streaming
    assert max(health_at) < len(events) - 50


def test_model_endpoints_describe_the_real_model(client: httpx.Client) -> None:
    current = client.get("/models/current").json()
    assert current["id"] == "smollm2-135m-instruct" and current["engine"] == "llama.cpp"
    assert current["quantization"] == "Q4_1" and current["parameters"] > 100_000_000
    available = client.get("/models/available").json()
    entry = next(m for m in available["models"] if m["id"] == "smollm2-135m-instruct")
    assert entry["installed"] and entry["is_loaded"]
    info = client.get("/system/info").json()
    assert info["active_model"] == "smollm2-135m-instruct" and info["versions"]["llama_cpp_python"]
    assert info["memory"]["process_rss"] > 50_000_000


def test_bad_model_file_is_400_and_the_old_model_keeps_serving(client: httpx.Client, tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    with default_model_path().open("rb") as src:
        broken.write_bytes(src.read(500_000))
    r = client.post("/models/load", json={"model_id": str(broken)})
    assert r.status_code == 400 and "broken.gguf is not a valid GGUF" in r.json()["detail"]
    assert client.get("/models/current").json()["id"] == "smollm2-135m-instruct"
    assert client.post("/generate", json={"prompt": "Hi", "max_length": 3}).status_code == 200


def test_loading_a_gguf_path_replaces_the_model(start_server: Callable[..., Server], tmp_path: Path) -> None:
    copy = tmp_path / "smol-copy.gguf"
    shutil.copyfile(default_model_path(), copy)
    server = start_server(LOCALLAB_RATE_LIMIT_PER_MINUTE="0")
    with httpx.Client(base_url=server.url, timeout=60) as c:
        r = c.post("/models/load", json={"model_id": str(copy)})
        assert r.status_code == 200 and r.json()["model_id"] == str(copy)
        assert c.get("/models/current").json()["id"] == str(copy)
        answer = c.post("/generate", json={"prompt": "Say hi", "max_length": 5, "model_id": str(copy)})
        assert answer.status_code == 200 and answer.json()["model"] == str(copy)
        # the previous default stays loaded beside it (LOCALLAB_MAX_LOADED_MODELS=2) and still answers
        both = c.post(
            "/generate", json={"prompt": "Say hi", "max_length": 5, "model_id": "smollm2-135m-instruct"}
        )
        assert both.status_code == 200 and both.json()["model"] == "smollm2-135m-instruct"
        loaded = c.get("/system/info").json()["loaded_models"]
        assert sorted(loaded) == sorted([str(copy), "smollm2-135m-instruct"])


def test_prompt_as_number_is_400_naming_prompt(client: httpx.Client) -> None:
    r = client.post("/generate", content=b'{"prompt": 5}', headers={"content-type": "application/json"})
    assert r.status_code == 400 and "prompt" in r.json()["detail"]


def test_prompt_beyond_the_context_is_400_with_both_lengths(client: httpx.Client) -> None:
    r = client.post("/generate", json={"prompt": "word " * 5000, "raw": True})
    assert r.status_code == 400
    detail = r.json()["detail"]
    match = re.search(r"prompt is (\d+) tokens long but the model's context holds 4096 tokens", detail)
    assert match is not None, detail
    assert int(match.group(1)) >= 5000


def test_rate_limit_allows_a_burst_of_ten(start_server: Callable[..., Server]) -> None:
    server = start_server()
    with httpx.Client(base_url=server.url) as c:
        responses = [c.get("/models/current") for _ in range(12)]
    assert [r.status_code for r in responses] == [200] * 10 + [429] * 2
    assert int(responses[-1].headers["retry-after"]) >= 1
    assert "Rate limit" in responses[-1].json()["detail"]


def test_python_client_on_the_real_model(server: Server) -> None:
    from locallab.client import Client, NotFoundError

    with Client(server.url) as client:
        answer = client.chat([{"role": "user", "content": "What is the capital of France?"}], do_sample=False)
        assert "Paris" in answer["choices"][0]["message"]["content"]
        streamed = "".join(client.stream_generate("Name three colours.", max_length=20, do_sample=False))
        assert streamed == client.generate("Name three colours.", max_length=20, do_sample=False)["response"]
        with pytest.raises(NotFoundError):
            client.load_model("no-such-model")


def test_format_json_on_the_seed_route(client: httpx.Client) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 40}},
        "required": ["city"],
    }
    r = client.post(
        "/chat", json={"messages": [{"role": "user", "content": "Name a city as JSON."}], "format": schema}
    )
    value = json.loads(r.json()["choices"][0]["message"]["content"])
    assert isinstance(value["city"], str)
