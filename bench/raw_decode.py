"""The ceiling: llama.cpp's own decode speed through the C API, with no sampling and no HTTP.

Loads the model with the same context settings LocalLab uses, prefills a short prompt in each of
`sequences` sequences, then times `steps` decode steps of one token per sequence. Prints JSON.

`--split` also times the same loop on llama.cpp's per-sequence KV layout (`kv_unified` off, one
stream of `--context` cells per slot: llama-server's layout with `-np`), which shares no cells between
sequences but lets each token's attention skip the other sequences' cells.

    .venv/bin/python bench/raw_decode.py --sequences 1 8 --split
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import llama_cpp

from locallab.config.catalog import load_catalog
from locallab.engines.llamacpp.native import load_native_model, tokenize


def measure(
    path: Path, *, sequences: int, steps: int, threads: int, context: int, slots: int, split: bool = False
) -> float:
    native = load_native_model(path, context_length=context, parallel=slots, threads=threads, batch_size=512)
    if split:  # the same weights, in a context with one KV stream per sequence
        params = native.params
        params.kv_unified, params.n_ctx, params.n_seq_max = False, context * slots, slots
        llama_cpp.llama_free(native.ctx)
        native.ctx = llama_cpp.llama_init_from_model(native.model, params)
    try:
        prompt = tokenize(native.vocab, "Count from 1 to 200, separated by commas.", add_special=True)
        batch = llama_cpp.llama_batch_init(512, 0, 1)

        def fill(items: list[tuple[int, int, int, bool]]) -> None:
            for i, (token, pos, seq, logits) in enumerate(items):
                batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, pos, 1
                batch.seq_id[i][0], batch.logits[i] = seq, logits
            batch.n_tokens = len(items)

        fill([(t, p, s, p == len(prompt) - 1) for s in range(sequences) for p, t in enumerate(prompt)])
        assert llama_cpp.llama_decode(native.ctx, batch) == 0
        token = prompt[-1]
        start = time.perf_counter()
        for step in range(steps):
            fill([(token, len(prompt) + step, s, True) for s in range(sequences)])
            assert llama_cpp.llama_decode(native.ctx, batch) == 0
        elapsed = time.perf_counter() - start
        llama_cpp.llama_batch_free(batch)
        return sequences * steps / elapsed
    finally:
        native.free()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=None, help="GGUF file (default: the embedded model)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=128)
    parser.add_argument("--context", type=int, default=2048, help="context per sequence")
    parser.add_argument("--slots", type=int, default=8, help="sequences the context holds")
    parser.add_argument("--sequences", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--split", action="store_true", help="also per-sequence KV streams")
    args = parser.parse_args()
    path = args.model or load_catalog()["smollm2-135m-instruct"].source.locate()
    options = {"steps": args.steps, "threads": args.threads, "context": args.context, "slots": args.slots}
    results = {str(n): measure(path, sequences=n, **options) for n in args.sequences}
    out: dict[str, dict[str, float]] = {"tokens_per_second": results}
    if args.split:
        out["split_tokens_per_second"] = {
            str(n): measure(path, sequences=n, split=True, **options) for n in args.sequences
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
