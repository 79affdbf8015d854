"""`locallab generate`, `locallab models ...` and `locallab status`: one request each, through the client."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from locallab.client import Client


def generate(client: Client, prompt: str | None, options: dict[str, Any], stdin: TextIO, out: TextIO) -> int:
    if prompt is None:
        if stdin.isatty():
            print(
                'locallab generate: give a prompt ("locallab generate \\"Write a haiku\\"") or pipe one in.',
                file=sys.stderr,
            )
            return 2
        prompt = stdin.read()
    if not prompt.strip():
        print("locallab generate: the prompt is empty.", file=sys.stderr)
        return 2
    for piece in client.stream_generate(prompt, **options):
        out.write(piece)
        out.flush()
    out.write("\n")
    return 0


def models(client: Client, action: str, model_id: str | None, out: TextIO) -> int:
    if action == "list":
        listing = client.models()
        for model in listing["models"]:
            mark = "*" if model["is_loaded"] else " "
            state = "installed" if model["installed"] else "not installed"
            size = f"{model['size_bytes'] / 1e6:.0f} MB" if model.get("size_bytes") else "?"
            out.write(f"{mark} {model['id']:<28} {model['engine']:<10} {size:>8}  {state}  {model['name']}\n")
    elif action == "current":
        current = client.current_model()
        for key in (
            "id",
            "name",
            "engine",
            "context_length",
            "parameters",
            "quantization",
            "size_bytes",
            "loaded_at",
        ):
            out.write(f"{key:<15} {current[key]}\n")
    elif model_id is not None:  # "load ID": argparse makes the id required
        out.write(client.load_model(model_id)["message"] + "\n")
    return 0


def status(client: Client, out: TextIO) -> int:
    health = client.health()
    info = client.system_info()
    summary = {
        "url": client.options.url,
        "status": health["status"],
        "model": health["model"],
        "model_status": health["model_status"],
        "uptime_s": info["uptime"],
        "requests": info["requests"],
        "parallel": info["parallel"],
        "tokens": info["tokens"],
        "cpu_usage": info["cpu_usage"],
        "memory_usage": info["memory_usage"],
        "process_rss_mb": round(info["memory"]["process_rss"] / 2**20),
    }
    out.write(json.dumps(summary, indent=2) + "\n")
    return 0
