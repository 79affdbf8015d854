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


NEAR_TIE = 0.3  # nats; llama.cpp's kernels round differently for other batch sizes: ties this close can flip


def assert_same_greedy_text(expected: list[GenerationChunk], actual: list[GenerationChunk]) -> None:
    """Two greedy runs (with logprobs) chose the same tokens, up to a near tie.

    Greedy text is exact only for identical computations: a prompt prefilled in other chunks, or beside
    other sequences, or read from cells another request computed, gets logits that differ in the last
    bits (on this tiny model, up to ~0.2 nats), so the runs may part where two tokens are nearly tied.
    A wrong cache, a lost or doubled token parts them where the model was sure: that fails here.
    """
    first = [entry for chunk in expected for entry in chunk.logprobs]
    second = [entry for chunk in actual for entry in chunk.logprobs]
    assert first and second, "request logprobs in both runs"
    for index, (a, b) in enumerate(zip(first, second, strict=False)):
        if a.text == b.text:
            continue
        gap_a = a.logprob - dict(a.top).get(b.text, float("-inf"))
        gap_b = b.logprob - dict(b.top).get(a.text, float("-inf"))
        text = b"".join(e.text for e in first[:index]).decode(errors="replace")
        assert min(gap_a, gap_b) < NEAR_TIE, (
            f"the runs part after {text!r}: {a.text!r} vs {b.text!r}, "
            f"not a near tie ({gap_a:.3f}, {gap_b:.3f})"
        )
        return
