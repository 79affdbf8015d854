"""Model management: load a model, show the current one, list what is available."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from locallab.api.routes.docs import errors
from locallab.api.schemas.requests import LoadModelRequest, UnloadModelRequest
from locallab.api.schemas.responses import (
    AvailableModel,
    AvailableModelsResponse,
    CurrentModelResponse,
    LoadModelResponse,
    ModelStatusResponse,
)
from locallab.api.state import get_services
from locallab.errors import ModelNotFoundError, NoModelLoadedError

router = APIRouter(prefix="/models", tags=["models"])


@router.post(
    "/load",
    response_model=LoadModelResponse,
    responses={
        202: {"model": LoadModelResponse, "description": "Loading in the background"},
        **errors(404, 503),
    },
    summary="Load a model and make it the default",
)
async def load_model(body: LoadModelRequest, request: Request, response: Response) -> LoadModelResponse:
    registry = get_services(request).registry
    if not body.wait:
        model_id = registry.resolve(body.model_id).id
        registry.start_load(model_id)
        response.status_code = 202
        return LoadModelResponse(
            status="loading",
            model_id=model_id,
            message=f"Loading '{model_id}'; see GET /models/status/{model_id}.",
        )
    loaded = await registry.load(body.model_id)
    return LoadModelResponse(
        model_id=loaded.id, message=f"Model '{loaded.id}' loaded with {loaded.engine.engine_name}."
    )


@router.post(
    "/unload", response_model=LoadModelResponse, responses=errors(404, 409), summary="Unload a model"
)
async def unload_model(body: UnloadModelRequest, request: Request) -> LoadModelResponse:
    registry = get_services(request).registry
    model_id = registry.canonical_id(body.model_id)
    await registry.unload(model_id)
    return LoadModelResponse(model_id=model_id, message=f"Model '{model_id}' unloaded.")


@router.get(
    "/status/{model_id:path}",
    response_model=ModelStatusResponse,
    responses=errors(404),
    summary="Whether a model is loaded, loading or failed to load",
)
async def model_status(model_id: str, request: Request) -> ModelStatusResponse:
    registry = get_services(request).registry
    resolved_id = registry.canonical_id(model_id)
    status, error = registry.load_state(resolved_id)
    return ModelStatusResponse(model_id=resolved_id, status=status, error=error)


@router.get(
    "/current", response_model=CurrentModelResponse, responses=errors(404), summary="The loaded model"
)
async def current_model(request: Request) -> CurrentModelResponse:
    services = get_services(request)
    try:
        loaded = services.registry.get(None)
    except NoModelLoadedError as exc:
        raise ModelNotFoundError(exc.detail) from exc
    info = loaded.engine.info
    return CurrentModelResponse(
        id=loaded.id,
        name=loaded.entry.name if loaded.entry else info.name,
        engine=loaded.engine.engine_name,
        context_length=loaded.engine.context_length,
        parameters=info.parameters,
        quantization=info.quantization,
        size_bytes=info.size_bytes,
        loaded_at=loaded.loaded_at.isoformat(),
    )


@router.get(
    "/available",
    response_model=AvailableModelsResponse,
    responses=errors(),
    summary="Models in the catalog, and the loaded one",
)
async def available_models(request: Request) -> AvailableModelsResponse:
    registry = get_services(request).registry
    models = [
        AvailableModel(
            id=entry.id,
            name=entry.name,
            description=entry.description,
            engine=entry.engine,
            size_bytes=entry.size_bytes,
            installed=entry.source.installed(),
            is_loaded=registry.is_loaded(entry.id),
        )
        for entry in registry.catalog.values()
    ]
    current = registry.current
    for loaded in registry.models:
        if loaded.entry is None:  # loaded from a path: not in the catalog
            info = loaded.engine.info
            models.append(
                AvailableModel(
                    id=loaded.id,
                    name=info.name,
                    description=f"Local GGUF file ({info.architecture}, {info.quantization}).",
                    engine=loaded.engine.engine_name,
                    size_bytes=info.size_bytes,
                    installed=True,
                    is_loaded=True,
                )
            )
    return AvailableModelsResponse(models=models, current_model=current.id if current else None)
