"""Two real models at once: SmolLM2 (the default, a chat model) and Gemma 3 270M (a base model)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import poll
from tests.integration.conftest import Server
from tests.real_model import default_model_path

pytestmark = pytest.mark.integration

GEMMA = "gemma3-270m"
SMOL = "smollm2-135m-instruct"


def test_both_models_are_listed_and_answer_side_by_side(start_server: Callable[..., Server]) -> None:
    server = start_server(LOCALLAB_RATE_LIMIT_PER_MINUTE="0")
    listed = {m["id"]: m for m in httpx.get(f"{server.url}/models/available").json()["models"]}
    assert listed[GEMMA]["installed"] and listed[SMOL]["installed"] and not listed[GEMMA]["is_loaded"]

    async def both() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
            chat = {
                "messages": [{"role": "user", "content": "What is the capital of France?"}],
                "do_sample": False,
            }
            completion = {
                "prompt": "The capital of France is",
                "model_id": GEMMA,
                "max_length": 12,
                "do_sample": False,
            }
            return list(
                await asyncio.gather(
                    client.post("/chat", json={**chat, "model_id": SMOL}),
                    client.post("/chat", json={**chat, "model_id": GEMMA, "max_length": 12}),
                    client.post("/generate", json=completion),
                )
            )

    smol, gemma_chat, gemma = asyncio.run(both())
    assert smol.status_code == 200 and "Paris" in smol.json()["choices"][0]["message"]["content"]
    # Gemma's file has no chat template; the catalog declares Gemma's turn format, so it chats too
    assert gemma_chat.status_code == 200 and gemma_chat.json()["model"] == GEMMA
    assert gemma_chat.json()["usage"]["completion_tokens"] > 0
    assert gemma.status_code == 200 and gemma.json()["model"] == GEMMA
    assert gemma.json()["usage"]["completion_tokens"] > 0
    assert sorted(httpx.get(f"{server.url}/system/info").json()["loaded_models"]) == sorted([GEMMA, SMOL])


def test_keep_alive_unloads_the_idle_model_and_a_corrupt_load_changes_nothing(
    start_server: Callable[..., Server], tmp_path: Path
) -> None:
    server = start_server(LOCALLAB_RATE_LIMIT_PER_MINUTE="0", LOCALLAB_KEEP_ALIVE="8")
    body = {"prompt": "Once upon a time", "model_id": GEMMA, "max_length": 4}
    assert httpx.post(f"{server.url}/generate", json=body, timeout=120).status_code == 200
    broken = tmp_path / "broken.gguf"
    with default_model_path().open("rb") as src:
        broken.write_bytes(src.read(300_000))
    r = httpx.post(f"{server.url}/models/load", json={"model_id": str(broken)}, timeout=60)
    assert r.status_code == 400 and "broken.gguf is not a valid GGUF" in r.json()["detail"]
    assert sorted(httpx.get(f"{server.url}/system/info").json()["loaded_models"]) == sorted([GEMMA, SMOL])

    def loaded() -> list[str]:
        return list(httpx.get(f"{server.url}/system/info").json()["loaded_models"])

    assert poll(loaded, lambda models: models == [SMOL], timeout=30) == [SMOL]  # the default stays
    assert httpx.post(f"{server.url}/generate", json={"prompt": "Hi", "max_length": 3}).status_code == 200
