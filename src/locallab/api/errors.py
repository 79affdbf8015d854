"""One table maps domain exceptions to HTTP statuses; every error body is `{"detail", "request_id"}`.

Handlers are looked up along the exception's MRO, so a subclass inherits its parent's status unless
the table names it. Anything else is a bug: ObserveMiddleware answers 500 with the request id, no traceback.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Scope, Send

from locallab.api.cancellation import ClientDisconnected
from locallab.errors import (
    DownloadError,
    EngineError,
    InsufficientStorageError,
    InvalidRequestError,
    LocalLabError,
    ModelLoadError,
    ModelNotFoundError,
    ModelNotLoadedError,
    NoModelLoadedError,
    ResponseNotFoundError,
    ServerBusyError,
    ServerShuttingDownError,
    UpstreamError,
    UpstreamUnavailableError,
)
from locallab.logs import request_id_var

logger = logging.getLogger(__name__)

STATUS_FOR: dict[type[LocalLabError], int] = {
    InvalidRequestError: 400,
    ModelLoadError: 400,
    ModelNotFoundError: 404,
    ResponseNotFoundError: 404,
    ModelNotLoadedError: 409,
    InsufficientStorageError: 507,
    DownloadError: 502,
    NoModelLoadedError: 503,
    ServerBusyError: 503,
    ServerShuttingDownError: 503,
    EngineError: 500,
    UpstreamError: 502,
    UpstreamUnavailableError: 503,
}
RETRY_AFTER_SECONDS: dict[type[LocalLabError], int] = {
    NoModelLoadedError: 5,
    ServerBusyError: 2,
    UpstreamUnavailableError: 5,
}


def status_for(exc: LocalLabError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS_FOR:
            return STATUS_FOR[cls]
    return 500


INTERNAL_ERROR = "Internal server error; the server log has the details."
OPENAI_PREFIX = "/v1/"
OLLAMA_PREFIX = "/api/"  # Ollama's clients read `{"error": "..."}` and raise ResponseError with the status
_OPENAI_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
    404: "invalid_request_error", 405: "invalid_request_error", 409: "invalid_request_error",
    413: "invalid_request_error", 429: "rate_limit_error", 502: "upstream_error", 503: "service_unavailable",
}  # fmt: skip
_PARAM = re.compile(r"^([A-Za-z_][\w.\[\]]*): ")
ANTHROPIC_PREFIX = "/v1/messages"
# Anthropic's error types by status: its client raises BadRequestError, AuthenticationError, ... from them.
_ANTHROPIC_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
    404: "not_found_error", 405: "invalid_request_error", 409: "invalid_request_error",
    413: "request_too_large", 429: "rate_limit_error", 503: "overloaded_error", 529: "overloaded_error",
}  # fmt: skip


def anthropic_error(status: int, detail: str) -> dict[str, Any]:
    """Anthropic's envelope: `{"type": "error", "error": {"type", "message"}}`."""
    return {
        "type": "error",
        "error": {"type": _ANTHROPIC_TYPES.get(status, "api_error"), "message": detail},
        "request_id": request_id_var.get(),
    }


def error_payload(path: str, status: int, detail: str) -> dict[str, Any]:
    """`{"detail"}` on LocalLab's routes; Anthropic's envelope under /v1/messages, OpenAI's elsewhere on
    /v1 and Ollama's `{"error"}` on /api, so their clients raise their typed errors."""
    request_id = request_id_var.get()
    if path == ANTHROPIC_PREFIX or path.startswith(ANTHROPIC_PREFIX + "/"):
        return anthropic_error(status, detail)
    if path.startswith(OLLAMA_PREFIX):
        return {"error": detail, "request_id": request_id}
    if not path.startswith(OPENAI_PREFIX):
        return {"detail": detail, "request_id": request_id}
    match = _PARAM.match(detail)
    return {
        "error": {
            "message": detail,
            "type": _OPENAI_TYPES.get(status, "server_error"),
            "param": match.group(1) if match else None,
            "code": None,
            "request_id": request_id,
        }
    }


