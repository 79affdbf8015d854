"""Model management: load, unload, pull from the Hub, inspect and delete models; the current one, and
what is available."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.responses import StreamingResponse

from locallab.api.docs import errors
from locallab.api.seed.request_schemas import LoadModelRequest, PullModelRequest, UnloadModelRequest
from locallab.api.seed.response_schemas import (
    AvailableModel,
    AvailableModelsResponse,
    CurrentModelResponse,
    DeleteModelResponse,
    LoadModelResponse,
    ModelDetails,
    ModelStatusResponse,
    PullModelResponse,
)
from locallab.api.sse import sse_response
from locallab.api.state import get_services
from locallab.config.catalog import HubSource
from locallab.errors import DownloadError, ModelNotFoundError, NoModelLoadedError
from locallab.services.downloads import size_on_disk
from locallab.services.pull_targets import PullProgress, parse_target

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
    model_id = registry.resolve(body.model_id).id  # 4xx for a bad id before anything starts
    if body.keep_alive is not None:
        registry.set_keep_alive(model_id, body.keep_alive)
    if not body.wait:
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


_REMOTE = "Served by upstream servers (LOCALLAB_REMOTE_MODELS)."


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
            installed=entry.source.path_in(registry.models_dir) is not None,
            is_loaded=registry.is_loaded(entry.id),
            capabilities=registry.capabilities(entry.id),
        )
        for entry in registry.catalog.values()
    ]
    for path in registry.downloaded_files():
        model_id = registry.canonical_id(path.name)
        if registry.is_loaded(model_id):
            continue  # listed below, with what the engine knows of it
        folder = path.is_dir()
        models.append(
            AvailableModel(
                id=path.name,
                name=path.name if folder else path.stem,
                description=("Transformers model folder" if folder else "GGUF file")
                + " in the models directory.",
                engine="transformers" if folder else "llama.cpp",
                size_bytes=size_on_disk(path),
                installed=True,
                is_loaded=False,
                capabilities=registry.capabilities(path.name, path),
            )
        )
    for model_id in sorted(registry.remote_ids):
        if not registry.is_loaded(model_id):  # loaded ones are listed below
            models.append(
                AvailableModel(
                    id=model_id,
                    name=model_id,
                    description=_REMOTE,
                    engine="remote",
                    size_bytes=None,
                    installed=True,
                    is_loaded=False,
                )
            )
    current = registry.current
    for loaded in registry.models:
        if loaded.entry is None:  # loaded from a path or served remotely: not in the catalog
            info = loaded.engine.info
            engine = loaded.engine.engine_name
            models.append(
                AvailableModel(
                    id=loaded.id,
                    name=info.name,
                    description=_REMOTE
                    if engine == "remote"
                    else f"Local {'GGUF file' if engine == 'llama.cpp' else 'model folder'} "
                    f"({info.architecture}, {info.quantization}).",
                    engine=engine,
                    size_bytes=None if engine == "remote" else info.size_bytes,
                    installed=True,
                    is_loaded=True,
                    capabilities=registry.capabilities(loaded.id),
                )
            )
    return AvailableModelsResponse(models=models, current_model=current.id if current else None)


@router.post(
    "/pull",
    response_model=PullModelResponse,
    responses={
        200: {
            "content": {"text/event-stream": {"description": "Progress events, then [DONE]"}},
            "description": 'Progress as server-sent events: {"status": "downloading", "completed": bytes, '
            '"total": bytes}, then {"status": "success", "path", "sha256"} or {"status": "error", "detail"}; '
            "with stream false, the outcome as JSON.",
        },
        **errors(400, 404, 502, 507),
    },
    summary="Download a model from the Hugging Face Hub into the models directory",
)
async def pull_model(body: PullModelRequest, request: Request) -> PullModelResponse | StreamingResponse:
    services = get_services(request)
    target = parse_target(body.model_id, services.registry.catalog)
    pull = services.downloads.start(target)
    if body.stream:
        return sse_response(_progress_events(services.downloads.watch(pull)), request.url.path)
    final = await services.downloads.outcome(pull)
    if final.status != "success":
        raise final.error or DownloadError(final.detail or "The download failed.")
    return PullModelResponse(
        model_id=final.model_id,
        completed=final.completed,
        total=final.total,
        path=final.path or "",
        sha256=final.sha256 or "",
        verified=final.verified,
    )


async def _progress_events(progress: AsyncIterator[PullProgress]) -> AsyncIterator[dict[str, Any]]:
    last_status = None
    async for item in progress:
        if item.status == "downloading" and last_status == "downloading":
            await asyncio.sleep(0.05)  # at most ~20 progress events a second
        last_status = item.status
        yield item.event()


@router.get(
    "/{model_id:path}",
    response_model=ModelDetails,
    responses=errors(400, 404),
    summary="Everything known about one model: catalog entry, file, load state",
)
async def model_details(model_id: str, request: Request) -> ModelDetails:
    registry = get_services(request).registry
    entry = registry.catalog.get(model_id)
    if entry is None:
        resolved = registry.resolve(model_id)  # 404 for unknown ids, 400 for paths outside the model dirs
        status, error = registry.load_state(resolved.id)
        loaded = next((m for m in registry.models if m.id == resolved.id), None)
        info = loaded.engine.info if loaded else None
        size = size_on_disk(resolved.path) if resolved.path.exists() and resolved.engine != "remote" else None
        return ModelDetails(
            id=resolved.id,
            name=info.name if info else resolved.path.name,
            description=f"Local model ({resolved.engine}).",
            engine=resolved.engine,
            format="gguf" if resolved.engine == "llama.cpp" else resolved.engine,
            parameters=str(info.parameters) if info else "",
            quantization=info.quantization if info else "",
            context_length=loaded.engine.context_length if loaded else 0,
            license="",
            size_bytes=size,
            sha256=None,
            source=str(resolved.path),
            installed=True,
            path=str(resolved.path),
            status=status,
            error=error,
        )
    path = entry.source.path_in(registry.models_dir)
    installed = path is not None and path.is_file()
    status, error = registry.load_state(model_id) if installed else ("not_loaded", None)
    source = entry.source
    return ModelDetails(
        id=entry.id,
        name=entry.name,
        description=entry.description,
        engine=entry.engine,
        format=entry.format,
        parameters=entry.parameters,
        quantization=entry.quantization,
        context_length=entry.context_length,
        license=entry.license,
        size_bytes=entry.size_bytes,
        sha256=entry.sha256 or None,
        source=(
            f"hf://{source.repo}/{source.file}"
            if isinstance(source, HubSource)
            else f"PyPI package {source.pip}"
        ),
        installed=installed,
        path=str(path) if installed else None,
        status=status,
        error=error,
    )


@router.delete(
    "/{model_id:path}",
    response_model=DeleteModelResponse,
    responses=errors(400, 404),
    summary="Delete a downloaded model file (only ever inside the models directory)",
)
async def delete_model(model_id: str, request: Request) -> DeleteModelResponse:
    registry = get_services(request).registry
    resolved_id, path = registry.deletable_file(model_id)
    if registry.is_loaded(resolved_id):
        await registry.unload(resolved_id)
    size = size_on_disk(path)
    if path.is_dir():
        await asyncio.to_thread(shutil.rmtree, path)
    else:
        await asyncio.to_thread(path.unlink)
    await asyncio.to_thread(registry.aliases.remove, *registry.aliases.naming(resolved_id))
    return DeleteModelResponse(model_id=resolved_id, path=str(path), freed_bytes=size)
