"""Python client for a LocalLab server: `Client` (blocking) and `AsyncClient` (asyncio), both on httpx.

from locallab.client import Client
with Client() as client:                       # http://127.0.0.1:8000, or $LOCALLAB_URL
    print(client.generate("Write a haiku")["response"])
    for piece in client.stream_chat([{"role": "user", "content": "Hi"}]):
        print(piece, end="")
"""

from locallab.client.async_client import AsyncClient
from locallab.client.errors import (
    BadRequestError,
    ConflictError,
    LocalLabClientError,
    NotFoundError,
    RateLimitError,
    ServerError,
    ServerUnavailableError,
    ServiceUnavailableError,
    StreamError,
)
from locallab.client.sync_client import Client

__all__ = [
    "AsyncClient",
    "BadRequestError",
    "Client",
    "ConflictError",
    "LocalLabClientError",
    "NotFoundError",
    "RateLimitError",
    "ServerError",
    "ServerUnavailableError",
    "ServiceUnavailableError",
    "StreamError",
]
