"""The llama.cpp embedding engine on the real all-MiniLM-L6-v2 (converted from its PyPI package):
vectors as exact as transformers', meaning, order, batching and concurrency."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import numpy as np
import pytest

from locallab.engines.llamacpp.embedding import LlamaCppEmbedder, load_llamacpp_embedder
from locallab.errors import EngineError, InvalidRequestError
from tests.embedding_model import converted_gguf, reference_vectors
from tests.real_model import run

pytestmark = pytest.mark.integration

SENTENCES = [
    "The cat sits on the mat.",
    "A man is playing a guitar on stage.",
    "Héllo Wörld, ÇA VA? Don't panic!",
    "Quantum computers use qubits instead of bits.",
    "東京は日本の首都です。",
    "e-mail me at someone@example.com (urgent!!!)",
    "a",
    "Embeddings map sentences to vectors; similar meaning, nearby vectors.",
]


@pytest.fixture(scope="module")
def embedder() -> Iterator[LlamaCppEmbedder]:
    engine = load_llamacpp_embedder(
        converted_gguf(), context_length=4096, threads=2, batch_tokens=1024, max_sequences=32
    )
    yield engine
    run(engine.close())


async def embed_texts(engine: LlamaCppEmbedder, texts: list[str]) -> np.ndarray:
    return await engine.embed(await engine.tokenize_many(texts))


def test_model_facts_come_from_the_gguf(embedder: LlamaCppEmbedder) -> None:
    assert embedder.dimensions == 384
    assert embedder.context_length == 512
    assert embedder.info.architecture == "bert"


def test_tokens_match_the_original_tokenizer(embedder: LlamaCppEmbedder) -> None:
    from tests.embedding_model import _reference_model

    tokenizer, _ = _reference_model()
    for text in SENTENCES:
        assert run(embedder.tokenize(text)) == tokenizer(text)["input_ids"]  # type: ignore[operator]


def test_vectors_agree_with_transformers(embedder: LlamaCppEmbedder) -> None:
    ours = run(embed_texts(embedder, SENTENCES))
    reference = reference_vectors(SENTENCES)
    cosines = (ours * reference).sum(axis=1)
    assert cosines.min() >= 0.999, cosines
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_a_paraphrase_is_closer_than_an_unrelated_sentence(embedder: LlamaCppEmbedder) -> None:
    query, paraphrase, unrelated = run(
        embed_texts(
            embedder,
            [
                "How do I bake bread at home?",
                "What is a recipe for homemade bread?",
                "The stock market fell.",
            ],
        )
    )
    assert float(query @ paraphrase) > float(query @ unrelated) + 0.3


def test_512_inputs_come_back_in_order(embedder: LlamaCppEmbedder) -> None:
    texts = [f"Sentence number {i} talks about item {i * 7 % 13}." for i in range(512)]
    together = run(embed_texts(embedder, texts))
    assert together.shape == (512, 384)
    for i in (0, 1, 255, 511):
        alone = run(embed_texts(embedder, [texts[i]]))[0]
        assert float(alone @ together[i]) > 0.9999


def test_two_workers_share_a_request_and_every_row_is_its_own(embedder: LlamaCppEmbedder) -> None:
    assert embedder.workers == 2  # threads=2: two one-thread contexts read passes side by side
    texts = [f"Row {i}: {SENTENCES[i % len(SENTENCES)]}" for i in range(200)]  # 7 passes of 32 at most
    vectors = run(embed_texts(embedder, texts))
    assert float((vectors * reference_vectors(texts)).sum(axis=1).min()) >= 0.999


def test_long_and_short_requests_tokenize_alike(embedder: LlamaCppEmbedder) -> None:
    # Short requests are tokenized on the event loop, long ones in a worker thread: same tokens.
    from locallab.engines.llamacpp.embedding import INLINE_TOKENIZE_CHARS

    many = SENTENCES * (INLINE_TOKENIZE_CHARS // sum(map(len, SENTENCES)) + 1)
    assert sum(map(len, many)) > INLINE_TOKENIZE_CHARS >= sum(map(len, SENTENCES))
    assert run(embedder.tokenize_many(many))[: len(SENTENCES)] == run(embedder.tokenize_many(SENTENCES))


def test_inputs_of_one_request_share_passes(embedder: LlamaCppEmbedder) -> None:
    before = embedder.passes
    run(embed_texts(embedder, [f"short text {i}" for i in range(32)]))
    assert embedder.passes - before == 1  # 32 inputs of 5 tokens fit one batch


def test_concurrent_requests_each_get_their_own_vectors(embedder: LlamaCppEmbedder) -> None:
    groups = [[f"request {r} text {i} about topic {r * i}" for i in range(r + 1)] for r in range(8)]

    async def all_at_once() -> list[np.ndarray]:
        return await asyncio.gather(*(embed_texts(embedder, g) for g in groups))

    results = run(all_at_once())
    every_text = [t for g in groups for t in g]
    alone = run(embed_texts(embedder, every_text))  # batch composition moves the last digits only
    row = 0
    for group, vectors in zip(groups, results, strict=True):
        assert vectors.shape == (len(group), 384)
        for vector in vectors:
            similarities = alone @ vector
            assert int(similarities.argmax()) == row and similarities[row] > 0.9999
            row += 1


def test_a_cancelled_request_leaves_the_queue_and_others_are_served(embedder: LlamaCppEmbedder) -> None:
    big = [f"cancelled input {i} about things" for i in range(2048)]  # 64 passes of 32 at least

    async def cancel_then_embed() -> tuple[int, int, np.ndarray]:
        tokens = await embedder.tokenize_many(big)
        start = embedder.passes
        task = asyncio.ensure_future(embedder.embed(tokens))
        while embedder.passes == start:  # wait until the engine is reading it
            await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        cancelled_at = embedder.passes
        vectors = await embed_texts(embedder, SENTENCES)
        return cancelled_at - start, embedder.passes - cancelled_at, vectors

    read_before, passes_after, vectors = run(cancel_then_embed())
    assert read_before < 64 and passes_after <= 3  # the pass running at the cancel, then ours
    assert float((vectors * reference_vectors(SENTENCES)).sum(axis=1).min()) >= 0.999


def test_truncation_keeps_the_closing_separator(embedder: LlamaCppEmbedder) -> None:
    tokens = run(embedder.tokenize("word " * 600))
    cut = embedder.truncate(tokens, 512)
    assert len(cut) == 512 and cut[0] == tokens[0] and cut[-1] == tokens[-1] == 102


def test_an_input_longer_than_the_context_is_refused(embedder: LlamaCppEmbedder) -> None:
    tokens = run(embedder.tokenize("word " * 600))
    with pytest.raises(InvalidRequestError, match=r"input\[0\]"):
        run(embedder.embed([tokens]))


def test_generation_is_refused(embedder: LlamaCppEmbedder) -> None:
    with pytest.raises(InvalidRequestError, match="embedding model"):
        embedder.generate(None)  # type: ignore[arg-type]


def test_close_finishes_admitted_requests_then_refuses_new_ones() -> None:
    engine = load_llamacpp_embedder(
        converted_gguf(), context_length=512, threads=2, batch_tokens=512, max_sequences=16
    )

    async def scenario() -> list[np.ndarray]:
        tokens = await engine.tokenize_many([f"text number {i}" for i in range(40)])
        tasks = [asyncio.create_task(engine.embed(tokens)) for _ in range(4)]
        await asyncio.sleep(0)  # one turn of the loop: every task is admitted and waits for its vectors
        await engine.close()
        return await asyncio.gather(*tasks)

    results = run(scenario())
    assert [r.shape for r in results] == [(40, 384)] * 4
    with pytest.raises(EngineError, match="unloaded"):
        run(engine.embed([[101, 102]]))
