"""Model management: load a model, show the current one, list what is available."""

from __future__ import annotations

from fastapi import APIRouter, Request

from locallab.api.routes.docs import errors
from locallab.api.schemas.requests import LoadModelRequest
from locallab.api.schemas.responses import (
    AvailableModel,
    AvailableModelsResponse,
    CurrentModelResponse,
    LoadModelResponse,
)
from locallab.api.state import get_services
from locallab.errors import ModelNotFoundError, NoModelLoadedError

router = APIRouter(prefix="/models", tags=["models"])


@router.post("/load", response_model=LoadModelResponse, responses=errors(404), summary="Load a model")
async def load_model(body: LoadModelRequest, request: Request) -> LoadModelResponse:
    services = get_services(request)
    loaded = await services.registry.load(body.model_id)
    return LoadModelResponse(
        model_id=loaded.id, message=f"Model '{loaded.id}' loaded with {loaded.engine.engine_name}."
    )


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
            installed=entry.source.locate() is not None,
            is_loaded=registry.is_loaded(entry.id),
        )
        for entry in registry.catalog.values()
    ]
    current = registry.current
    if current is not None and current.entry is None:
        info = current.engine.info
        models.append(
            AvailableModel(
                id=current.id,
                name=info.name,
                description=f"Local GGUF file ({info.architecture}, {info.quantization}).",
                engine=current.engine.engine_name,
                size_bytes=info.size_bytes,
                installed=True,
                is_loaded=True,
            )
        )
    return AvailableModelsResponse(models=models, current_model=current.id if current else None)
