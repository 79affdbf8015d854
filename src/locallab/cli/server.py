"""`locallab start`: run the server with uvicorn."""

from __future__ import annotations

import sys
from types import FrameType

import uvicorn
from fastapi import FastAPI

from locallab import __version__
from locallab.api.app import create_app
from locallab.cli.doctor import check_port
from locallab.config.catalog import load_catalog
from locallab.config.settings import Settings
from locallab.config.tls import tls_problem
from locallab.logs import configure_logging
from locallab.services.response_store import store_problem


def refusal(settings: Settings) -> str | None:
    """Why the server must not start with these settings, or None."""
    has_keys = bool(settings.key_list()) or settings.api_keys_file is not None
    if not settings.is_loopback() and not has_keys and not settings.allow_no_auth:
        return (
            f"refusing to listen on {settings.host} without an API key: anyone who can reach this machine "
            "could use it. Start with --api-key KEY (or LOCALLAB_API_KEYS), or add --allow-no-auth if "
            "the network is trusted."
        )
    port = check_port(settings)
    if port.outcome == "fail":
        return f"{port.message} Fix: {port.fix}"
    tls = tls_problem(settings.ssl_certfile, settings.ssl_keyfile)
    if tls is not None:
        return f"cannot serve HTTPS: {tls}"
    store = store_problem(settings.data_path() / "responses.db")
    if store is not None:
        return f"cannot open the stored responses database: {store}"
    if settings.catalog_file is not None:
        try:
            load_catalog(extra=settings.catalog_file)
        except ValueError as exc:
            return f"cannot use LOCALLAB_CATALOG_FILE: {exc}"
    return None


def start(settings: Settings) -> int:
    reason = refusal(settings)
    if reason is not None:
        print(f"locallab: {reason}", file=sys.stderr)
        return 2

    configure_logging(settings.log_level, settings.log_format)
    scheme = "https" if settings.ssl_certfile is not None else "http"
    address = f"{scheme}://{settings.host}:{settings.port}"
    print(f"LocalLab {__version__}: serving {settings.model or 'no model'} on {address}", flush=True)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        log_config=None,  # configure_logging above: request ids, text or JSON
        # uvicorn's own deadline comes after ours, so streams end with our error event, not a cut
        timeout_graceful_shutdown=int(settings.shutdown_grace) + 3,
        timeout_keep_alive=5,
        ssl_certfile=settings.ssl_certfile,
        ssl_keyfile=settings.ssl_keyfile,
    )
    GracefulServer(config, app, settings.shutdown_grace).run()
    return 0


class GracefulServer(uvicorn.Server):
    """On SIGTERM/SIGINT: stop accepting, give running generations `grace` seconds, then end them with
    an error event (see ShutdownSignal), and exit."""

    def __init__(self, config: uvicorn.Config, app: FastAPI, grace: float) -> None:
        super().__init__(config)
        self._app = app
        self._grace = grace

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        services = getattr(self._app.state, "services", None)
        if services is not None:
            services.generation.shutdown.begin(self._grace)
        super().handle_exit(sig, frame)
        # uvicorn re-raises the signal once it has stopped, so the process would end "killed by
        # SIGTERM"; after a graceful stop, exit status 0 is the truth.
        captured = getattr(self, "_captured_signals", None)
        if isinstance(captured, list):
            captured.clear()
