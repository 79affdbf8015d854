"""Exceptions the client raises; each carries the server's `detail`.

LocalLabClientError
├── ServerUnavailableError   no server answers at the URL
├── StreamError              the server reported an error inside a stream
└── (HTTP status errors: .status, .detail)
    ├── BadRequestError         400
    ├── NotFoundError           404
    ├── ConflictError           409
    ├── RateLimitError          429 (.retry_after)
    ├── ServerError             500 and other 5xx
    └── ServiceUnavailableError 503 (.retry_after)
"""

from __future__ import annotations


class LocalLabClientError(Exception):
    def __init__(self, detail: str, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(f"{status}: {detail}" if status else detail)
        self.detail = detail
        self.status = status
        self.retry_after = retry_after


class ServerUnavailableError(LocalLabClientError):
    pass


class StreamError(LocalLabClientError):
    pass


class BadRequestError(LocalLabClientError):
    pass


class NotFoundError(LocalLabClientError):
    pass


class ConflictError(LocalLabClientError):
    pass


class RateLimitError(LocalLabClientError):
    pass


class ServerError(LocalLabClientError):
    pass


class ServiceUnavailableError(LocalLabClientError):
    pass


_BY_STATUS: dict[int, type[LocalLabClientError]] = {
    400: BadRequestError,
    404: NotFoundError,
    409: ConflictError,
    429: RateLimitError,
    503: ServiceUnavailableError,
}


def error_for(status: int, detail: str, retry_after: float | None) -> LocalLabClientError:
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else LocalLabClientError)
    return cls(detail, status, retry_after)
