"""Greedy answers of the transformers engine (SmolLM2 converted from the shipped GGUF) and the
llama.cpp engine (the GGUF itself) agree, and where they part, the model was at a near-tie.

The converted weights are the GGUF's Q4_1 weights dequantized to float32, so both engines hold the
same numbers; llama.cpp, however, multiplies Q4_1 weights with activations quantized to 8 bits. That
rounding can swap two candidates whose logits are within a fraction of a unit, and from that token on
the answers differ.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("transformers")

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from locallab.engines.llamacpp import LlamaCppEngine, load_llamacpp_engine
from locallab.engines.transformers import TransformersEngine, load_transformers_engine
from locallab.services.chat_template import render_chat
from tests.real_model import collect, default_model_path, run
from tests.transformers_models import smollm2_folder

pytestmark = pytest.mark.integration

PROMPTS = [
    "What is the capital of France?",
    "Name three colours.",
    "Write a haiku about the sea.",
    "Explain what a CPU does in one sentence.",
    "Translate 'thank you' to Japanese.",
    "Count from 1 to 10, one number per line.",
    "Give me a tip for learning Python.",
    "What is 12 times 7?",
]
TOKENS = 32
NEAR_TIE = 0.5  # logit units between the two candidates where the engines parted


@dataclass
class Answer:
    prompt_ids: list[int]
    transformers_ids: list[int]
    llamacpp_ids: list[int]

    @property
    def agreed(self) -> int:
        n = 0
        for a, b in zip(self.transformers_ids, self.llamacpp_ids, strict=False):
            if a != b:
                break
            n += 1
        return n


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return smollm2_folder(tmp_path_factory)


@pytest.fixture(scope="module")
def answers(folder: Path) -> Iterator[list[Answer]]:
    hf = load_transformers_engine(folder, context_length=1024, parallel=8, threads=2)
    cpp = load_llamacpp_engine(
        default_model_path(), context_length=1024, parallel=8, threads=2, batch_size=256
    )
    tokenizer = AutoTokenizer.from_pretrained(folder)

    async def answer(engine: TransformersEngine | LlamaCppEngine, prompt: str) -> list[int]:
        _, text = await collect(engine, prompt, max_tokens=TOKENS)
        return list(tokenizer(text, add_special_tokens=False).input_ids)

    async def all_answers() -> list[Answer]:
        assert hf.info.chat_template is not None
        results = []
        for text in PROMPTS:
            prompt = render_chat(hf.info.chat_template, [{"role": "user", "content": text}])
            ids = await hf.tokenize(prompt)
            assert ids == await cpp.tokenize(prompt)  # the same prompt tokens on both sides
            both = await asyncio.gather(answer(hf, prompt), answer(cpp, prompt))
            results.append(Answer(ids, *both))
        return results

    try:
        yield run(all_answers(), timeout=300)
    finally:
        run(hf.close())
        run(cpp.close())


def test_engines_agree_on_the_first_tokens_of_most_prompts(answers: list[Answer]) -> None:
    agreed = [a.agreed for a in answers]
    print("greedy tokens agreeing per prompt:", agreed)
    assert sum(n >= 8 for n in agreed) >= len(PROMPTS) // 2
    assert sum(n == TOKENS for n in agreed) >= 2


def test_where_the_engines_part_the_model_was_at_a_near_tie(answers: list[Answer], folder: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(folder)
    for answer in answers:
        n = answer.agreed
        if n >= min(len(answer.transformers_ids), len(answer.llamacpp_ids)):
            continue
        ids = torch.tensor([answer.prompt_ids + answer.transformers_ids[:n]])
        with torch.inference_mode():
            logits = model(ids).logits[0, -1]
        a, b = answer.transformers_ids[n], answer.llamacpp_ids[n]
        gap = abs(float(logits[a] - logits[b]))
        print(f"parted after {n} tokens: logit gap {gap:.3f}")
        assert gap < NEAR_TIE


def test_our_greedy_answer_is_transformers_own_generate(answers: list[Answer], folder: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(folder)
    for answer in answers[:3]:
        with torch.inference_mode():
            out = model.generate(torch.tensor([answer.prompt_ids]), max_new_tokens=TOKENS, do_sample=False)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        reference = tokenizer.decode(out[0, len(answer.prompt_ids) :], skip_special_tokens=True)
        assert tokenizer(reference, add_special_tokens=False).input_ids == answer.transformers_ids
