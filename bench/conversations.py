"""Prompt tokens computed against prompt tokens sent when N conversations of T turns run at once on the
llama.cpp engine (no HTTP), with LOCALLAB_DETERMINISTIC on and off: what emptying the pool when idle
costs a busy server (several conversations) and a single user (one conversation).

    .venv/bin/python bench/conversations.py --conversations 4 --turns 4
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.real_model import collect, default_model_path, run  # noqa: E402

from locallab.engines.llamacpp import LlamaCppEngine, load_llamacpp_engine  # noqa: E402
from locallab.services.chat_template import render_chat  # noqa: E402


async def conversation(engine: LlamaCppEngine, number: int, turns: int, counts: list[int]) -> None:
    assert engine.info.chat_template is not None
    messages = [{"role": "system", "content": "You are a helpful assistant."}]
    for turn in range(turns):
        question = f"Conversation {number}, question {turn}: tell me a fact about {number * 10 + turn}."
        messages.append({"role": "user", "content": question})
        chunks, text = await collect(engine, render_chat(engine.info.chat_template, messages), max_tokens=48)
        counts[0] += chunks[-1].prompt_tokens
        counts[1] += chunks[-1].cached_tokens
        messages.append({"role": "assistant", "content": text})


def measure(deterministic: bool, conversations: int, turns: int) -> None:
    engine = load_llamacpp_engine(
        default_model_path(), context_length=4096, parallel=8, threads=2, batch_size=128,
        deterministic=deterministic,
    )  # fmt: skip
    counts = [0, 0]

    async def everyone() -> None:
        await asyncio.gather(*(conversation(engine, n, turns, counts) for n in range(conversations)))

    start = time.perf_counter()
    try:
        run(everyone(), timeout=3600)
    finally:
        run(engine.close())
    sent, computed = counts[0], counts[0] - counts[1]
    print(
        f"deterministic={deterministic}: {conversations} conversations x {turns} turns: prompt tokens sent "
        f"{sent}, computed {computed} ({computed / sent:.2f}), {time.perf_counter() - start:.0f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--conversations", type=int, default=4)
    parser.add_argument("--turns", type=int, default=4)
    args = parser.parse_args()
    for deterministic in (True, False):
        measure(deterministic, args.conversations, args.turns)


if __name__ == "__main__":
    main()
