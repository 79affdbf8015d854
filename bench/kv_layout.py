"""Does a request's answer depend on where its cells sit in llama.cpp's unified KV pool?

Decodes one chat prompt greedily in a fresh pool, then again with other sequences' cells placed
around it, and compares the logits of every step bit for bit (why LOCALLAB_DETERMINISTIC exists; see
docs/features/performance.md). Flash attention on (llama.cpp's default on the CPU) or off; keys and
values as f16, or values in another type (which sends llama.cpp to its cell-by-cell kernel).

    .venv/bin/python bench/kv_layout.py --flash-attn 1 --type-v f16
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.real_model import default_model_path  # noqa: E402

from locallab.engines.llamacpp.native import native_log, tokenize  # noqa: E402

TYPES = {"f16": llama_cpp.GGML_TYPE_F16, "q8_0": llama_cpp.GGML_TYPE_Q8_0, "bf16": 30}
PROMPTS = (
    "Write a short poem about the sea.",
    "Explain in detail how a steam engine works, why it mattered for the industrial revolution, what "
    "its efficiency was, and how it was replaced by other engines over the following century.",
)
STEPS = 12


class Pool:
    def __init__(self, flash_attn: int, type_v: str, threads: int) -> None:
        native_log.install()
        params = llama_cpp.llama_model_default_params()
        self.model = llama_cpp.llama_model_load_from_file(str(default_model_path()).encode(), params)
        cparams = llama_cpp.llama_context_default_params()
        cparams.n_ctx, cparams.n_batch, cparams.n_ubatch, cparams.n_seq_max = 2048, 512, 512, 8
        cparams.n_threads = cparams.n_threads_batch = threads
        cparams.kv_unified = True
        cparams.flash_attn_type = flash_attn
        cparams.type_k, cparams.type_v = llama_cpp.GGML_TYPE_F16, TYPES[type_v]
        self.ctx = llama_cpp.llama_init_from_model(self.model, cparams)
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.batch: Any = llama_cpp.llama_batch_init(512, 0, 1)

    def decode(self, items: list[tuple[int, int, int, bool]]) -> None:
        """(token, position, sequence id, wants logits) each."""
        for i, (token, pos, seq, logits) in enumerate(items):
            self.batch.token[i], self.batch.pos[i], self.batch.logits[i] = token, pos, logits
            self.batch.n_seq_id[i] = 1
            self.batch.seq_id[i][0] = seq
        self.batch.n_tokens = len(items)
        if llama_cpp.llama_decode(self.ctx, self.batch) != 0:
            raise RuntimeError("llama_decode failed")

    def logits(self, index: int) -> np.ndarray[Any, Any]:
        data = llama_cpp.llama_get_logits_ith(self.ctx, index)
        return np.ctypeslib.as_array(data, shape=(self.n_vocab,)).copy()

    def generate(self, seq: int, tokens: list[int], start: int = 0, steps: int = STEPS) -> list[Any]:
        """Reads tokens[start:] (the cells before `start` are already the sequence's), then greedy steps;
        the logits of every step."""
        rest = tokens[start:]
        for at in range(0, len(rest), 512):  # the batch holds 512 tokens
            chunk = rest[at : at + 512]
            self.decode([(t, start + at + i, seq, at + i == len(rest) - 1) for i, t in enumerate(chunk)])
        out = [self.logits(len(chunk) - 1)]
        for pos in range(len(tokens), len(tokens) + steps):
            self.decode([(int(out[-1].argmax()), pos, seq, True)])
            out.append(self.logits(0))
        return out

    def fill(self, seq: int, n: int) -> None:
        self.generate(seq, [100 + i % 500 for i in range(n)], steps=0)

    def clear(self) -> None:
        llama_cpp.llama_memory_clear(self.memory, True)


def compare(name: str, reference: list[Any], other: list[Any]) -> None:
    same = [bool(np.array_equal(a, b)) for a, b in zip(reference, other, strict=True)]
    first = next((i for i, s in enumerate(same) if not s), None)
    gap = 0.0 if first is None else float(np.abs(reference[first] - other[first]).max())
    where = "-" if first is None else str(first)
    print(f"  {name:52s} {sum(same):2d}/{len(same)} steps identical; first differing step {where}, "
          f"max |Δlogit| there {gap:.2f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--flash-attn", type=int, default=1, choices=(0, 1))
    parser.add_argument("--type-v", default="f16", choices=sorted(TYPES))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    pool = Pool(args.flash_attn, args.type_v, args.threads)
    for text in PROMPTS:
        chat = f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"
        prompt = tokenize(pool.vocab, chat, add_special=True)
        print(f"flash_attn={args.flash_attn} K=f16 V={args.type_v}, prompt of {len(prompt)} tokens:")
        pool.clear()
        reference = pool.generate(0, prompt)
        pool.clear()
        compare("again in a fresh pool", reference, pool.generate(0, prompt))
        for n in (100, 240, 300, 600):
            pool.clear()
            pool.fill(1, n)
            compare(f"after {n} cells of another sequence", reference, pool.generate(0, prompt))
        pool.clear()
        pool.generate(0, prompt, steps=0)
        llama_cpp.llama_memory_seq_cp(pool.memory, 0, 2, 0, len(prompt) - 1)
        compare(
            "shared prefix, last prompt token recomputed",
            reference,
            pool.generate(2, prompt, len(prompt) - 1),
        )
        pool.clear()
        pool.fill(1, 300)
        pool.generate(0, prompt, steps=0)
        llama_cpp.llama_memory_seq_rm(pool.memory, 1, -1, -1)  # a hole below the prefix
        llama_cpp.llama_memory_seq_cp(pool.memory, 0, 2, 0, len(prompt) - 1)
        compare(
            "shared prefix, new cells in a hole below it",
            reference,
            pool.generate(2, prompt, len(prompt) - 1),
        )


if __name__ == "__main__":
    main()
