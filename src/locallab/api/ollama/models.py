"""Ollama's model routes: tags, show, ps, pull, delete, copy, embed, version; create and blobs refused.

What each answer is made of (digest, details, model_info) is in catalog.py; this module is HTTP only.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from locallab.api.cancellation import cancel_on_disconnect
from locallab.api.ndjson import ndjson_response
from locallab.api.ollama import wire
from locallab.api.ollama.catalog import describe, listed_ids, show
from locallab.api.ollama.docs import errors, ndjson_ok
from locallab.api.ollama.routes import acquire
from locallab.api.ollama.schemas import (
    CopyRequest,
    EmbedRequest,
    LegacyEmbeddingsRequest,
    ModelRequest,
    PullRequest,
)
from locallab.api.state import get_services
from locallab.engines.base import Vectors
from locallab.errors import DownloadError, InvalidRequestError, ModelNotFoundError
from locallab.services.hub_files import gguf_for_quantization
from locallab.services.pull_targets import PullProgress, PullTarget, Target, parse_target

router = APIRouter(prefix="/api", tags=["ollama"])
_EMBED_OK: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The vectors, L2-normalised.",
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
}

FAR_FUTURE = datetime(2318, 1, 1, tzinfo=timezone.utc)  # what Ollama reports for a model that never expires


@router.head("/version", include_in_schema=False)
@router.get("/version", responses=errors(), summary="Ollama: the Ollama API level (LOCALLAB_OLLAMA_VERSION)")
async def version(request: Request) -> dict[str, str]:
    return {"version": get_services(request).settings.ollama_version}


@router.get("/tags", responses=errors(), summary="Ollama: the models you can use")
async def tags(request: Request) -> dict[str, Any]:
    registry = get_services(request).registry
    found = await asyncio.to_thread(lambda: [describe(registry, i) for i in listed_ids(registry)])
    return {"models": [d.tag() for d in found]}


@router.post("/show", responses=errors(404), summary="Ollama: everything about one model")
async def show_model(body: ModelRequest, request: Request) -> dict[str, Any]:
    registry = get_services(request).registry
    name = body.ref()
    return await asyncio.to_thread(show, registry, name)


@router.get("/ps", responses=errors(), summary="Ollama: the loaded models")
async def running(request: Request) -> dict[str, Any]:
    services = get_services(request)
    registry = services.registry
    now = datetime.now(timezone.utc)
    models = []
    for loaded in registry.models:
        desc = await asyncio.to_thread(describe, registry, loaded.id)
        left = registry.idle_seconds_left(loaded.id, services.settings.keep_alive)
        expires = FAR_FUTURE if left is None else now + timedelta(seconds=left)
        models.append(
            {
                **desc.tag(),
                "expires_at": wire.rfc3339(expires),
                "size_vram": 0,  # LocalLab runs on the CPU
                "context_length": loaded.engine.context_length,
            }
        )
    return {"models": models}


@router.delete("/delete", responses=errors(404), summary="Ollama: delete a downloaded model or an alias")
async def delete(body: ModelRequest, request: Request) -> Response:
    registry = get_services(request).registry
    name = body.ref()
    if registry.aliases.target(wire.model_id(name)) is not None:  # only the name goes, not the weights
        await asyncio.to_thread(registry.aliases.remove, wire.model_id(name))
        return Response(status_code=200)
    try:
        resolved_id, path = registry.deletable_file(wire.model_id(name))
    except ModelNotFoundError as exc:
        raise ModelNotFoundError(f"model '{name}' not found. {exc.detail}") from exc
    if registry.is_loaded(resolved_id):
        await registry.unload(resolved_id)
    if path.is_dir():
        await asyncio.to_thread(shutil.rmtree, path)
    else:
        await asyncio.to_thread(path.unlink)
    await asyncio.to_thread(registry.aliases.remove, *registry.aliases.naming(resolved_id))
    return Response(status_code=200)


@router.post("/copy", responses=errors(404), summary="Ollama: give a model another name (an alias)")
async def copy(body: CopyRequest, request: Request) -> Response:
    registry = get_services(request).registry
    destination = wire.model_id(body.destination)
    if ":" in destination:
        base, tag = destination.split(":", 1)
        raise InvalidRequestError(
            f"destination: LocalLab's model names have no tags other than ':latest'; "
            f"name the copy '{base}-{tag}' instead of '{body.destination}'."
        )
    try:
        await asyncio.to_thread(registry.add_alias, destination, wire.model_id(body.source))
    except ModelNotFoundError as exc:
        raise ModelNotFoundError(f"model '{body.source}' not found. {exc.detail}") from exc
    return Response(status_code=200)


def _pull_lines(
    progress: AsyncIterator[PullProgress], name: str, expected_sha256: str | None
) -> AsyncIterator[dict[str, Any]]:
    # `digest` only where the file's sha256 is known before the download (the catalog's)
    digest = {"digest": f"sha256:{expected_sha256}"} if expected_sha256 else {}

    async def lines() -> AsyncIterator[dict[str, Any]]:
        yield {"status": "pulling manifest"}
        last_status = None
        async for item in progress:
            if item.status == "error":
                raise item.error or DownloadError(item.detail or "The download failed.")
            if item.status == "success":
                yield {"status": "verifying sha256 digest"}
                yield {"status": "writing manifest"}
                yield {"status": "success"}
                return
            if item.status == "downloading" and last_status == "downloading":
                await asyncio.sleep(0.05)  # at most ~20 progress lines a second
            last_status = item.status
            line: dict[str, Any] = {"status": f"pulling {name}", **digest, "completed": item.completed}
            if item.total is not None:
                line["total"] = item.total
            if item.status != "downloading":
                line["status"] = f"{item.status} {name}"
            yield line

    return lines()


@router.post(
    "/pull",
    response_model=None,
    responses={**ndjson_ok("Progress lines, the last {'status': 'success'}"), **errors(404, 502, 507)},
    summary="Ollama: download a catalog model, hf.co/owner/repo:quant, or hf://owner/repo/file.gguf",
)
async def pull(body: PullRequest, request: Request) -> Response:
    services = get_services(request)
    name = body.ref()
    hub = wire.hub_name(name)
    target: Target
    if hub is not None:  # Ollama's `hf.co/owner/repo:quant`: the repository's file for that quantization
        repo, quant = hub
        file = await asyncio.to_thread(gguf_for_quantization, repo, quant)
        target = PullTarget(wire.hub_file(name), repo, file, local_file=wire.hub_file(name))
    else:
        try:
            target = parse_target(wire.model_id(name), services.registry.catalog)
        except ModelNotFoundError as exc:
            raise ModelNotFoundError(f"model '{name}' not found. {exc.detail}") from exc
    job = services.downloads.start(target)
    if body.stream:
        return ndjson_response(_pull_lines(services.downloads.watch(job), name, target.sha256))
    final = await services.downloads.outcome(job)
    if final.status != "success":
        raise final.error or DownloadError(final.detail or "The download failed.")
    return JSONResponse({"status": "success"})


async def _embed(
    request: Request, name: str, texts: list[str], truncate: bool, dims: int | None, keep: Any
) -> tuple[Vectors, int, dict[str, int]]:
    services = get_services(request)
    timings = wire.Timings()
    keep_alive = wire.keep_alive_seconds(keep)
    await acquire(services, name, keep_alive)  # Ollama's 404 wording for an unknown name
    timings.mark_loaded()
    result = await cancel_on_disconnect(
        request,
        services.embeddings.embed(
            wire.model_id(name),
            texts,
            truncate=truncate,
            dimensions=dims,
            shorten_any=True,
            keep_alive=keep_alive,
        ),
    )
    durations = timings.final(result.prompt_tokens, 0)
    # orjson writes only C-contiguous arrays, as the shortest text of each float32
    vectors = np.ascontiguousarray(result.vectors, dtype=np.float32)
    return vectors, result.prompt_tokens, durations


def _vectors_json(body: dict[str, Any]) -> Response:
    """orjson writes the float32 rows directly: FastAPI's encoder took about 68 ms for 64 vectors of 384
    (walking each number as an object, on the event loop), orjson about 2."""
    return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json")


@router.post(
    "/embed",
    response_model=None,
    responses={**_EMBED_OK, **errors(404, 503)},
    summary="Ollama: embeddings (L2-normalised)",
)
async def embed(body: EmbedRequest, request: Request) -> Response:
    texts = [body.input] if isinstance(body.input, str) else body.input
    vectors, tokens, durations = await _embed(
        request, body.model, texts, body.truncate, body.dimensions, body.keep_alive
    )
    return _vectors_json(
        {
            "model": body.model,
            "embeddings": vectors,
            "total_duration": durations["total_duration"],
            "load_duration": durations["load_duration"],
            "prompt_eval_count": tokens,
        }
    )


@router.post(
    "/embeddings",
    response_model=None,
    responses={**_EMBED_OK, **errors(404, 503)},
    summary="Ollama (legacy): one embedding",
)
async def embeddings(body: LegacyEmbeddingsRequest, request: Request) -> Response:
    if not body.prompt:
        return _vectors_json({"embedding": []})  # what Ollama answers: an empty prompt only loads the model
    vectors, _, _ = await _embed(request, body.model, [body.prompt], True, None, body.keep_alive)
    return _vectors_json({"embedding": vectors[0]})


_NOT_CREATED = (
    "LocalLab does not build models from Modelfiles or uploaded blobs. Put a .gguf file in the models "
    "directory (it is then listed by GET /api/tags), pull one with POST /api/pull "
    '{"model": "hf://owner/repo/file.gguf"}, or add a catalog entry (LOCALLAB_CATALOG_FILE).'
)


@router.post("/create", responses=errors(), summary="Ollama: create a model (refused: see the message)")
async def create() -> Response:
    raise InvalidRequestError(_NOT_CREATED)


@router.head("/blobs/{digest}", include_in_schema=False)
@router.post("/blobs/{digest}", responses=errors(), summary="Ollama: upload a blob (refused)")
async def blobs(digest: str) -> Response:
    raise InvalidRequestError(_NOT_CREATED)


@router.post("/push", responses=errors(), summary="Ollama: push a model (refused)")
async def push() -> Response:
    raise InvalidRequestError("LocalLab has no model registry to push to; copy the .gguf file instead.")
