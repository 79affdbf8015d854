"""Helpers for tests that run the real default model (SmolLM2-135M-Instruct through llama.cpp)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from locallab.config.catalog import load_catalog
from locallab.engines.base import Engine, GenerationChunk, GenerationRequest, SamplingParams

T = TypeVar("T")


def default_model_path() -> Path:
    path = load_catalog()["smollm2-135m-instruct"].source.locate()
    assert path is not None, "the default model is not installed: run `make install`"
    return path


def run(coro: Coroutine[Any, Any, T], timeout: float = 120.0) -> T:
    """Runs a coroutine with a deadline, so a broken engine fails the test instead of hanging it."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def collect(engine: Engine, prompt: str, **sampling: Any) -> tuple[list[GenerationChunk], str]:
    tokens = await engine.tokenize(prompt)
    params = SamplingParams(**{"max_tokens": 32, "do_sample": False, **sampling})
    chunks = [c async for c in engine.generate(GenerationRequest(tokens, params))]
    return chunks, "".join(c.text for c in chunks)
