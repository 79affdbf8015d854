"""`locallab start`: serve models over HTTP. Every setting is also a flag (`--parallel 4`)."""

from __future__ import annotations

import argparse
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
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            dest=name,
            type=_flag_type(field.annotation),
            default=None,
            help=f"{field.description} [env {env}]",
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="locallab", description="Run language models on your own machine.")
    parser.add_argument("--version", action="version", version=f"locallab {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser(
        "start",
        help="Serve the API (default: the embedded model on 127.0.0.1:8000).",
        description="Serve the LocalLab API. Flags override LOCALLAB_* environment variables.",
    )
    _add_settings_flags(start)
    return parser


def _settings_from(args: argparse.Namespace) -> Settings:
    overrides = {
        name: getattr(args, name) for name in Settings.model_fields if getattr(args, name) is not None
    }
    return Settings(**overrides)


def _start(settings: Settings) -> int:
    import logging

    import uvicorn

    from locallab.api.app import create_app

    level = settings.log_level.upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    print(
        f"LocalLab {__version__}: serving {settings.model} on http://{settings.host}:{settings.port}",
        flush=True,
    )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=10,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = _settings_from(args)
    except ValidationError as exc:
        for error in exc.errors():
            field = ".".join(str(p) for p in error["loc"])
            print(f"locallab: invalid setting {field}: {error['msg']}", file=sys.stderr)
        return 2
    if args.command == "start":
        return _start(settings)
    return 2
