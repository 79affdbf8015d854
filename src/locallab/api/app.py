"""create_app: builds the FastAPI app and, in its lifespan, the services it serves (on app.state)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi

from locallab import __version__
from locallab.api import web
from locallab.api.anthropic import routes as anthropic_routes
from locallab.api.errors import install_error_handlers
from locallab.api.middleware.auth import AuthMiddleware, KeyStore
from locallab.api.middleware.body import BodyGuardMiddleware
from locallab.api.middleware.hosts import HostCheckMiddleware
from locallab.api.middleware.observe import ObserveMiddleware
from locallab.api.middleware.rate_limit import RateLimitMiddleware, TokenBucketLimiter
from locallab.api.ollama import models as ollama_models
from locallab.api.ollama import routes as ollama_routes
from locallab.api.openai import chat_routes, embeddings_routes, responses_routes
from locallab.api.seed import generate, models, system
from locallab.api.state import Services
from locallab.config.catalog import CatalogEntry, load_catalog
from locallab.config.remote import RemoteModelConfig, load_remote_models
from locallab.config.settings import Settings
from locallab.engines.base import Engine, KvPoolUsage
from locallab.engines.gguf import check_gguf_header, is_embedding_model
from locallab.engines.remote.pool import UpstreamObserver
from locallab.errors import ModelLoadError
from locallab.services.aliases import FILE_NAME as ALIASES_FILE
from locallab.services.aliases import AliasStore
from locallab.services.downloads import DownloadManager
from locallab.services.embeddings import EmbeddingService
from locallab.services.generation import GenerationLimits, GenerationService
from locallab.services.metrics import Metrics
from locallab.services.model_ids import ResolvedModel
from locallab.services.readiness import ReadinessCheck
from locallab.services.registry import EngineLoader, ModelRegistry
from locallab.services.response_store import ResponseStore
from locallab.services.stats import Stats
from locallab.services.system import SystemInfo

logger = logging.getLogger(__name__)


def build_engine_loader(
    settings: Settings,
    remote_models: dict[str, RemoteModelConfig] | None = None,
    upstream_observer: UpstreamObserver | None = None,
) -> EngineLoader:
    """Builds the engine a resolved model names; engines are imported lazily (heavy native libraries)."""
    remote = load_remote_models(settings.remote_models) if remote_models is None else remote_models

    def load(model: ResolvedModel) -> Engine:
        if model.engine == "remote" and model.id in remote:
            from locallab.engines.remote import RemoteEngine

            return RemoteEngine(remote[model.id], upstream_observer)
        if model.engine == "transformers":
            return _load_transformers(model, settings)
        if model.engine != "llama.cpp":
            raise ModelLoadError(
                f"Model '{model.id}' needs the {model.engine} engine, which is not available."
            )
        if (model.entry is not None and model.entry.embedding) or is_embedding_model(
            check_gguf_header(model.path)
        ):
            from locallab.engines.llamacpp.embedding import load_llamacpp_embedder

            return load_llamacpp_embedder(
                model.path,
                context_length=settings.context_length,
                threads=settings.threads,
                batch_tokens=settings.embedding_batch_size,
                max_sequences=settings.embedding_sequences,
                max_queue=settings.max_queue,
                probe=model.entry is None,
                memory_limit_mb=settings.memory_limit_mb,
            )
        from locallab.engines.llamacpp import load_llamacpp_engine

        return load_llamacpp_engine(
            model.path,
            context_length=settings.context_length,
            parallel=settings.parallel,
            threads=settings.threads,
            batch_size=settings.batch_size,
            max_queue=settings.max_queue,
            probe=model.entry is None,  # a file from outside the catalog: open it in a child first
            memory_limit_mb=settings.memory_limit_mb,
            kv_tokens=settings.kv_tokens,
            kv_type=settings.kv_type,
            prefix_cache=settings.prefix_cache,
            deterministic=settings.deterministic,
        )

    return load


def _load_transformers(model: ResolvedModel, settings: Settings) -> Engine:
    try:  # torch is imported only when a transformers model is loaded
        from locallab.engines.transformers import load_transformers_engine
    except ImportError as exc:
        raise ModelLoadError(
            f"Model '{model.id}' needs the transformers engine, which is not installed ({exc.name} is "
            "missing): pip install locallab[transformers]"
        ) from exc
    return load_transformers_engine(
        model.path,
        context_length=settings.context_length,
        parallel=settings.parallel,
        threads=settings.threads,
        max_queue=settings.max_queue,
        device=settings.device,
        quantize=settings.quantize,
    )


async def _prune_stored_responses(store: ResponseStore) -> None:
    while True:
        await asyncio.sleep(3600)
        await store.prune()


async def _unload_idle_models(registry: ModelRegistry, keep_alive: float) -> None:
    while True:
        await asyncio.sleep(max(0.05, min(30.0, keep_alive / 4)))
        await registry.unload_idle(keep_alive)


def _openapi_without_422(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """FastAPI documents 422 for every body; this API answers 400 instead, so the schema says so."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            for path in schema.get("paths", {}).values():
                for operation in path.values():
                    operation.get("responses", {}).pop("422", None)
            for name in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(name, None)
            app.openapi_schema = schema
        return app.openapi_schema

    return openapi


