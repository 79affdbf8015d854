"""Choosing tokens on llama.cpp: a sampler chain per sequence, grammars (JSON, tool calls) and
log-probabilities."""

from __future__ import annotations

import ctypes
from typing import Any

import llama_cpp
import numpy as np
from llama_cpp.llama_grammar import JSON_GBNF

from locallab.engines.base import SamplingParams, TokenLogprob
from locallab.engines.llamacpp.grammar import calls_grammar, schema_grammar
from locallab.errors import EngineError, InvalidRequestError


def grammar_for(params: SamplingParams) -> str | None:
    """GBNF for a JSON output constraint or tool calls, or None. Schemas were checked by
    `check_json_schema` (and a request's tools by the tools service)."""
    try:
        if params.call_grammar is not None:
            return calls_grammar(params.call_grammar)
        if params.json_schema is not None:
            return schema_grammar(params.json_schema)
    except (ValueError, KeyError, AssertionError, TypeError, RecursionError) as exc:
        raise InvalidRequestError(f"schema: cannot turn this JSON schema into a grammar: {exc}") from exc
    return JSON_GBNF if params.json_output else None


def _grammar_sampler(vocab: Any, grammar: str, triggers: tuple[str, ...]) -> Any:
    """llama.cpp's grammar sampler; lazy (idle until a trigger pattern matches the output) with triggers."""
    if not triggers:
        return llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
    patterns = (ctypes.c_char_p * len(triggers))(*(t.encode() for t in triggers))
    return llama_cpp.llama_sampler_init_grammar_lazy_patterns(
        vocab, grammar.encode(), b"root", patterns, len(triggers), None, 0
    )


class SequenceSampler:
    """A sequence's sampler chain, with its grammar kept apart as llama.cpp's own server does: the
    chain picks a token, and only when the grammar refuses it is the whole vocabulary filtered and the
    token picked again. Checking one token instead of ~50k each step makes constrained decoding about
    as fast as free decoding."""

    def __init__(self, chain: Any, grammar: Any, n_vocab: int) -> None:
        self.chain = chain
        self.grammar = grammar
        self.plain_greedy = False  # the chain is greedy alone: the likeliest token, read with numpy
        self._n_vocab = n_vocab
        self._data: Any = None
        self._view: Any = None
        self._one: Any = (llama_cpp.llama_token_data * 1)()
        self._one_array = llama_cpp.llama_token_data_array(self._one, 1, -1, False)

    def sample(self, ctx: Any, index: int) -> int:
        """The next token from the logits at batch position `index`; accepted by chain and grammar."""
        if self.grammar is None and not self.plain_greedy:
            return int(llama_cpp.llama_sampler_sample(self.chain, ctx, index))
        return self.sample_logits(logits_at(ctx, index, self._n_vocab))

    def sample_logits(self, logits: Any) -> int:
        """The next token from `logits` (one float32 per vocabulary entry): what `sample` would choose
        from the same logits in the context, accepted by chain and grammar alike."""
        if self.plain_greedy:
            return int(np.argmax(logits))  # the first of equal maxima, as llama.cpp's greedy sampler
        token = self._pick(logits, with_grammar=False)
        if self.grammar is None:
            llama_cpp.llama_sampler_accept(self.chain, token)
            return token
        self._one[0].id, self._one[0].logit, self._one[0].p = token, 1.0, 0.0
        self._one_array.size, self._one_array.selected, self._one_array.sorted = 1, -1, False
        llama_cpp.llama_sampler_apply(self.grammar, ctypes.byref(self._one_array))
        if not np.isfinite(self._one[0].logit):  # the grammar refuses it: choose among allowed tokens
            token = self._pick(logits, with_grammar=True)
        llama_cpp.llama_sampler_accept(self.grammar, token)
        llama_cpp.llama_sampler_accept(self.chain, token)
        return token

    def _pick(self, logits: Any, *, with_grammar: bool) -> int:
        if self._data is None:
            self._data = (llama_cpp.llama_token_data * self._n_vocab)()
            self._view = np.ctypeslib.as_array(self._data)  # fields id, logit, p
        self._view["id"] = np.arange(self._n_vocab, dtype=np.int32)  # samplers sort in place
        self._view["logit"] = logits
        self._view["p"] = 0.0
        array = llama_cpp.llama_token_data_array(self._data, self._n_vocab, -1, False)
        if with_grammar:
            llama_cpp.llama_sampler_apply(self.grammar, ctypes.byref(array))
        llama_cpp.llama_sampler_apply(self.chain, ctypes.byref(array))
        return int(self._data[array.selected].id)

    def free(self) -> None:
        for sampler in (self.chain, self.grammar):
            if sampler is not None:
                llama_cpp.llama_sampler_free(sampler)
        self.chain = self.grammar = None


