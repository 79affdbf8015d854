"""Embeddings: texts in, one L2-normalised vector per text out, from an embedding model the registry
loads on demand. Knows no API dialect: the OpenAI route (and others) translate to and from it.

Checks happen before any model work: the number of inputs, empty texts; then, once tokenized, each
input's length against the model's context (a 400 naming the input, unless `truncate`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from locallab.engines.base import Vectors, embeds
from locallab.errors import ContextOverflowError, EngineError, InvalidRequestError
from locallab.services.metrics import Metrics
from locallab.services.registry import ModelRegistry


@dataclass(frozen=True)
class Embeddings:
    model_id: str
    vectors: Vectors  # one row per input, in input order
    prompt_tokens: int


class EmbeddingService:
    def __init__(
        self, registry: ModelRegistry, metrics: Metrics | None = None, max_inputs: int = 2048
    ) -> None:
        self._registry = registry
        self._metrics = metrics
        self.max_inputs = max_inputs

    def embedding_models(self) -> list[str]:
        """Ids of the catalog's embedding models, installed ones first (for error messages)."""
        catalog = self._registry.catalog.values()
        found = [e for e in catalog if e.embedding]
        found.sort(key=lambda e: e.source.path_in(self._registry.models_dir) is None)
        return [e.id for e in found]

    def check_inputs(self, texts: Sequence[str]) -> None:
        if not texts:
            raise InvalidRequestError("input: give at least one text to embed.")
        if len(texts) > self.max_inputs:
            raise InvalidRequestError(
                f"input: {len(texts)} texts; one request may embed at most {self.max_inputs}. "
                "Split them over several requests."
            )
        empty = next((i for i, t in enumerate(texts) if not t), None)
        if empty is not None:
            where = "input" if len(texts) == 1 else f"input[{empty}]"
            raise InvalidRequestError(f"{where}: an empty string has no embedding; remove it or give text.")

    async def embed(
        self,
        model_id: str | None,
        texts: Sequence[str],
        *,
        truncate: bool = False,
        dimensions: int | None = None,
        shorten_any: bool = False,
        keep_alive: float | None = None,
    ) -> Embeddings:
        """`dimensions` shortens the vectors of models trained for it (the catalog's `matryoshka`);
        `shorten_any` shortens any model's, as Ollama does, at a cost in quality."""
        self.check_inputs(texts)
        model = await self._registry.acquire(model_id, keep_alive)
        engine = model.engine
        if not embeds(engine):
            suggestions = self.embedding_models()
            hint = f" such as '{suggestions[0]}'" if suggestions else ""
            raise InvalidRequestError(
                f"model: '{model.id}' generates text and makes no embeddings; use an embedding model{hint} "
                '(GET /models/available marks them with the capability "embeddings").'
            )
        if dimensions is not None and dimensions > engine.dimensions:
            raise InvalidRequestError(
                f"dimensions: '{model.id}' makes vectors of {engine.dimensions} dimensions and cannot "
                f"lengthen them to {dimensions}; send at most {engine.dimensions}, or leave dimensions out."
            )
        trained = model.entry is not None and model.entry.matryoshka
        if dimensions is not None and dimensions < engine.dimensions and not (trained or shorten_any):
            raise InvalidRequestError(
                f"dimensions: '{model.id}' was not trained to make shorter vectors (Matryoshka models are), "
                f"so it makes only vectors of {engine.dimensions}: send {engine.dimensions}, or leave "
                "dimensions out. Ollama's POST /api/embed shortens any model's vectors, losing some quality."
            )
        tokens = await engine.tokenize_many(list(texts))
        limit = engine.context_length
        if truncate:
            tokens = [engine.truncate(t, limit) for t in tokens]
        else:
            for i, t in enumerate(tokens):
                if len(t) > limit:
                    raise ContextOverflowError(
                        f"input[{i}]: {len(t)} tokens, more than the {limit} that '{model.id}' reads. "
                        "Shorten it, or send truncate: true to embed its first tokens only."
                    )
        vectors = await engine.embed(tokens)
        if not np.isfinite(vectors).all():  # JSON has no NaN; a broken model file must not answer garbage
            raise EngineError(f"'{model.id}' produced non-finite values; its file may be corrupt.")
        if dimensions is not None and dimensions < vectors.shape[1]:
            vectors = shorten(vectors, dimensions)
        prompt_tokens = sum(len(t) for t in tokens)
        if self._metrics is not None:
            self._metrics.embedding_requests.inc()
            self._metrics.embedding_inputs.inc(len(tokens))
            self._metrics.embedding_tokens.inc(prompt_tokens)
        return Embeddings(model.id, vectors, prompt_tokens)


def shorten(vectors: Vectors, dimensions: int) -> Vectors:
    """The first `dimensions` values of each vector, L2-normalised again (what Ollama and OpenAI's
    `dimensions` do). Models trained for it (Matryoshka) keep most of their quality; others lose some."""
    head = vectors[:, :dimensions]
    norms = np.linalg.norm(head, axis=1, keepdims=True)
    shortened: Vectors = (head / np.maximum(norms, 1e-12)).astype(np.float32)
    return shortened
