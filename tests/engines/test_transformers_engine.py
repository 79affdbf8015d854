"""The transformers engine on a tiny random-weight Llama built in the test: loading, batching,
cancellation, limits and refusals. The behaviour shared with the other engines is in test_contract.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers")

import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer

from locallab.engines.base import GenerationRequest, SamplingParams
from locallab.engines.transformers import TransformersEngine, load_transformers_engine
from locallab.engines.transformers.loading import load_hf_model
from locallab.errors import EngineError, InvalidRequestError, ModelLoadError, ServerBusyError
from tests.real_model import collect, run
from tests.transformers_models import build_tiny_llama


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="module")
def engine(tiny_folder: Path) -> Iterator[TransformersEngine]:
    loaded = load_transformers_engine(tiny_folder, context_length=256, parallel=4, threads=2)
    yield loaded
    run(loaded.close())


PROMPTS = ["Hello, world!", "The quick brown fox jumps over", "Paris", "Count from one to ten: 1 2 3 4"]


def test_model_info_comes_from_the_folder(engine: TransformersEngine, tiny_folder: Path) -> None:
    info = engine.info
    with safe_open(str(tiny_folder / "model.safetensors"), "pt") as weights:
        stored = sum(math.prod(weights.get_slice(name).get_shape()) for name in weights.keys())
    assert info.architecture == "llama"
    assert info.parameters == stored
    assert info.context_length == 512 and engine.context_length == 256  # capped by the setting
    assert info.chat_template is not None and "<|im_start|>" in info.chat_template
    assert info.eos_token == "<|im_end|>"
    assert info.quantization == "F32" and info.metadata["device"] == "cpu"


def test_greedy_output_matches_transformers_generate(engine: TransformersEngine, tiny_folder: Path) -> None:
    """Our batched cache and sampler give what transformers' own generate() gives."""
    model = AutoModelForCausalLM.from_pretrained(tiny_folder)
    tokenizer = AutoTokenizer.from_pretrained(tiny_folder)
    for prompt in PROMPTS:
        ids = tokenizer(prompt, return_tensors="pt").input_ids
        with torch.inference_mode():
            out = model.generate(ids, max_new_tokens=20, do_sample=False, min_new_tokens=20)
        reference = tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
        _, text = run(collect(engine, prompt, max_tokens=20))
        assert text == reference.rstrip("\ufffd")  # a character cut off at the end is dropped


def test_sequences_batched_together_equal_each_alone(engine: TransformersEngine) -> None:
    alone = [run(collect(engine, p, max_tokens=24))[1] for p in PROMPTS]

    async def together() -> tuple[list[str], int]:
        most = 0

        async def watch() -> None:
            nonlocal most
            while True:
                most = max(most, engine.load.active)
                await asyncio.sleep(0.001)

        watcher = asyncio.ensure_future(watch())
        results = await asyncio.gather(*(collect(engine, p, max_tokens=24) for p in PROMPTS))
        watcher.cancel()
        return [text for _, text in results], most

    texts, most = run(together())
    assert texts == alone
    assert most >= 2  # they really ran in one batch


def test_newcomer_joining_a_running_batch_does_not_disturb_it(engine: TransformersEngine) -> None:
    long_alone = run(collect(engine, PROMPTS[1], max_tokens=60))[1]
    short_alone = run(collect(engine, PROMPTS[0], max_tokens=10))[1]

    async def staggered() -> tuple[str, str]:
        tokens = await engine.tokenize(PROMPTS[1])
        stream = engine.generate(GenerationRequest(tokens, SamplingParams(max_tokens=60, do_sample=False)))
        parts = [(await anext(stream)).text for _ in range(5)]  # the first is well under way
        short = await collect(engine, PROMPTS[0], max_tokens=10)  # joins, runs, and leaves the batch
        parts += [chunk.text async for chunk in stream]
        return "".join(parts), short[1]

    long_text, short_text = run(staggered())
    assert long_text == long_alone
    assert short_text == short_alone


def test_abandoned_streams_free_their_places(engine: TransformersEngine) -> None:
    async def abandon_then_use() -> list[str]:
        tokens = await engine.tokenize(PROMPTS[0])
        for _ in range(6):  # more abandoned streams than slots
            stream = engine.generate(GenerationRequest(tokens, SamplingParams(max_tokens=200)))
            async with contextlib.aclosing(stream):
                await anext(stream)
        results = await asyncio.gather(*(collect(engine, p, max_tokens=4) for p in PROMPTS))
        for _ in range(500):
            if engine.load.active + engine.load.queued == 0:
                break
            await asyncio.sleep(0.01)
        assert engine.load.active + engine.load.queued == 0
        return [text for _, text in results]

    assert all(run(abandon_then_use(), timeout=60))


