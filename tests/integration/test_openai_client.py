"""The official `openai` package against LocalLab serving the real default model."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import jsonschema
import openai
import pytest

from tests.integration.conftest import Server

pytestmark = pytest.mark.integration

MODEL = "smollm2-135m-instruct"
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


def test_chat_completion(oai: openai.OpenAI) -> None:
    r = oai.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        temperature=0,
        extra_body={"repetition_penalty": 1.1},  # LocalLab's extension; OpenAI's API has no such field
    )
    assert "Paris" in (r.choices[0].message.content or "")
    assert r.choices[0].finish_reason == "stop"
    assert r.usage is not None and r.usage.completion_tokens > 0


def test_stream_with_usage(oai: openai.OpenAI) -> None:
    stream = oai.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Count from 1 to 5."}],
        stream=True,
        stream_options={"include_usage": True},
        max_tokens=20,
        temperature=0,
    )
    parts, usage = [], None
    for chunk in stream:
        if chunk.choices:
            parts.append(chunk.choices[0].delta.content or "")
        if chunk.usage:
            usage = chunk.usage
    assert usage is not None and usage.completion_tokens == 20
    assert "1" in "".join(parts) and len(parts) > 10


def test_completion_with_logprobs(oai: openai.OpenAI) -> None:
    r = oai.completions.create(
        model=MODEL, prompt="The capital of France is", max_tokens=4, temperature=0, logprobs=2
    )
    choice = r.choices[0]
    assert choice.text.startswith(" Paris")
    assert choice.logprobs is not None and choice.logprobs.tokens is not None
    assert "".join(choice.logprobs.tokens) == choice.text
    assert all(lp is not None and lp <= 0 for lp in choice.logprobs.token_logprobs or [])


def test_errors_are_typed_exceptions(oai: openai.OpenAI, start_server: Callable[..., Server]) -> None:
    with pytest.raises(openai.NotFoundError):
        oai.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError) as bad:
        oai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], n=3)
    assert "n=1" in str(bad.value)
    limited = start_server(LOCALLAB_RATE_LIMIT_BURST="1")
    with openai.OpenAI(base_url=f"{limited.url}/v1", api_key="unused", max_retries=0) as client:
        client.models.list()
        with pytest.raises(openai.RateLimitError):
            client.models.list()


def test_json_schema_output_validates_every_time_it_finishes(server: Server) -> None:
    # The grammar makes every finished answer valid; a sampled name can still run on into max_tokens
    # (finish_reason "length", cut mid-string), as with OpenAI's strict mode.
    client = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "person", "schema": PERSON, "strict": True},
    }

    async def one(i: int) -> tuple[str, str]:
        r = await client.chat.completions.create(
            model=MODEL,
            messages=[
                {"role": "system", "content": "You reply with JSON only."},
                {
                    "role": "user",
                    "content": f"Give me person number {i} as JSON: their first name and their age.",
                },
            ],
            response_format=response_format,  # type: ignore[arg-type]
            temperature=0.7,
            seed=i,
            max_tokens=100,
        )
        return r.choices[0].message.content or "", r.choices[0].finish_reason

    async def all_of_them() -> list[tuple[str, str]]:
        try:
            return list(await asyncio.gather(*(one(i) for i in range(20))))
        finally:
            await client.close()

    answers = asyncio.run(all_of_them())
    finished = [answer for answer, reason in answers if reason == "stop"]
    assert all(reason in ("stop", "length") for _, reason in answers)
    assert len(finished) >= 15, answers
    for answer in finished:
        jsonschema.validate(json.loads(answer), PERSON)


def test_json_object_mode_gives_json(oai: openai.OpenAI) -> None:
    r = oai.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "system", "content": "You reply with JSON only."},
            {"role": "user", "content": "Give me two fruits as JSON."},
        ],
        response_format={"type": "json_object"},
        temperature=0,
        max_tokens=200,
    )
    assert r.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(r.choices[0].message.content or ""), dict | list)


def test_models(oai: openai.OpenAI) -> None:
    # the installed catalog models: the two chat models and the packaged embedding model
    assert [m.id for m in oai.models.list().data] == [MODEL, "gemma3-270m", "all-minilm-l6-v2"]
    assert oai.models.retrieve(MODEL).id == MODEL
