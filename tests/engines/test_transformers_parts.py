"""Parts of the transformers engine without a model: placement on CPU and CUDA machines (facts
mocked), sampling rules and streaming detokenization."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers")

import torch
from transformers import AutoTokenizer

from locallab.engines.base import SamplingParams
from locallab.engines.transformers import loading
from locallab.engines.transformers.detokenize import IncrementalDetokenizer
from locallab.engines.transformers.placement import MachineFacts, Placement, plan_placement
from locallab.engines.transformers.sampling import RowSampler
from locallab.errors import ModelLoadError
from tests.transformers_models import build_tiny_llama

GIB = 1 << 30
CPU_ONLY = MachineFacts(0, (), False, False, True)
ONE_GPU = MachineFacts(1, (80 * GIB,), True, True, True)


def test_cpu_machine_runs_float32_on_cpu() -> None:
    placement = plan_placement(CPU_ONLY, GIB, device="auto", quantize="none")
    assert placement == Placement("cpu", "float32", None, "none")


def test_gpu_machine_runs_bf16_on_the_gpu() -> None:
    placement = plan_placement(ONE_GPU, GIB, device="auto", quantize="none")
    assert (placement.device, placement.dtype, placement.device_map) == ("cuda:0", "bfloat16", None)
    assert placement.label == "BF16"


def test_gpu_without_bf16_uses_fp16() -> None:
    old_gpu = MachineFacts(1, (16 * GIB,), False, False, True)
    assert plan_placement(old_gpu, GIB, device="auto", quantize="none").dtype == "float16"


def test_model_larger_than_one_gpu_is_spread_with_device_map() -> None:
    two_gpus = MachineFacts(2, (24 * GIB, 24 * GIB), True, False, True)
    assert plan_placement(two_gpus, 30 * GIB, device="auto", quantize="none").device_map == "auto"
    assert plan_placement(two_gpus, 10 * GIB, device="auto", quantize="none").device_map is None


def test_device_cpu_keeps_a_gpu_machine_on_the_cpu() -> None:
    assert plan_placement(ONE_GPU, GIB, device="cpu", quantize="none").device == "cpu"


def test_device_cuda_without_a_gpu_is_a_load_error() -> None:
    with pytest.raises(ModelLoadError, match="no CUDA device"):
        plan_placement(CPU_ONLY, GIB, device="cuda", quantize="none")


def test_quantized_loading_needs_cuda_and_bitsandbytes() -> None:
    with pytest.raises(ModelLoadError, match="8bit loading needs a CUDA GPU and the bitsandbytes"):
        plan_placement(CPU_ONLY, GIB, device="auto", quantize="8bit")
    no_bnb = MachineFacts(1, (80 * GIB,), True, False, True)
    with pytest.raises(ModelLoadError, match="4bit loading needs the bitsandbytes package"):
        plan_placement(no_bnb, GIB, device="auto", quantize="4bit")
    placement = plan_placement(ONE_GPU, GIB, device="auto", quantize="4bit")
    assert (placement.quantize, placement.device_map, placement.label) == ("4bit", "auto", "NF4")


def test_machine_facts_read_torch_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda i: (40 * GIB + i, 80 * GIB))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    facts = loading.machine_facts()
    assert facts.cuda_devices == 2 and facts.gpu_free_bytes == (40 * GIB, 40 * GIB + 1)
    assert facts.bf16_supported


def test_cuda_placement_reaches_from_pretrained(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: dict[str, Any] = {}

    class Model:
        def eval(self) -> Model:
            return self

        def to(self, device: str) -> Model:
            seen["to"] = device
            return self

    def from_pretrained(folder: Path, **options: Any) -> Model:
        seen.update(options)
        return Model()

    monkeypatch.setattr(loading.AutoModelForCausalLM, "from_pretrained", from_pretrained)
    loading._load_weights(tmp_path, Placement("cuda:0", "bfloat16", None, "none"))
    assert seen["dtype"] is torch.bfloat16 and seen["to"] == "cuda:0"
    assert seen["trust_remote_code"] is False and seen["use_safetensors"] is True
    seen.clear()
    loading._load_weights(tmp_path, Placement("cuda:0", "float16", "auto", "none"))
    assert seen["device_map"] == "auto" and "to" not in seen


def _logits(best: int, n: int = 10) -> torch.Tensor:
    row = torch.zeros(n)
    row[best] = 5.0
    row[(best + 1) % n] = 4.0
    return row


def test_greedy_takes_the_likeliest_token() -> None:
    sampler = RowSampler(SamplingParams(max_tokens=1, do_sample=False), [], torch.device("cpu"))
    assert sampler.sample(_logits(3)) == 3


def test_repetition_and_presence_penalties_push_recent_tokens_down() -> None:
    for params in (
        SamplingParams(max_tokens=1, do_sample=False, repetition_penalty=2.0),
        SamplingParams(max_tokens=1, do_sample=False, presence_penalty=1.5),
        SamplingParams(max_tokens=1, do_sample=False, frequency_penalty=0.6),
    ):
        sampler = RowSampler(params, [3, 3], torch.device("cpu"))
        assert sampler.sample(_logits(3)) == 4, params


def test_seeded_sampling_repeats_and_top_k_one_is_greedy() -> None:
    def draws(seed: int, **options: Any) -> list[int]:
        params = SamplingParams(max_tokens=1, temperature=5.0, top_p=1.0, top_k=0, seed=seed, **options)
        sampler = RowSampler(params, [], torch.device("cpu"))
        return [sampler.sample(torch.zeros(50)) for _ in range(20)]

    assert draws(1) == draws(1)
    assert draws(1) != draws(2)
    greedy_like = RowSampler(SamplingParams(max_tokens=1, top_k=1, seed=3), [], torch.device("cpu"))
    assert {greedy_like.sample(_logits(7)) for _ in range(20)} == {7}
    narrow = RowSampler(SamplingParams(max_tokens=1, top_p=0.05, top_k=0, seed=3), [], torch.device("cpu"))
    assert {narrow.sample(_logits(7)) for _ in range(20)} == {7}


def test_min_p_keeps_only_tokens_near_the_likeliest() -> None:
    hot = {"temperature": 1.0, "top_p": 1.0, "top_k": 0, "seed": 3}
    wide = RowSampler(SamplingParams(max_tokens=1, **hot), [], torch.device("cpu"))
    assert len({wide.sample(_logits(7)) for _ in range(200)}) > 2
    # the runner-up is e^-1 (0.37) as likely as token 7: min_p 0.3 keeps both, 0.5 only 7
    two = RowSampler(SamplingParams(max_tokens=1, min_p=0.3, **hot), [], torch.device("cpu"))
    assert {two.sample(_logits(7)) for _ in range(200)} == {7, 8}
    one = RowSampler(SamplingParams(max_tokens=1, min_p=0.5, **hot), [], torch.device("cpu"))
    assert {one.sample(_logits(7)) for _ in range(50)} == {7}


def test_penalty_window_zero_turns_penalties_off_and_minus_one_sees_everything() -> None:
    penalised = {"max_tokens": 1, "do_sample": False, "repetition_penalty": 2.0}
    off = RowSampler(SamplingParams(**penalised, penalty_last_n=0), [3], torch.device("cpu"))
    assert off.sample(_logits(3)) == 3
    # token 3 long before the default window of 64, inside the whole-sequence one
    prompt = [3, *([9] * 100)]
    short = RowSampler(SamplingParams(**penalised), prompt, torch.device("cpu"))
    assert short.sample(_logits(3)) == 3
    whole = RowSampler(SamplingParams(**penalised, penalty_last_n=-1), prompt, torch.device("cpu"))
    assert whole.sample(_logits(3)) == 4


def test_streamed_text_holds_back_split_characters(tmp_path: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(build_tiny_llama(tmp_path / "tiny"))
    text = "Hello 日本語 ありがとう café!"
    ids = tokenizer(text, add_special_tokens=False).input_ids
    pieces = [tokenizer.decode([i]) for i in ids]
    assert any("\ufffd" in p for p in pieces)  # the premise: some tokens are parts of a character
    stream = IncrementalDetokenizer(lambda chunk: tokenizer.decode(list(chunk)))
    out = [stream.feed(i) for i in ids]
    assert "".join(out) == text
    assert not any("\ufffd" in piece for piece in out)