def create_app(
    settings: Settings | None = None,
    *,
    engine_loader: EngineLoader | None = None,
    catalog: dict[str, CatalogEntry] | None = None,
    clock: Callable[[], float] | None = None,
) -> FastAPI:
    """The LocalLab app. Tests pass a fake `engine_loader` and a `clock` for the rate limiter."""
    settings = settings or Settings()
    stats = Stats()
    metrics = Metrics()
    remote_models = load_remote_models(settings.remote_models)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        registry = ModelRegistry(
            catalog if catalog is not None else load_catalog(extra=settings.catalog_file),
            engine_loader or build_engine_loader(settings, remote_models, metrics.upstream),
            settings.models_dir,
            metrics,
            max_loaded=settings.max_loaded_models,
            remote_ids=frozenset(remote_models),
            model_dirs=settings.model_dir_list(),
            aliases=AliasStore(settings.models_dir / ALIASES_FILE),
        )
        if settings.model:
            registry.trust(settings.model)
        generation = GenerationService(
            registry,
            stats,
            GenerationLimits(
                default_max_tokens=settings.default_max_length,
                max_tokens_cap=settings.max_length_cap,
                max_time_cap=settings.max_time_cap,
                max_messages=settings.max_messages,
            ),
            metrics=metrics,
        )
        readiness = ReadinessCheck(registry, generation.shutdown, settings.model)
        responses = ResponseStore(settings.data_path() / "responses.db", settings.response_retention_days)
        await responses.open()  # migrates the schema and prunes expired responses
        app.state.services = Services(
            settings=settings,
            registry=registry,
            generation=generation,
            stats=stats,
            system=SystemInfo(registry, stats),
            metrics=metrics,
            downloads=DownloadManager(settings.models_dir),
            readiness=readiness,
            responses=responses,
            embeddings=EmbeddingService(registry, metrics, settings.max_embedding_inputs),
        )
        metrics.watch(
            active=lambda: sum(m.engine.load.active for m in registry.models),
            queued=lambda: sum(m.engine.load.queued for m in registry.models),
            loaded=lambda: len(registry.models),
        )

        def pools() -> list[KvPoolUsage]:
            return [
                p for m in registry.models if isinstance(p := getattr(m.engine, "kv_pool", None), KvPoolUsage)
            ]

        metrics.watch_kv_pool(
            size=lambda: sum(p.size for p in pools()),
            used=lambda: sum(p.used for p in pools()),
            preemptions=lambda: sum(p.preemptions for p in pools()),
        )
        tasks = [
            asyncio.create_task(_unload_idle_models(registry, settings.keep_alive)),
            asyncio.create_task(app.state.services.generation.templates.warm()),
            asyncio.create_task(_prune_stored_responses(responses)),
        ]
        # A default model that cannot load leaves the server up and not ready (GET /health/ready says why).
        startup = readiness.start()
        if startup is not None:
            tasks.append(startup)
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await app.state.services.downloads.close()
            await app.state.services.generation.templates.close()
            await registry.close()
            await responses.close()

    app = FastAPI(
        title="LocalLab",
        version=__version__,
        description="Large language models on your own machine, over HTTP.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.include_router(generate.router)
    app.include_router(models.router)
    app.include_router(system.router)
    app.include_router(chat_routes.router)
    app.include_router(anthropic_routes.router)
    app.include_router(responses_routes.router)
    app.include_router(embeddings_routes.router)
    app.include_router(ollama_routes.router)
    app.include_router(ollama_models.router)
    app.include_router(web.router)
    app.openapi = _openapi_without_422(app)  # type: ignore[method-assign]
    # Added innermost first: a request meets Observe, HostCheck, CORS, Auth, RateLimit, BodyGuard.
    app.add_middleware(BodyGuardMiddleware, max_bytes=settings.max_body_bytes)
    if settings.rate_limit_per_minute > 0:
        limiter = TokenBucketLimiter(
            settings.rate_limit_per_minute, settings.rate_limit_burst, clock or time.monotonic
        )
        app.add_middleware(RateLimitMiddleware, limiter=limiter, on_limited=metrics.rate_limited.inc)
    keys = KeyStore(settings.key_list(), settings.api_keys_file)
    if keys.enabled:
        app.add_middleware(AuthMiddleware, keys=keys)
    origins = settings.origin_list()
    if origins:
        # Credentials only with an explicit list: '*' together with credentials would let any site in.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_credentials="*" not in origins,
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=[
                "Authorization",
                "X-API-Key",
                "Content-Type",
                "X-Request-ID",
                "anthropic-version",
                "anthropic-beta",
            ],
        )
    if settings.is_loopback():
        app.add_middleware(HostCheckMiddleware, allowed=settings.host_list())
    app.add_middleware(ObserveMiddleware, stats=stats, metrics=metrics)
    return app