def test_requests_past_slots_and_queue_are_refused(tiny_folder: Path) -> None:
    small = load_transformers_engine(tiny_folder, context_length=256, parallel=1, threads=1, max_queue=1)
    request = GenerationRequest(run(small.tokenize("Hello")), SamplingParams(max_tokens=50))

    async def overfill() -> None:
        first, second = small.generate(request), small.generate(request)
        with pytest.raises(ServerBusyError, match="busy"):
            small.generate(request)
        await first.aclose()
        await second.aclose()
        for _ in range(500):
            if small.load.active + small.load.queued == 0:
                break
            await asyncio.sleep(0.01)
        assert [c async for c in small.generate(request)]

    try:
        run(overfill(), timeout=60)
    finally:
        run(small.close())


@pytest.mark.parametrize(
    ("field", "sampling"),
    [
        ("response_format", {"json_schema": {"type": "object"}}),
        ("format", {"json_output": True}),
        ("logprobs", {"logprobs": 2}),
    ],
)
def test_unsupported_fields_are_refused_by_name(
    engine: TransformersEngine, field: str, sampling: dict[str, Any]
) -> None:
    async def ask() -> None:
        engine.generate(GenerationRequest([1, 2, 3], SamplingParams(max_tokens=4, **sampling)))

    with pytest.raises(InvalidRequestError, match=field):
        run(ask())
    assert engine.load.active + engine.load.queued == 0


def test_context_end_finishes_with_length(tiny_folder: Path) -> None:
    short = load_transformers_engine(tiny_folder, context_length=16, parallel=1, threads=1)
    try:
        prompt = "Hello, world! Count"
        tokens = run(short.tokenize(prompt))
        chunks, _ = run(collect(short, prompt, max_tokens=100))
        assert chunks[-1].finish_reason == "length"
        assert len(tokens) + chunks[-1].completion_tokens <= 16
    finally:
        run(short.close())


def test_pickled_weights_are_refused(tiny_folder: Path, tmp_path: Path) -> None:
    folder = tmp_path / "pickled"
    shutil.copytree(tiny_folder, folder)
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match=r"pytorch_model\.bin.*safetensors"):
        load_transformers_engine(folder, context_length=64, parallel=1, threads=1)


def test_remote_code_in_a_model_folder_never_runs(tiny_folder: Path, tmp_path: Path) -> None:
    folder = tmp_path / "remote-code"
    shutil.copytree(tiny_folder, folder)
    marker = tmp_path / "ran"
    (folder / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    config = json.loads((folder / "config.json").read_text())
    config.update(
        model_type="evil-model",
        auto_map={"AutoConfig": "modeling_evil.EvilConfig", "AutoModelForCausalLM": "modeling_evil.Evil"},
    )
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError):
        load_transformers_engine(folder, context_length=64, parallel=1, threads=1)
    assert not marker.exists()


def test_a_prompt_the_model_cannot_read_fails_only_that_request(
    tiny_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from locallab.engines.transformers.batch import KVBatch

    engine = load_transformers_engine(tiny_folder, context_length=64, parallel=2, threads=1)
    real_prefill = KVBatch.prefill

    def prefill(self: KVBatch, tokens: list[int]) -> Any:
        if tokens == [7, 7, 7]:
            raise RuntimeError("shape mismatch")
        return real_prefill(self, tokens)

    monkeypatch.setattr(KVBatch, "prefill", prefill)

    async def two() -> tuple[BaseException | None, str]:
        bad = engine.generate(GenerationRequest([7, 7, 7], SamplingParams(max_tokens=4)))
        error: BaseException | None = None
        try:
            [c async for c in bad]
        except EngineError as exc:
            error = exc
        return error, (await collect(engine, "Hello", max_tokens=4))[1]

    try:
        error, text = run(two(), timeout=30)
        assert error is not None and "failed to read the prompt" in str(error)
        assert text
    finally:
        run(engine.close())


def test_an_engine_crash_reaches_every_waiting_client(
    tiny_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from locallab.engines.transformers.batch import KVBatch

    def broken(self: KVBatch, tokens: list[int]) -> Any:
        raise TypeError("a bug")

    model = load_hf_model(tiny_folder, context_length=64, threads=1)
    monkeypatch.setattr(KVBatch, "prefill", broken)
    crashed = TransformersEngine(model, parallel=2, max_queue=4)

    async def ask() -> list[str]:
        streams = [
            crashed.generate(GenerationRequest([5, 6], SamplingParams(max_tokens=4))) for _ in range(3)
        ]
        errors = []
        for stream in streams:
            with pytest.raises(EngineError, match="stopped") as info:
                [c async for c in stream]
            errors.append(str(info.value))
        return errors

    try:
        assert len(run(ask(), timeout=30)) == 3
    finally:
        run(crashed.close())
