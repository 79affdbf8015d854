"""Decodes a few tokens of a GGUF model through the real engine, meant to run in a child process:
a llama.cpp build that uses instructions this CPU cannot run (AMX in many virtual machines) dies with
SIGILL at the first decode, and `locallab doctor` reports that instead of the server dying.

    python -m locallab.engines.llamacpp.smoke FILE      # prints the tokens and exits 0 when decoding works
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from locallab.engines.base import GenerationRequest, SamplingParams
from locallab.engines.llamacpp.engine import load_llamacpp_engine


async def decode_a_few_tokens(path: Path, tokens: int = 4) -> str:
    engine = await asyncio.to_thread(
        load_llamacpp_engine, path, context_length=256, parallel=1, threads=1, batch_size=64, max_queue=1
    )
    try:
        prompt = await engine.tokenize("Hello")
        request = GenerationRequest(prompt, SamplingParams(max_tokens=tokens, do_sample=False))
        return "".join([chunk.text async for chunk in engine.generate(request)])
    finally:
        await engine.close()


def main() -> int:
    print(repr(asyncio.run(decode_a_few_tokens(Path(sys.argv[1])))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
