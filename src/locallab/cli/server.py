"""`locallab start`: run the server with uvicorn."""

from __future__ import annotations

import logging

from locallab import __version__
from locallab.config.settings import Settings


def start(settings: Settings) -> int:
    import uvicorn

    from locallab.api.app import create_app

    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
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
