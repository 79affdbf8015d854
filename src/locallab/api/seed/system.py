"""System information and health."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST

from locallab.api.docs import ErrorResponse, errors
from locallab.api.errors import error_payload
from locallab.api.seed.response_schemas import HealthResponse, ReadinessResponse
from locallab.api.state import get_services

router = APIRouter(tags=["system"])


@router.get("/system/info", responses=errors(), summary="Machine, process and server statistics")
async def system_info(request: Request) -> dict[str, Any]:
    services = get_services(request)
    info = await asyncio.to_thread(services.system.snapshot)
    current = services.registry.current
    info["model"] = (
        {
            "id": current.id,
            "engine": current.engine.engine_name,
            "context_length": current.engine.context_length,
        }
        if current
        else None
    )
    return info


@router.get(
    "/metrics",
    response_model=None,
    responses={
        200: {
            "content": {"text/plain": {"schema": {"type": "string"}}},
            "description": "Prometheus text format",
        },
        **errors(),
    },
    summary="Prometheus metrics (locallab_* series)",
)
async def metrics(request: Request) -> PlainTextResponse:
    body = get_services(request).metrics.exposition()
    return PlainTextResponse(body, media_type=CONTENT_TYPE_LATEST)


@router.get(
    "/health",
    response_model=HealthResponse,
    responses={500: errors()[500]},
    summary="Liveness: answers at once, also while a model works (not rate-limited)",
)
async def health(request: Request) -> HealthResponse:
    registry = get_services(request).registry
    current = registry.current
    return HealthResponse(model=current.id if current else None, model_status=registry.status)


@router.get(
    "/health/ready",
    response_model=ReadinessResponse,
    responses={
        503: {
            "model": ErrorResponse,
            "description": "Not ready: `status` says why (loading, failed, unloaded, draining), `detail` "
            "says what to do",
        },
        500: errors()[500],
    },
    summary="Readiness: 200 once the default model is loaded, 503 while loading, failed or draining",
)
async def ready(request: Request) -> ReadinessResponse | JSONResponse:
    state = get_services(request).readiness.state()
    if state.ready:
        return ReadinessResponse(model=state.model)
    body = {**error_payload(request.url.path, 503, state.detail or state.status), "status": state.status}
    headers = {"Retry-After": "5"} if state.status == "loading" else None
    return JSONResponse(body, status_code=503, headers=headers)
