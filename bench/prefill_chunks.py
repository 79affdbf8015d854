"""How fast llama.cpp reads one 2,000-token prompt in chunks of N tokens (the engine's LOCALLAB_BATCH_SIZE
plus LOCALLAB_PARALLEL is its chunk; llama-server's n_ubatch is 512): raw C API, no HTTP, best of 2.

    .venv/bin/python bench/prefill_chunks.py 136 512
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import llama_cpp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.real_model import default_model_path  # noqa: E402

from locallab.engines.llamacpp.native import native_log  # noqa: E402

PROMPT = [100 + (i * 7) % 20000 for i in range(2000)]


def seconds(model: object, chunk: int, threads: int = 2) -> float:
    params = llama_cpp.llama_context_default_params()
    params.n_ctx, params.n_batch, params.n_ubatch, params.n_seq_max = 8448, chunk, chunk, 32
    params.n_threads = params.n_threads_batch = threads
    params.kv_unified = True
    ctx = llama_cpp.llama_init_from_model(model, params)
    batch = llama_cpp.llama_batch_init(chunk, 0, 1)
    best = float("inf")
    try:
        for _ in range(2):
            llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
            start = time.perf_counter()
            for at in range(0, len(PROMPT), chunk):
                part = PROMPT[at : at + chunk]
                for i, token in enumerate(part):
                    batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, at + i, 1
                    batch.seq_id[i][0] = 0
                    batch.logits[i] = at + i == len(PROMPT) - 1
                batch.n_tokens = len(part)
                if llama_cpp.llama_decode(ctx, batch) != 0:
                    raise RuntimeError("llama_decode failed")
            best = min(best, time.perf_counter() - start)
    finally:
        llama_cpp.llama_batch_free(batch)
        llama_cpp.llama_free(ctx)
    return best


def main() -> None:
    native_log.install()
    path = str(default_model_path()).encode()
    model = llama_cpp.llama_model_load_from_file(path, llama_cpp.llama_model_default_params())
    for chunk in [int(arg) for arg in sys.argv[1:]] or [136, 512]:
        took = seconds(model, chunk)
        print(f"chunks of {chunk}: {len(PROMPT)} tokens in {took:.2f} s = {len(PROMPT) / took:.0f} tokens/s")


if __name__ == "__main__":
    main()
