"""Hostile and oversized model files against a real server: clear 4xx/507 answers, and it keeps serving."""

from __future__ import annotations

import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import poll
from tests.integration.conftest import Server
from tests.real_model import default_model_path

pytestmark = pytest.mark.integration


def _forged_tensor_count(real: bytes) -> bytes:
    """The real model's header with its tensor count raised by one: llama.cpp would read past the table."""
    magic, version, tensors, keys = struct.unpack_from("<4sIQQ", real)
    return struct.pack("<4sIQQ", magic, version, tensors + 1, keys) + real[24:]


def test_evil_truncated_and_forged_files_get_400_and_the_server_keeps_serving(
    start_server: Callable[..., Server], tmp_path: Path
) -> None:
    server = start_server(LOCALLAB_RATE_LIMIT_PER_MINUTE="0", LOCALLAB_PARALLEL="2")
    real = default_model_path().read_bytes()
    cases = {
        "evil.gguf": (b"\x00" * 100, "evil.gguf is not a valid GGUF file"),
        "truncated.gguf": (real[: len(real) // 2], "the file may be truncated"),
        "forged.gguf": (_forged_tensor_count(real), "forged.gguf is not a valid GGUF file"),
    }
    with httpx.Client(base_url=server.url, timeout=60) as c:
        for name, (data, words) in cases.items():
            (tmp_path / name).write_bytes(data)
            r = c.post("/models/load", json={"model_id": str(tmp_path / name)})
            assert r.status_code == 400 and words in r.json()["detail"], (name, r.text)
            answer = c.post("/chat", json={"messages": [{"role": "user", "content": "Hi"}], "max_length": 3})
            assert answer.status_code == 200
        r = c.post("/models/load", json={"model_id": "/etc/hostname.gguf"})
        assert r.status_code == 400 and "outside the directories" in r.json()["detail"]
        assert c.get("/models/current").json()["id"] == "smollm2-135m-instruct"
        assert server.process.poll() is None


def test_a_model_that_does_not_fit_gets_507_with_the_numbers(
    start_server: Callable[..., Server], tmp_path: Path
) -> None:
    copy = tmp_path / "big-context.gguf"
    shutil.copyfile(default_model_path(), copy)
    # A KV pool of 65536 tokens (8 x 8192) for SmolLM2: 1.5 GB, more than the 1 GB this server may use
    server = Server(
        tmp_path,
        LOCALLAB_RATE_LIMIT_PER_MINUTE="0",
        LOCALLAB_PARALLEL="8",
        LOCALLAB_CONTEXT_LENGTH="8192",
        LOCALLAB_MEMORY_LIMIT_MB="1000",
        LOCALLAB_KV_TOKENS="65536",
        LOCALLAB_MODEL="",
    )
    try:
        poll(lambda: _health(server), lambda h: h is not None, timeout=30)
        r = httpx.post(f"{server.url}/models/load", json={"model_id": str(copy)}, timeout=60)
        assert r.status_code == 507, r.text
        detail = r.json()["detail"]
        assert "KV cache 1,510 MB for a pool of 65536 tokens in f16" in detail, detail
        assert "LOCALLAB_KV_TOKENS" in detail
        assert _health(server) == "none"
    finally:
        server.stop()


def _health(server: Server) -> str | None:
    try:
        return str(httpx.get(f"{server.url}/health", timeout=1).json()["model_status"])
    except httpx.HTTPError:
        return None
