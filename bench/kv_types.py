"""What the KV cache type costs in answers and saves in memory: the same greedy requests with keys and
values in f16, q8_0 and q4_0, one engine each, compared with f16 token by token.

    .venv/bin/python bench/kv_types.py --prompts 12 --max-tokens 48
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.real_model import collect, default_model_path  # noqa: E402

from locallab.engines.gguf import check_gguf_header  # noqa: E402
from locallab.engines.llamacpp import load_llamacpp_engine  # noqa: E402
from locallab.engines.llamacpp.memory import estimate_memory  # noqa: E402
from locallab.services.chat_template import render_chat  # noqa: E402

QUESTIONS = [
    "What is the capital of France?", "Name three colours.", "Count from 1 to 10.",
    "Write a haiku about rain.",
    "Why is the sky blue?", "Give me a tip for learning to cook.", "What is a prime number?",
    "Translate 'good morning' into Spanish.", "Describe a cat in one sentence.", "What is 12 times 7?",
    "Suggest a name for a dog.", "What does a router do?", "List four fruits.", "What is gravity?",
    "Write a short thank-you note.", "What is the largest planet?",
]  # fmt: skip


async def answers(kv_type: str, prompts: int, max_tokens: int, threads: int) -> list[list[bytes]]:
    engine = load_llamacpp_engine(
        default_model_path(), context_length=1024, parallel=1, threads=threads, batch_size=128,
        kv_type=kv_type, kv_tokens=2048, prefix_cache=False,
    )  # fmt: skip
    try:
        assert engine.info.chat_template is not None
        out = []
        for question in QUESTIONS[:prompts]:
            prompt = render_chat(engine.info.chat_template, [{"role": "user", "content": question}])
            chunks, _ = await collect(engine, prompt, max_tokens=max_tokens, logprobs=1)
            out.append([entry.text for chunk in chunks for entry in chunk.logprobs])
        return out
    finally:
        await engine.close()


def agreement(reference: list[bytes], other: list[bytes]) -> int:
    """Tokens the two greedy answers share before they part."""
    n = 0
    for a, b in zip(reference, other, strict=False):
        if a != b:
            break
        n += 1
    return n


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prompts", type=int, default=12)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "kv_types.json")
    args = parser.parse_args()
    header = check_gguf_header(default_model_path())
    results = {
        t: asyncio.run(answers(t, args.prompts, args.max_tokens, args.threads))
        for t in ("f16", "q8_0", "q4_0")
    }
    rows = []
    print(
        "| KV type | KV MB for 8448 tokens | identical answers | tokens before parting (median of prompts) |"
    )
    print("| --- | --- | --- | --- |")
    for kv_type, got in results.items():
        mb = estimate_memory(default_model_path(), header, pool_tokens=8448, kv_type=kv_type).kv_cache / 1e6
        same = sum(a == b for a, b in zip(results["f16"], got, strict=True))
        kept = statistics.median(agreement(a, b) for a, b in zip(results["f16"], got, strict=True))
        rows.append(
            {"kv_type": kv_type, "kv_mb": mb, "identical": same, "prompts": len(got), "median_kept": kept}
        )
        print(f"| {kv_type} | {mb:.0f} | {same}/{len(got)} | {kept:.0f} of {args.max_tokens} |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
