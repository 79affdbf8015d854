"""Ollama's API (/api) on a scripted engine: NDJSON framing, final counts, options, errors, listings."""

from __future__ import annotations

import json
from typing import Any

import pytest

from locallab.api.ollama import wire
from locallab.engines.fake import FakeEngine
from locallab.errors import InvalidRequestError
from tests.conftest import AppFactory

CHAT = {"model": "fake-chat", "messages": [{"role": "user", "content": "hi"}]}
DURATIONS = (
    "total_duration", "load_duration", "prompt_eval_duration", "eval_duration",
    "prompt_eval_count", "eval_count",
)  # fmt: skip


def lines(text: str) -> list[dict[str, Any]]:
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_chat_streams_ndjson_by_default_ending_with_counts(make_client: AppFactory) -> None:
    client = make_client(FakeEngine([b"Hel", b"lo"]))
    response = client.post("/api/chat", json=CHAT)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-ndjson"
    chunks = lines(response.text)
    assert "".join(c["message"]["content"] for c in chunks) == "Hello"
    assert all(c["model"] == "fake-chat" and c["created_at"].endswith("Z") for c in chunks)
    assert [c["done"] for c in chunks] == [False] * (len(chunks) - 1) + [True]
    final = chunks[-1]
    assert final["done_reason"] == "stop" and final["message"]["role"] == "assistant"
    assert all(isinstance(final[k], int) and final[k] >= 0 for k in DURATIONS)
    assert final["eval_count"] == 2


def test_generate_without_stream_is_one_object(make_client: AppFactory) -> None:
    client = make_client(FakeEngine([b"Hel", b"lo"]))
    body = client.post("/api/generate", json={"model": "fake-chat", "prompt": "hi", "stream": False})
    assert body.headers["content-type"] == "application/json"
    data = body.json()
    assert data["response"] == "Hello" and data["done"] is True and data["done_reason"] == "stop"
    assert data["eval_count"] == 2 and isinstance(data["total_duration"], int)


def test_model_name_with_latest_tag_is_echoed(make_client: AppFactory) -> None:
    client = make_client(FakeEngine([b"x"]))
    data = client.post("/api/chat", json={**CHAT, "model": "Fake-Chat:latest", "stream": False}).json()
    assert data["model"] == "Fake-Chat:latest" and data["message"]["content"] == "x"


def test_options_map_onto_sampling(make_client: AppFactory) -> None:
    engine = FakeEngine()
    client = make_client(engine)
    options = {
        "num_predict": 7.0, "temperature": 0, "top_p": 0.5, "top_k": 3, "seed": 9, "stop": ["x"],
        "repeat_penalty": 1.2, "presence_penalty": 0.5, "frequency_penalty": -0.5, "mirostat": 0,
        "num_thread": 4, "min_p": 0.05, "repeat_last_n": 64,
    }  # fmt: skip
    assert client.post("/api/chat", json={**CHAT, "options": options}).status_code == 200
    params = engine.requests[-1].sampling
    assert params.max_tokens == 7 and params.greedy and params.top_p == 0.5 and params.top_k == 3
    assert params.seed == 9 and params.stop == ("x",) and params.repetition_penalty == 1.2
    assert (params.presence_penalty, params.frequency_penalty) == (0.5, -0.5)
    assert (params.min_p, params.penalty_last_n) == (0.05, 64)
    client.post("/api/chat", json={**CHAT, "options": {"min_p": 0, "repeat_last_n": -1}})
    assert (engine.requests[-1].sampling.min_p, engine.requests[-1].sampling.penalty_last_n) == (0.0, -1)


def test_absent_options_take_ollamas_defaults(make_client: AppFactory) -> None:
    engine = FakeEngine()
    make_client(engine).post("/api/chat", json=CHAT)
    params = engine.requests[-1].sampling
    assert (params.temperature, params.top_p, params.top_k) == (0.8, 0.9, 40)
    assert (params.min_p, params.penalty_last_n) == (0.0, 64)


def test_num_predict_limit_reports_length(make_client: AppFactory) -> None:
    client = make_client(FakeEngine([b"a", b"b", b"c"]))
    data = client.post(
        "/api/generate",
        json={"model": "fake-chat", "prompt": "hi", "stream": False, "options": {"num_predict": 2}},
    ).json()
    assert data["done_reason"] == "length" and data["eval_count"] == 2