def logits_at(ctx: Any, index: int, n_vocab: int) -> Any:
    """The logits at batch position `index` of the last decode (a view: valid until the next one)."""
    pointer = llama_cpp.llama_get_logits_ith(ctx, index)
    return np.ctypeslib.as_array(ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float)), shape=(n_vocab,))


def build_sampler(
    params: SamplingParams, vocab: Any, n_vocab: int, prompt_tokens: list[int], grammar: str | None
) -> SequenceSampler:
    """A sampler for one sequence: penalties, then greedy or top-k/top-p/temperature; and the grammar,
    applied as `SequenceSampler` describes."""
    constraint = None
    if grammar is not None:
        triggers = params.call_grammar.triggers if params.call_grammar is not None else ()
        constraint = _grammar_sampler(vocab, grammar, triggers)
        if not constraint:
            raise EngineError("llama.cpp rejected the grammar built for this request.")
    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    sampler = SequenceSampler(chain, constraint, n_vocab)
    last_n = params.penalty_window(len(prompt_tokens))
    penalised = params.repetition_penalty != 1.0 or params.presence_penalty or params.frequency_penalty
    if penalised and last_n > 0:
        penalties = llama_cpp.llama_sampler_init_penalties(
            n_vocab,
            last_n,
            params.repetition_penalty,
            params.frequency_penalty,
            params.presence_penalty,
        )
        # The penalty window starts with the end of the prompt, as llama.cpp's own server does.
        for token in prompt_tokens[-last_n:]:
            llama_cpp.llama_sampler_accept(penalties, token)
        llama_cpp.llama_sampler_chain_add(chain, penalties)
    if params.greedy:
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_greedy())
        sampler.plain_greedy = constraint is None and llama_cpp.llama_sampler_chain_n(chain) == 1
        return sampler
    if params.top_k > 0:
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_top_k(params.top_k))
    if params.top_p < 1.0:
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_top_p(params.top_p, 1))
    if params.min_p > 0.0:  # llama.cpp's own order: top-k, top-p, min-p, then temperature
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_min_p(params.min_p, 1))
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_temp(params.temperature))
    seed = llama_cpp.LLAMA_DEFAULT_SEED if params.seed is None else params.seed & 0xFFFFFFFF
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_dist(seed))
    return sampler


def token_logprob(logits: Any, token: int, text: bytes, top_n: int, piece: Any) -> TokenLogprob:
    """The model's log-probability of `token` (whose bytes are `text`) under `logits`, with the `top_n`
    likeliest. `piece(token)` gives another token's bytes. Probabilities are the model's own (before
    sampling).
    """
    shifted = logits - logits.max()
    log_z = float(np.log(np.exp(shifted).sum()))
    top: tuple[tuple[bytes, float], ...] = ()
    if top_n > 0:
        best = np.argpartition(-shifted, top_n)[:top_n]
        best = best[np.argsort(-shifted[best])]
        top = tuple((piece(int(t)), float(shifted[t]) - log_z) for t in best)
    return TokenLogprob(text, float(shifted[token]) - log_z, top)
