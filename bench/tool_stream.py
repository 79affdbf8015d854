"""When a streamed tool call shows up on /v1/messages, against the whole message: a forced call, greedy.

Run against a running server: `.venv/bin/python bench/tool_stream.py --url http://127.0.0.1:8000`.
Prints the medians of `--rounds` pairs (whole, then streamed): the whole message's time, and in the
stream the times of the `tool_use` block, its first `input_json_delta` and the end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import httpx

TOOL = {
    "name": "get_weather",
    "description": "The current weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 40},
            "unit": {"enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city", "unit"],
    },
}


def streamed(client: httpx.Client, url: str, body: dict[str, object]) -> tuple[float, float, float, int]:
    start = time.perf_counter()
    block = first = float("nan")
    fragments = 0
    with client.stream("POST", f"{url}/v1/messages", json={**body, "stream": True}) as response:
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            event = json.loads(line[6:])
            if event["type"] == "content_block_start" and event["content_block"]["type"] == "tool_use":
                block = time.perf_counter() - start
            elif event["type"] == "content_block_delta" and event["delta"]["type"] == "input_json_delta":
                fragments += 1
                if fragments == 1:
                    first = time.perf_counter() - start
    return block, first, time.perf_counter() - start, fragments


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    body: dict[str, object] = {
        "model": args.model, "max_tokens": 120, "temperature": 0, "tools": [TOOL],
        "tool_choice": {"type": "tool", "name": "get_weather"},
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
    }  # fmt: skip
    whole: list[float] = []
    runs: list[tuple[float, float, float, int]] = []
    with httpx.Client(timeout=300) as client:
        client.post(f"{args.url}/v1/messages", json=body).raise_for_status()  # load and warm up
        for _ in range(args.rounds):
            start = time.perf_counter()
            client.post(f"{args.url}/v1/messages", json=body).raise_for_status()
            whole.append(time.perf_counter() - start)
            runs.append(streamed(client, args.url, body))
    median = statistics.median
    print(
        f"whole message {median(whole):.2f} s; stream: tool_use block {median(r[0] for r in runs):.2f} s, "
        f"first input_json_delta {median(r[1] for r in runs):.2f} s, end {median(r[2] for r in runs):.2f} s, "
        f"{median(r[3] for r in runs):.0f} fragments (medians of {args.rounds})"
    )


if __name__ == "__main__":
    main()
