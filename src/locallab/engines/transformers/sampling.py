"""Choosing each next token from a row of logits, per sequence, with llama.cpp's semantics: penalties
over the last `penalty_last_n` tokens (64 unless asked; the end of the prompt included), then greedy or
temperature/top-k/top-p/min-p."""

from __future__ import annotations

import random
from collections import deque

import torch

from locallab.engines.base import SamplingParams


class RowSampler:
    def __init__(self, params: SamplingParams, prompt_tokens: list[int], device: torch.device) -> None:
        self.params = params
        last_n = params.penalty_window(len(prompt_tokens))
        self._recent: deque[int] = deque(prompt_tokens[-last_n:] if last_n else (), maxlen=last_n)
        self._penalised = (
            params.repetition_penalty != 1.0 or params.presence_penalty != 0 or params.frequency_penalty != 0
        )
        self._generator: torch.Generator | None = None
        if not params.greedy:
            self._generator = torch.Generator(device=device)
            seed = params.seed if params.seed is not None else random.getrandbits(63)
            self._generator.manual_seed(seed & 0x7FFF_FFFF_FFFF_FFFF)

    def accept(self, token: int) -> None:
        self._recent.append(token)

    def sample(self, logits: torch.Tensor) -> int:
        """`logits`: one float32 row over the vocabulary (modified in place)."""
        params = self.params
        if self._penalised and self._recent:
            self._penalise(logits)
        if self._generator is None:
            return int(torch.argmax(logits).item())
        logits = logits / max(params.temperature, 1e-5)
        if 0 < params.top_k < logits.shape[-1]:
            kth = torch.topk(logits, params.top_k).values[-1]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if params.top_p < 1.0:
            ordered, order = torch.sort(logits, descending=True)
            cumulative = torch.softmax(ordered, dim=-1).cumsum(dim=-1)
            drop = cumulative - torch.softmax(ordered, dim=-1) > params.top_p  # keeps the token crossing p
            logits = logits.scatter(0, order[drop], float("-inf"))
        probs = torch.softmax(logits, dim=-1)
        if params.min_p > 0.0:  # after top-k and top-p, as llama.cpp orders them
            probs = probs.masked_fill(probs < params.min_p * probs.max(), 0.0)
        return int(torch.multinomial(probs, 1, generator=self._generator).item())

    def _penalise(self, logits: torch.Tensor) -> None:
        params = self.params
        counts: dict[int, int] = {}
        for token in self._recent:
            counts[token] = counts.get(token, 0) + 1
        ids = torch.tensor(list(counts), device=logits.device)
        values = logits[ids]
        if params.repetition_penalty != 1.0:
            values = torch.where(
                values > 0, values / params.repetition_penalty, values * params.repetition_penalty
            )
        if params.frequency_penalty or params.presence_penalty:
            n = torch.tensor(list(counts.values()), device=logits.device, dtype=values.dtype)
            values = values - n * params.frequency_penalty - params.presence_penalty
        logits[ids] = values
