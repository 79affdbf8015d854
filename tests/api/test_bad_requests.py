"""A table of bad requests: each gets its 4xx status and a `detail` that names what to fix."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from locallab.config.catalog import CatalogEntry
from locallab.engines.fake import FakeEngine
from tests.conftest import AppFactory

USER = [{"role": "user", "content": "hi"}]

# (method, path, json body or raw bytes, status, words the detail must contain)
CASES: list[tuple[str, str, Any, int, list[str]]] = [
    ("POST", "/generate", {"prompt": 5}, 400, ["prompt", "string"]),
    ("POST", "/generate", {}, 400, ["prompt", "required"]),
    ("POST", "/generate", {"prompt": ""}, 400, ["prompt", "at least 1"]),
    ("POST", "/generate", {"prompt": "x", "temperature": 3}, 400, ["temperature", "2"]),
    ("POST", "/generate", {"prompt": "x", "temperature": "hot"}, 400, ["temperature"]),
    ("POST", "/generate", {"prompt": "x", "top_p": 1.5}, 400, ["top_p", "1"]),
    ("POST", "/generate", {"prompt": "x", "top_k": -1}, 400, ["top_k"]),
    ("POST", "/generate", {"prompt": "x", "max_length": 0}, 400, ["max_length", "1"]),
    ("POST", "/generate", {"prompt": "x", "max_length": "ten"}, 400, ["max_length"]),
    ("POST", "/generate", {"prompt": "x", "max_length": 1.5}, 400, ["max_length"]),
    ("POST", "/generate", {"prompt": "x", "repetition_penalty": 0}, 400, ["repetition_penalty"]),
    ("POST", "/generate", {"prompt": "x", "stream": "yes"}, 400, ["stream"]),
    ("POST", "/generate", {"prompt": "x", "do_sample": 1}, 400, ["do_sample"]),
    ("POST", "/generate", {"prompt": "x", "seed": -1}, 400, ["seed"]),
    ("POST", "/generate", {"prompt": "x", "max_time": 0}, 400, ["max_time"]),
    ("POST", "/generate", {"prompt": "x", "stop": [""]}, 400, ["stop[0]", "at least 1 character"]),
    ("POST", "/generate", {"prompt": "x", "stop": ["s"] * 9}, 400, ["stop", "8"]),
    ("POST", "/generate", {"prompt": "x", "bogus": 1}, 400, ["bogus", "unknown field"]),
    (
        "POST",
        "/generate",
        {"prompt": "x", "model_id": "no-such-model"},
        404,
        ["no-such-model", "/models/available"],
    ),
    (
        "POST",
        "/generate",
        {"prompt": "x", "model_id": "/no/such/file.gguf"},
        400,
        ["/no/such/file.gguf is outside"],
    ),
    ("POST", "/generate", {"prompt": "x", "model_id": "missing.gguf"}, 404, ["No model file at"]),
    ("POST", "/generate", {"prompt": "x", "model_id": "../../etc/passwd"}, 400, ["/etc/passwd is outside"]),
    ("POST", "/generate", {"prompt": "x", "model_id": "fake-missing"}, 404, ["not installed", "pip install"]),
    ("POST", "/generate", b"{not json", 400, ["not valid JSON"]),
    ("POST", "/generate", b"", 400, ["JSON body"]),
    ("POST", "/generate", ["prompt"], 400, ["JSON object"]),
    ("POST", "/chat", {}, 400, ["messages", "required"]),
    ("POST", "/chat", {"messages": []}, 400, ["messages", "at least 1"]),
    ("POST", "/chat", {"messages": "hello"}, 400, ["messages"]),
    ("POST", "/chat", {"messages": [{"role": "robot", "content": "x"}]}, 400, ["messages[0].role", "user"]),
    ("POST", "/chat", {"messages": [{"role": "user", "content": 5}]}, 400, ["messages[0].content"]),
    ("POST", "/chat", {"messages": [{"role": "user"}]}, 400, ["messages[0].content", "required"]),
    ("POST", "/chat", {"messages": USER, "top_p": -0.1}, 400, ["top_p"]),
    ("POST", "/chat", {"messages": USER, "prompt": "x"}, 400, ["prompt", "unknown field"]),
    ("POST", "/models/load", {}, 400, ["model_id", "required"]),
    ("POST", "/models/load", {"model_id": 7}, 400, ["model_id"]),
    ("POST", "/models/load", {"model_id": "nope"}, 404, ["Unknown model 'nope'"]),
    ("POST", "/models/load", {"model_id": "Bad Id!"}, 404, ["lowercase"]),
    ("POST", "/models/load", {"model_id": "/etc/passwd"}, 400, ["outside the directories"]),
    ("POST", "/models/load", {"model_id": "é" * 127 + ".gguf"}, 400, ["longer than 255 bytes"]),
    ("POST", "/models/load", {"model_id": "/tmp/" + "é" * 200 + ".gguf"}, 400, ["longer than 255 bytes"]),
    ("POST", "/models/load", {"model_id": "../../../../etc/x.gguf"}, 400, ["/etc/x.gguf is outside"]),
    ("GET", "/no/such/route", None, 404, ["No route GET /no/such/route"]),
    ("DELETE", "/generate", None, 405, ["DELETE is not allowed"]),
    ("GET", "/chat", None, 405, ["GET is not allowed"]),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "words"), CASES)
def test_bad_request_gets_a_clear_detail(
    make_client: AppFactory, method: str, path: str, body: Any, status: int, words: list[str]
) -> None:
    client = make_client()
    if isinstance(body, bytes):
        r = client.request(method, path, content=body, headers={"content-type": "application/json"})
    else:
        r = client.request(method, path, json=body)
    assert r.status_code == status, r.text
    assert set(r.json()) == {"detail", "request_id"}
    assert r.json()["request_id"] == r.headers["x-request-id"]
    for word in words:
        assert word in r.json()["detail"]


# (path, body, the field path the message must start with): a field's own name, never a union branch's
# tag (a class name such as TextBlock), even when the field is called `model` or `function`
FIELD_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("/v1/embeddings", {"input": "a"}, "model: this field is required"),
    ("/v1/responses", {"input": "a"}, "model: this field is required"),
    ("/api/embed", {"input": "a"}, "model: this field is required"),
    (
        "/v1/chat/completions",
        {"model": "fake-chat", "messages": USER, "tools": [{"type": "function", "function": {}}]},
        "tools[0].function.name: this field is required",
    ),
    (
        "/v1/chat/completions",
        {"model": "fake-chat", "messages": USER, "tool_choice": {"type": "function", "function": {}}},
        "tool_choice.function.name: this field is required",
    ),
    (
        "/v1/messages",
        {
            "model": "fake-chat",
            "max_tokens": 5,
            "messages": [{"role": "user", "content": [{"type": "text"}]}],
        },
        "messages[0].content[0].text: this field is required",
    ),
]


@pytest.mark.parametrize(("path", "body", "message"), FIELD_CASES)
def test_every_dialect_names_the_bad_field_as_the_user_wrote_it(
    make_client: AppFactory, path: str, body: dict[str, Any], message: str
) -> None:
    r = make_client().post(path, json=body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert (error["message"] if isinstance(error, dict) else error).startswith(message)


def test_prompt_longer_than_the_context_is_refused_with_both_lengths(make_client: AppFactory) -> None:
    client = make_client(FakeEngine(context_length=50))
    r = client.post("/generate", json={"prompt": "x" * 80, "raw": True})
    assert r.status_code == 400
    assert "80 tokens" in r.json()["detail"] and "50 tokens" in r.json()["detail"]


def test_known_model_that_is_not_loaded_is_loaded_on_demand(
    make_client: AppFactory, model_file: Path
) -> None:
    loaded: list[Path] = []

    def loader(path: Path) -> FakeEngine:
        loaded.append(path)
        return FakeEngine([path.stem.encode()])

    client = make_client(loader=loader)
    r = client.post("/chat", json={"messages": USER, "model_id": str(model_file)})
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "fake-model"
    assert client.get("/models/current").json()["id"] == "fake-chat"  # the default stays the default
    client.post("/chat", json={"messages": USER, "model_id": str(model_file)})
    assert loaded.count(model_file) == 1  # loaded once, then reused


def test_chat_with_a_model_without_chat_template_is_refused(make_client: AppFactory) -> None:
    from locallab.engines.fake import fake_model_info

    client = make_client(FakeEngine(info=fake_model_info("base", chat_template=None)))
    r = client.post("/chat", json={"messages": USER})
    assert r.status_code == 400
    assert "no chat template" in r.json()["detail"]
    # the same model still completes raw prompts
    assert client.post("/generate", json={"prompt": "The sky is"}).status_code == 200


def test_chat_template_that_raises_becomes_a_400(make_client: AppFactory) -> None:
    from locallab.engines.fake import fake_model_info

    template = "{{ raise_exception('Conversation roles must alternate') }}"
    client = make_client(FakeEngine(info=fake_model_info("strict", chat_template=template)))
    r = client.post("/chat", json={"messages": USER})
    assert r.status_code == 400
    assert "Conversation roles must alternate" in r.json()["detail"]


def test_requests_before_any_model_loaded_get_503_with_retry_after(make_client: AppFactory) -> None:
    client = make_client(model="")
    r = client.post("/generate", json={"prompt": "x"})
    assert r.status_code == 503
    assert "POST /models/load" in r.json()["detail"]
    assert r.headers["retry-after"] == "5"


def test_a_chat_template_that_loops_for_ever_is_a_400_and_its_process_is_killed(
    make_client: AppFactory,
) -> None:
    import time

    import psutil

    from locallab.engines.fake import fake_model_info

    # 10^10 empty iterations: the sandbox limits each range, not their product
    template = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    client = make_client(FakeEngine(info=fake_model_info("looping", chat_template=template)))
    renderer = client.app.state.services.generation.templates
    renderer.seconds = 0.5
    children_before = {p.pid for p in psutil.Process().children(recursive=True)}
    for _ in range(3):  # again and again: no thread or process is left spinning
        started = time.monotonic()
        r = client.post("/chat", json={"messages": USER})
        assert r.status_code == 400 and "took longer than 0.5 s" in r.json()["detail"]
        assert time.monotonic() - started < 5
        assert client.get("/health").status_code == 200
    children_after = {p.pid for p in psutil.Process().children(recursive=True)}
    assert children_after <= children_before  # the renderer that looped was killed


def test_a_chat_template_that_allocates_without_end_is_a_400(make_client: AppFactory) -> None:
    from locallab.engines.fake import fake_model_info

    bomb = "{% set s = 'x' * 3000000000 %}{{ s | length }}"
    client = make_client(FakeEngine(info=fake_model_info("bomb", chat_template=bomb)))
    r = client.post("/chat", json={"messages": USER})
    assert r.status_code == 400 and "memory" in r.json()["detail"]
    assert client.get("/health").status_code == 200


def test_a_template_the_catalog_declares_lets_a_base_model_chat(
    make_client: AppFactory, catalog: dict[str, CatalogEntry]
) -> None:
    from locallab.engines.fake import fake_model_info

    turns = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}[model] "
    catalog["fake-chat"] = replace(catalog["fake-chat"], chat_template=turns)
    engine = FakeEngine(info=fake_model_info("base", chat_template=None))
    client = make_client(engine)
    assert client.post("/chat", json={"messages": USER}).status_code == 200
    assert engine.prompts[-1].endswith("[model] ") and "[user] " in engine.prompts[-1]
    client.post("/generate", json={"prompt": "The sky is"})
    assert engine.prompts[-1] == "The sky is"  # /generate continues the text of a base model
