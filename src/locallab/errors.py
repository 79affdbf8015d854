"""Domain exceptions, free of HTTP. The API maps each class to a status in `locallab.api.errors`.

LocalLabError
├── InvalidRequestError        the request asks for something impossible (400)
│   ├── ContextOverflowError   the prompt does not fit the model's context
│   └── ChatTemplateError      the model has no usable chat template
├── ModelNotFoundError         no catalog entry or file by that id (404)
├── ResponseNotFoundError      no stored response by that id, or not the caller's (404)
├── ModelNotLoadedError        known model, but not the one loaded (409)
├── ModelLoadError             a model file that cannot be loaded (400)
├── InsufficientStorageError   not enough memory or disk for a model (507)
├── DownloadError              the Hub could not deliver a model file intact (502)
├── NoModelLoadedError         nothing is loaded yet (503)
├── ServerBusyError            every slot and queue place is taken (503)
├── ServerShuttingDownError    the server is stopping (503)
├── EngineError                the engine failed while generating (500)
└── UpstreamError              a remote engine's upstream server failed (502)
    └── UpstreamUnavailableError  no upstream could take the request (503)

Builtin exceptions (ValueError, KeyError, ...) are bugs and surface as a 500.
"""

from __future__ import annotations


class LocalLabError(Exception):
    """Base of every error LocalLab reports to a user; `detail` says what happened and what to do."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidRequestError(LocalLabError):
    pass


class ContextOverflowError(InvalidRequestError):
    pass


class ChatTemplateError(InvalidRequestError):
    pass


class ModelNotFoundError(LocalLabError):
    pass


class ResponseNotFoundError(LocalLabError):
    pass


class ModelNotLoadedError(LocalLabError):
    pass


class ModelLoadError(LocalLabError):
    pass


class InsufficientStorageError(LocalLabError):
    pass


class DownloadError(LocalLabError):
    pass


class NoModelLoadedError(LocalLabError):
    pass


class ServerBusyError(LocalLabError):
    pass


class ServerShuttingDownError(LocalLabError):
    pass


class EngineError(LocalLabError):
    pass


class UpstreamError(LocalLabError):
    pass


class UpstreamUnavailableError(UpstreamError):
    pass