def test_format_json_and_schema_use_the_grammar(make_client: AppFactory) -> None:
    engine = FakeEngine()
    client = make_client(engine)
    client.post("/api/chat", json={**CHAT, "format": "json"})
    assert engine.requests[-1].sampling.json_output
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    client.post("/api/chat", json={**CHAT, "format": schema})
    assert engine.requests[-1].sampling.json_schema == schema


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"tools": [{"type": "function", "function": {"name": "bad name"}}]}, "tools[0].name:"),
        ({"think": True}, "think:"),
        ({"messages": [{"role": "user", "content": "hi", "images": ["aGk="]}]}, "images:"),
        ({"options": {"num_ctx": 10**6}}, "options.num_ctx:"),
        ({"options": {"no_such_option": 1}}, "options.no_such_option: unknown field"),
        ({"keep_alive": "5 minutes"}, "keep_alive:"),
    ],
)
def test_unsupported_fields_are_a_400_in_ollamas_envelope(
    make_client: AppFactory, extra: dict[str, Any], words: str
) -> None:
    response = make_client(FakeEngine()).post("/api/chat", json={**CHAT, **extra})
    assert response.status_code == 400, response.text
    assert words in response.json()["error"]


def test_generate_refuses_images_and_suffix(make_client: AppFactory) -> None:
    client = make_client(FakeEngine())
    for extra in ({"images": ["aGk="]}, {"suffix": "end"}):
        response = client.post("/api/generate", json={"model": "fake-chat", "prompt": "hi", **extra})
        assert response.status_code == 400 and next(iter(extra)) in response.json()["error"]


def test_unknown_model_is_404_in_ollamas_words(make_client: AppFactory) -> None:
    response = make_client(FakeEngine()).post("/api/chat", json={**CHAT, "model": "nope"})
    assert response.status_code == 404
    assert response.json()["error"].startswith("model 'nope' not found")


def test_mid_stream_error_is_a_last_line(make_client: AppFactory) -> None:
    client = make_client(FakeEngine([b"a", b"b", b"c"], fail_after=1))
    response = client.post("/api/chat", json=CHAT)
    assert response.status_code == 200
    chunks = lines(response.text)
    assert chunks[0]["message"]["content"] == "a" and "error" in chunks[-1]
    assert not any(c.get("done") for c in chunks)


def test_empty_messages_load_and_keep_alive_zero_unloads(make_client: AppFactory) -> None:
    client = make_client(FakeEngine())
    loaded = client.post("/api/chat", json={"model": "fake-chat", "messages": []}).json()
    assert loaded["done"] is True and loaded["done_reason"] == "load"
    assert [m["name"] for m in client.get("/api/ps").json()["models"]] == ["fake-chat:latest"]
    gone = client.post("/api/generate", json={"model": "fake-chat", "keep_alive": 0}).json()
    assert gone["done_reason"] == "unload"
    assert client.get("/api/ps").json()["models"] == []


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(None, None), (300, 300.0), ("5m", 300.0), ("1h30m", 5400.0), ("300ms", 0.3), ("10", 10.0),
     (-1, wire.FOREVER), ("-1m", wire.FOREVER), (0, 0.0), ("0s", 0.0)],
)  # fmt: skip
def test_keep_alive_reads_go_durations(value: Any, seconds: float | None) -> None:
    assert wire.keep_alive_seconds(value) == seconds


def test_keep_alive_refuses_nonsense() -> None:
    for value in ("", "5x", "m5", "1h 30m"):
        with pytest.raises(InvalidRequestError):
            wire.keep_alive_seconds(value)


def test_tags_show_and_version(make_client: AppFactory) -> None:
    client = make_client(FakeEngine(), ollama_version="0.9.1")
    assert client.get("/api/version").json() == {"version": "0.9.1"}
    assert client.head("/api/version").status_code == 200
    models = client.get("/api/tags").json()["models"]
    fake = next(m for m in models if m["name"] == "fake-chat:latest")
    assert fake["model"] == fake["name"] and len(fake["digest"]) == 64 and isinstance(fake["size"], int)
    assert set(fake["details"]) >= {"format", "family", "families", "parameter_size", "quantization_level"}
    shown = client.post("/api/show", json={"name": "fake-chat"}).json()
    assert shown["capabilities"][0] == "completion" and isinstance(shown["model_info"], dict)
    missing = client.post("/api/show", json={"model": "nope"})
    assert missing.status_code == 404 and "model 'nope' not found" in missing.json()["error"]


def test_root_says_ollama_is_running_unless_a_browser_asks(make_client: AppFactory) -> None:
    client = make_client(FakeEngine())
    plain = client.get("/")
    assert plain.status_code == 200 and plain.text == "Ollama is running"
    assert client.head("/").status_code == 200
    page = client.get("/", headers={"Accept": "text/html,application/xhtml+xml"})
    assert page.headers["content-type"].startswith("text/html") and "<html" in page.text.lower()


def test_create_and_blobs_explain_what_to_do_instead(make_client: AppFactory) -> None:
    client = make_client(FakeEngine())
    for response in (
        client.post("/api/create", json={"model": "x", "from": "fake-chat"}),
        client.post("/api/blobs/sha256:abc", content=b"x"),
    ):
        assert response.status_code == 400 and "LocalLab" in response.json()["error"]