async def send_error(
    scope: Scope, send: Send, status: int, detail: str, headers: dict[str, str] | None = None
) -> None:
    """An error answered by ASGI middleware, in the same shape as the app's own errors."""
    body = json.dumps(error_payload(scope["path"], status, detail)).encode()
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


def error_response(
    request: Request, status: int, detail: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_payload(request.url.path, status, detail), status_code=status, headers=headers)


def _describe_input(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


# Pydantic's union branch tags: a bare scalar type, a class name ("TextBlock"), or a generic one
# ("list[TextPart]", "literal['auto']", "function-after[...]", "constrained-str"). Field names such as
# `model` or `function` are never tags.
_TYPE_TAG = re.compile(r"^(str|int|float|bool|none|bytes)$|^[A-Z]|[\[\-]")


def _field_loc(error: dict[str, Any]) -> list[str]:
    # Pydantic puts union branch names ("list[constrained-str]") in the location; users never wrote them.
    return [str(p) for p in error.get("loc", ()) if p != "body" and not _TYPE_TAG.search(str(p))]


def _specificity(error: dict[str, Any]) -> tuple[bool, int]:
    # A union branch that accepted the value's type and then found a problem says more than one that
    # refused the type outright.
    return (not str(error.get("type", "")).endswith("_type"), len(error.get("loc", ())))


def _most_specific(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One error per top-level field: for a union, the branch that got furthest into the value."""
    best: dict[str, dict[str, Any]] = {}
    for error in errors:
        loc = _field_loc(error)
        key = loc[0] if loc else ""
        if key not in best or _specificity(error) > _specificity(best[key]):
            best[key] = error
    return list(best.values())


def validation_detail(errors: list[dict[str, Any]]) -> str:
    """Names each bad field the way a user wrote it: `messages[0].role: ...`."""
    parts: list[str] = []
    for error in _most_specific(errors)[:5]:
        kind = error.get("type", "")
        loc = _field_loc(error)
        if kind == "json_invalid":
            ctx = error.get("ctx", {})
            parts.append(f"The request body is not valid JSON ({ctx.get('error', 'parse error')}).")
            continue
        field = ""
        for p in loc:
            field += f"[{p}]" if p.isdigit() else (f".{p}" if field else p)
        if kind == "missing" and not field:
            parts.append("The request needs a JSON body (Content-Type: application/json).")
        elif kind == "missing":
            parts.append(f"{field}: this field is required.")
        elif kind == "extra_forbidden":
            parts.append(f"{field}: unknown field; remove it (see /docs for the fields this route takes).")
        elif not field:
            parts.append(f"The request body must be a JSON object: {error.get('msg', '')}.")
        else:
            message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
            parts.append(f"{field}: {message} (got {_describe_input(error.get('input'))}).")
    return " ".join(parts)


async def _on_domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, LocalLabError)
    status = status_for(exc)
    if status >= 500:
        logger.error("request %s failed: %s", request.url.path, exc.detail)
    retry = next((v for k, v in RETRY_AFTER_SECONDS.items() if isinstance(exc, k)), None)
    return error_response(request, status, exc.detail, {"Retry-After": str(retry)} if retry else None)


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(request, 400, validation_detail(list(exc.errors())))


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = str(exc.detail)
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"No route {request.method} {request.url.path}. See /docs for the API."
    elif exc.status_code == 405:
        detail = f"{request.method} is not allowed on {request.url.path}."
    return error_response(request, exc.status_code, detail, dict(exc.headers) if exc.headers else None)


async def _on_client_gone(request: Request, exc: Exception) -> Response:
    # Nobody reads this answer; 499 (nginx's "client closed request") keeps it out of the 5xx counts.
    return Response(status_code=499)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(LocalLabError, _on_domain_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(ClientDisconnected, _on_client_gone)
