"""Choosing tokens on llama.cpp: a sampler chain per sequence, JSON grammars and log-probabilities."""

from __future__ import annotations

import ctypes
import json
from typing import Any

import llama_cpp
import numpy as np
from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

from locallab.engines.base import SamplingParams, TokenLogprob
from locallab.errors import EngineError, InvalidRequestError

PENALTY_LAST_N = 64
# llama-cpp-python's converter lets raw control characters into strings, which JSON forbids; this is
# the string-character rule of llama.cpp's own converter.
_LOOSE_CHAR = 'char ::= [^"\\\\] |'
_JSON_CHAR = 'char ::= [^"\\\\\\x7F\\x00-\\x1F] |'


def grammar_for(params: SamplingParams) -> str | None:
    """GBNF for a JSON output constraint, or None. The schema was checked by `check_json_schema`."""
    if params.json_schema is not None:
        try:
            grammar: str = json_schema_to_gbnf(json.dumps(params.json_schema))
            return grammar.replace(_LOOSE_CHAR, _JSON_CHAR)
        except (ValueError, KeyError, AssertionError, TypeError, RecursionError) as exc:
            raise InvalidRequestError(f"schema: cannot turn this JSON schema into a grammar: {exc}") from exc
    return JSON_GBNF if params.json_output else None


def build_sampler(
    params: SamplingParams, vocab: Any, n_vocab: int, prompt_tokens: list[int], grammar: str | None
) -> Any:
    """A sampler chain for one sequence: grammar, penalties, then greedy or top-k/top-p/temperature."""
    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    if grammar is not None:
        # First in the chain, so every later step only ever sees tokens the grammar allows.
        constraint = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
        if not constraint:
            llama_cpp.llama_sampler_free(chain)
            raise EngineError("llama.cpp rejected the JSON grammar built for this request.")
        llama_cpp.llama_sampler_chain_add(chain, constraint)
    if params.repetition_penalty != 1.0 or params.presence_penalty or params.frequency_penalty:
        penalties = llama_cpp.llama_sampler_init_penalties(
            n_vocab,
            PENALTY_LAST_N,
            params.repetition_penalty,
            params.frequency_penalty,
            params.presence_penalty,
        )
        # The penalty window starts with the end of the prompt, as llama.cpp's own server does.
        for token in prompt_tokens[-PENALTY_LAST_N:]:
            llama_cpp.llama_sampler_accept(penalties, token)
        llama_cpp.llama_sampler_chain_add(chain, penalties)
    if params.greedy:
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_greedy())
        return chain
    if params.top_k > 0:
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_top_k(params.top_k))
    if params.top_p < 1.0:
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_top_p(params.top_p, 1))
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_temp(params.temperature))
    seed = llama_cpp.LLAMA_DEFAULT_SEED if params.seed is None else params.seed & 0xFFFFFFFF
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_dist(seed))
    return chain


def token_logprob(
    ctx: Any, index: int, n_vocab: int, token: int, text: bytes, top_n: int, piece: Any
) -> TokenLogprob:
    """The model's log-probability of `token` (whose bytes are `text`) at batch position `index`, with
    the `top_n` likeliest. `piece(token)` gives another token's bytes. Probabilities are the model's own
    (before sampling).
    """
    pointer = llama_cpp.llama_get_logits_ith(ctx, index)
    logits = np.ctypeslib.as_array(ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float)), shape=(n_vocab,))
    shifted = logits - logits.max()
    log_z = float(np.log(np.exp(shifted).sum()))
    top: tuple[tuple[bytes, float], ...] = ()
    if top_n > 0:
        best = np.argpartition(-shifted, top_n)[:top_n]
        best = best[np.argsort(-shifted[best])]
        top = tuple((piece(int(t)), float(shifted[t]) - log_z) for t in best)
    return TokenLogprob(text, float(shifted[token]) - log_z, top)