def test_full_queue_is_a_503_before_the_stream_starts(make_client: AppFactory) -> None:
    client = make_client(FakeEngine(parallel=0, max_queue=0))
    response = client.post("/api/chat", json=CHAT)
    assert response.status_code == 503 and "busy" in response.json()["error"]
    assert response.headers["retry-after"]


def test_bad_body_is_a_400_naming_the_field(make_client: AppFactory) -> None:
    client = make_client(FakeEngine())
    response = client.post("/api/chat", json={"model": "fake-chat", "messages": [{"role": "robot"}]})
    assert response.status_code == 400 and "messages[0].role" in response.json()["error"]
    response = client.post("/api/show", json={})
    assert response.status_code == 400 and "model" in response.json()["error"]


def test_curl_dash_d_bodies_work_as_in_ollamas_docs_but_not_from_a_browser_page(
    make_client: AppFactory,
) -> None:
    engine = FakeEngine([b"ok"])
    client = make_client(engine)
    body = json.dumps({**CHAT, "stream": False})
    form = {"Content-Type": "application/x-www-form-urlencoded"}  # what `curl -d '{...}'` sends
    answer = client.post("/api/chat", content=body, headers=form)
    assert answer.status_code == 200, answer.text
    assert answer.json()["message"]["content"] == "ok"
    asked = len(engine.requests)
    cross_site = client.post("/api/chat", content=body, headers={**form, "Origin": "https://evil.example"})
    assert cross_site.status_code == 400 and "application/json" in cross_site.json()["error"]
    assert len(engine.requests) == asked  # refused before any route ran


def test_metrics_count_ollama_routes_by_their_own_label(make_client: AppFactory) -> None:
    client = make_client(FakeEngine())
    client.post("/api/chat", json=CHAT)
    client.get("/api/tags")
    text = client.get("/metrics").text
    assert 'route="/api/chat"' in text and 'route="/api/tags"' in text


def test_negative_seed_means_random(make_client: AppFactory) -> None:
    engine = FakeEngine()
    make_client(engine).post("/api/chat", json={**CHAT, "options": {"seed": -1}})
    assert engine.requests[-1].sampling.seed is None


@pytest.mark.parametrize(
    ("name", "local"),
    [("hf.co/owner/Repo-GGUF:Q4_K_M", "owner--Repo-GGUF--Q4_K_M.gguf"),
     ("hf.co/owner/repo", "owner--repo--latest.gguf"), ("huggingface.co/o/r:latest", "o--r--latest.gguf")],
)  # fmt: skip
def test_hub_names_map_onto_the_file_pull_writes_and_back(name: str, local: str) -> None:
    assert wire.model_id(name) == local
    assert wire.ollama_name(local) == name.replace("huggingface.co", "hf.co").split(":")[0] + (
        ":" + (name.split(":")[1] if ":" in name else "latest")
    )


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TOOL_ANSWER = [
    b"Let me check.\n<tool",
    b'_call>\n{"name": "get_weather", "arguments": {"city": "Pa',
    b'ris"}}\n</tool_call>',
]


def test_tool_calls_arrive_whole_in_one_chunk_with_object_arguments(make_client: AppFactory) -> None:
    client = make_client(FakeEngine(TOOL_ANSWER))
    chunks = lines(client.post("/api/chat", json={**CHAT, "tools": [WEATHER]}).text)
    with_calls = [c for c in chunks if c["message"].get("tool_calls")]
    assert len(with_calls) == 1 and not with_calls[0]["done"]
    (call,) = with_calls[0]["message"]["tool_calls"]
    assert call["function"] == {"name": "get_weather", "arguments": {"city": "Paris"}}
    text = "".join(c["message"]["content"] for c in chunks)
    assert text == "Let me check." and "<tool_call>" not in text
    assert chunks[-1]["done"] and chunks[-1]["done_reason"] == "stop"


def test_tool_calls_without_stream_are_in_the_message(make_client: AppFactory) -> None:
    client = make_client(FakeEngine(TOOL_ANSWER))
    data = client.post("/api/chat", json={**CHAT, "tools": [WEATHER], "stream": False}).json()
    assert data["message"]["content"] == "Let me check."
    assert data["message"]["tool_calls"][0]["function"]["arguments"] == {"city": "Paris"}


def test_tool_turns_reach_the_prompt(make_client: AppFactory) -> None:
    engine = FakeEngine([b"It is sunny."])
    client = make_client(engine)
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": "sunny, 21 C", "tool_name": "get_weather"},
    ]  # fmt: skip
    data = client.post(
        "/api/chat", json={"model": "fake-chat", "messages": messages, "tools": [WEATHER], "stream": False}
    ).json()
    assert data["message"]["content"] == "It is sunny."
    assert '"city": "Paris"' in engine.prompts[-1] and "sunny, 21 C" in engine.prompts[-1]
